#!/usr/bin/env bash
# Over TCP from another host, a volume opens only for the TLS client its
# attachment names (issue 12 item 3; README "Security"), with nbd_tls "on"
# (the default), which still lets plaintext through for volumes attached
# for nobody in particular on this host.  Every process in its own network
# namespace (netns.sh), plus a "client" namespace standing for another host:
#
#   from the client's namespace: a volume attached without --client does
#     not open (plaintext, or TLS with a client certificate), and LIST
#     shows it to nobody there; a volume attached for client vm1 opens for
#     vm1's certificate only, and reads back what was written there;
#   from the agent's own namespace (this host, dialling its own address):
#     the volume attached without --client opens in plaintext, as on
#     loopback;
# and every refusal is one agent log line naming the peer and the reason.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/netns.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires nbdinfo --version
requires nbdcopy --version
requires nsenter --version
netns_requires
tmp=$(mktmp)

cluster_init "$tmp/c" --netns --proxies 1 --blobs 3 --agents 1 \
    --set agent1.handshake_timeout_ms=3000
netns_add_node client
cluster_start
cluster_wait_ready 30
cluster_create_volume local-only 16M
cluster_create_volume vm1-disk 16M --client vm1
agent=${CLUSTER_NBD[agent1]}
log=$CLUSTER_DIR/agent1/blockd.log

# X.509 client directories as libnbd wants them: the cluster CA, and a
# client certificate of role client.
x509() { # x509 DIR ID
    mkdir -p "$1"
    cp "$CLUSTER_CA" "$1/ca-cert.pem"
    "$BLOCKD" cert issue --ca "$CLUSTER_TLS_DIR/ca" --role client --id "$2" \
        --out "$1/client" >/dev/null
    mv "$1/client.pem" "$1/client-cert.pem"
    mv "$1/client.key" "$1/client-key.pem"
}
x509 "$tmp/vm1" vm1
x509 "$tmp/vm2" vm2

from() { # from NAMESPACE CMD...: run CMD in that namespace, 20 s at most
    local ns=$1
    shift
    netns_exec "$ns" timeout 20 "$@"
}
plain() { echo "nbd://$agent/$1"; }
tls() { echo "nbds://$agent/$1?tls-certificates=$tmp/$2"; }
refusals() { grep -c "refused: .*$1" "$log" || true; }

# The other host, plaintext: the volume attached for nobody does not open.
n0=$(refusals "from another host")
if from client nbdinfo --size "$(plain local-only)" >"$tmp/out" 2>&1; then
    fail "a plaintext client on another host opened local-only: $(cat "$tmp/out")"
fi
wait_for 5 '[ "$(refusals "from another host")" -gt "$n0" ]'
grep "refused: .*from another host" "$log" | tail -1 | grep -qF "${NETNS_IP[client]}" ||
    fail "the refusal does not name the peer: $(grep 'refused' "$log" | tail -1)"
echo "ok: a plaintext client on another host cannot open a volume attached for nobody"

# ... nor with TLS and a client certificate of its own.
n0=$(refusals "from another host")
if from client nbdinfo --size "$(tls local-only vm1)" >"$tmp/out" 2>&1; then
    fail "a TLS client on another host opened local-only: $(cat "$tmp/out")"
fi
wait_for 5 '[ "$(refusals "from another host")" -gt "$n0" ]'
echo "ok: nor a TLS client whose id the attachment does not name"

# LIST from there shows neither volume in plaintext, and only vm1-disk to vm1.
from client nbdinfo --list "nbd://$agent" >"$tmp/list-plain" 2>&1 || true
! grep -q "local-only\|vm1-disk" "$tmp/list-plain" || fail "plaintext LIST shows: $(cat "$tmp/list-plain")"
from client nbdinfo --list "nbds://$agent?tls-certificates=$tmp/vm1" >"$tmp/list-vm1" 2>&1 ||
    fail "LIST as vm1: $(cat "$tmp/list-vm1")"
grep -q "vm1-disk" "$tmp/list-vm1" && ! grep -q "local-only" "$tmp/list-vm1" ||
    fail "LIST as vm1 shows: $(cat "$tmp/list-vm1")"
echo "ok: LIST from another host shows a client only its own volumes"

# The named volume opens for vm1 over TLS, and round-trips data; vm2 and
# plaintext are refused.
head -c $((4 << 20)) /dev/urandom >"$tmp/data"
from client nbdcopy "$tmp/data" "$(tls vm1-disk vm1)" || fail "nbdcopy to vm1-disk as vm1"
from client nbdcopy "$(tls vm1-disk vm1)" "$tmp/back" || fail "nbdcopy from vm1-disk as vm1"
cmp -n $((4 << 20)) "$tmp/data" "$tmp/back" || fail "vm1-disk does not read back what vm1 wrote"
! from client nbdinfo --size "$(tls vm1-disk vm2)" >/dev/null 2>&1 || fail "vm2 opened vm1-disk"
! from client nbdinfo --size "$(plain vm1-disk)" >/dev/null 2>&1 || fail "plaintext opened vm1-disk"
echo "ok: vm1-disk opens from another host for vm1's certificate only"

# This host, dialling its own address: the volume attached for nobody
# opens in plaintext, as it does on loopback.
size=$(from agent1 nbdinfo --size "$(plain local-only)") ||
    fail "a client on the agent's host could not open local-only"
[ "$size" = $((16 << 20)) ] || fail "local-only size $size"
echo "ok: the agent's own host opens local-only in plaintext"
cluster_stop_all
