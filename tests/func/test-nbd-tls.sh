#!/usr/bin/env bash
# NBD with TLS against a real agent and cluster, with the real clients
# (issue 12 item 2; README "Security"): qemu-img and qemu-io with
# tls-creds-x509 and tls-creds-psk, nbdinfo and nbdcopy with libnbd's TLS
# URIs (nbds://, nbds+unix://, tls-certificates, tls-psk-file), and a raw
# client that pipelines plaintext after NBD_OPT_STARTTLS.
#
#   nbd_tls "on":      plaintext works for a volume attached for nobody in
#                      particular; X.509 (CA only) and PSK work; a volume
#                      attached for client vm1 opens only for vm1's PSK or
#                      for a client certificate naming vm1... here "certvm"
#                      has its own volume; another client, a wrong key, an
#                      unknown identity, a foreign CA's client certificate
#                      and plaintext after STARTTLS are refused;
#   nbd_tls "require": plaintext gets NBD_REP_ERR_TLS_REQD (EXPORT_NAME
#                      is cut off), volumes attached for nobody do not open
#                      over TCP, named ones open for their client; the
#                      Unix socket still serves without TLS.
# Every refusal ends in bounded time with one log line naming the peer and
# the reason.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires qemu-img --version
requires qemu-io --version
requires nbdinfo --version
requires nbdcopy --version
requires /usr/bin/python3 -c 'import nbd'
tmp=$(mktmp)
hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# The agent's PSK file, and each client's own (qemu wants DIR/keys.psk).
key1=$(hex 32) key2=$(hex 32)
(umask 077 && printf 'vm1:%s\nvm2:%s\n' "$key1" "$key2" >"$tmp/agent.psk")
for c in vm1:$key1 vm2:$key2 vm1:$(hex 32) vm9:$(hex 32); do
    d=$tmp/psk-${c%%:*}
    [ -d "$d" ] && d=$tmp/psk-wrong-${c%%:*}
    mkdir -p "$d"
    (umask 077 && echo "$c" >"$d/keys.psk")
done

cluster_init "$tmp/c" --proxies 1 --blobs 3 --agents 1 \
    --set "agent1.nbd_tls_psk_file=\"$tmp/agent.psk\"" --set agent1.handshake_timeout_ms=3000
cluster_start
cluster_wait_ready 30
cluster_create_volume any 64M
cluster_create_volume vm1-disk 64M --client vm1
cluster_create_volume cert-disk 64M --client certvm
port=${CLUSTER_NBD[agent1]##*:}
log=$CLUSTER_DIR/agent1/blockd.log

# X.509 client directories, named as qemu and libnbd want them.
x509() { # x509 DIR [ROLE ID [CA_DIR]]: ca-cert.pem, and a client certificate if asked
    mkdir -p "$1"
    cp "$CLUSTER_CA" "$1/ca-cert.pem"
    [ -n "${2:-}" ] || return 0
    "$BLOCKD" cert issue --ca "${4:-$CLUSTER_TLS_DIR/ca}" --role "$2" --id "$3" \
        --out "$1/client" >/dev/null
    mv "$1/client.pem" "$1/client-cert.pem"
    mv "$1/client.key" "$1/client-key.pem"
}
x509 "$tmp/x509-anon"
x509 "$tmp/x509-certvm" client certvm
"$BLOCKD" cert ca --dir "$tmp/foreign-ca" --cluster "$CLUSTER_ID" >/dev/null
x509 "$tmp/x509-foreign" client certvm "$tmp/foreign-ca"

q_psk() { echo "tls-creds-psk,id=t0,endpoint=client,dir=$tmp/psk-$1,username=${2:-$1}"; }
q_x509() { echo "tls-creds-x509,id=t0,endpoint=client,dir=$tmp/x509-$1"; }
q_img() { # q_img CREDS EXPORT: qemu-img info over TLS
    timeout 20 qemu-img info --object "$1" \
        --image-opts "driver=nbd,host=127.0.0.1,port=$port,export=$2,tls-creds=t0"
}
q_io() { # q_io CREDS EXPORT CMD...: qemu-io over TLS
    local creds=$1 exp=$2 args=()
    shift 2
    for c in "$@"; do args+=(-c "$c"); done
    timeout 30 qemu-io --object "$creds" \
        --image-opts "driver=nbd,host=127.0.0.1,port=$port,export=$exp,tls-creds=t0" "${args[@]}"
}
nbds() { echo "nbds://${2:+$2@}127.0.0.1:$port/$1${3:+?$3}"; }
# refused WHAT NEEDLE CMD...: CMD fails within 10 s and the agent logs one
# "refused" line naming a peer and containing NEEDLE.
refused() {
    local what=$1 needle=$2 before t0
    shift 2
    before=$(grep -c "refused: " "$log" || true)
    t0=$SECONDS
    if "$@" >"$tmp/out" 2>&1; then fail "$what: accepted: $(cat "$tmp/out")"; fi
    [ $((SECONDS - t0)) -le 10 ] || fail "$what: took $((SECONDS - t0)) s"
    wait_for 5 "[ \$(grep -c 'refused: ' '$log') -gt $before ]"
    local line
    line=$(grep "refused: " "$log" | tail -n +$((before + 1)) | grep -F -- "$needle" | head -1)
    [ -n "$line" ] || fail "$what: no log line with '$needle': $(grep 'refused: ' "$log" | tail -n +$((before + 1)))"
    [[ $line == *"(127.0.0.1:"* ]] || fail "$what: the log line names no peer: $line"
    echo "ok: $what refused: ${line#*refused: }"
}

# ---- nbd_tls "on" ------------------------------------------------------------------
nbdinfo --size "nbd://127.0.0.1:$port/any" >/dev/null || fail "plaintext, a volume for anyone"
nbdinfo --size "$(nbds any "" "tls-certificates=$tmp/x509-anon")" >/dev/null ||
    fail "libnbd X.509 (no client certificate)"
q_img "$(q_x509 anon)" any | grep -q "virtual size: 64 MiB" || fail "qemu-img tls-creds-x509"
grep -q "nbd conn .*attached.*TLSv1\.[23]" "$log" || fail "no TLS attach in the log"
echo "ok: plaintext, libnbd and qemu X.509 to a volume attached for anyone"

# PSK: qemu-io writes, nbdcopy reads it back, both TLS 1.3 and 1.2.
q_io "$(q_psk vm1)" vm1-disk "write -P 0x5a 0 1M" "read -P 0x5a 0 1M" >"$tmp/qio" ||
    fail "qemu-io PSK: $(cat "$tmp/qio")"
grep -q "^read 1048576/1048576" "$tmp/qio" || fail "qemu-io PSK read: $(cat "$tmp/qio")"
grep "attached.*PSK identity vm1" "$log" | tail -1 | grep -q "TLSv1.3" || fail "PSK not TLS 1.3"
nbdcopy "$(nbds vm1-disk vm1 "tls-psk-file=$tmp/psk-vm1/keys.psk")" "$tmp/copy" ||
    fail "nbdcopy PSK"
[ "$(head -c 1M "$tmp/copy" | tr -d 'Z' | wc -c)" = 0 ] || fail "nbdcopy PSK read-back" # 0x5a
q_img "tls-creds-psk,id=t0,endpoint=client,dir=$tmp/psk-vm1,username=vm1,priority=NORMAL:-VERS-TLS1.3:+ECDHE-PSK:+DHE-PSK:+PSK" vm1-disk |
    grep -q "virtual size" || fail "qemu PSK over TLS 1.2"
grep "attached.*PSK identity vm1" "$log" | tail -1 | grep -q "TLSv1.2" || fail "no TLS 1.2 PSK"
echo "ok: PSK (qemu-io, nbdcopy, TLS 1.3 and 1.2) to vm1's volume"

# A client certificate of the cluster CA naming client certvm.
q_io "$(q_x509 certvm)" cert-disk "write -P 0x3c 4096 4096" "read -P 0x3c 4096 4096" |
    grep -q "^read 4096/4096" || fail "qemu client certificate"
nbdinfo --size "$(nbds cert-disk "" "tls-certificates=$tmp/x509-certvm")" >/dev/null ||
    fail "libnbd client certificate"
grep -q "attached.*client certificate certvm" "$log" || fail "no certificate attach in the log"
echo "ok: client certificates (qemu, libnbd) to certvm's volume"

refused "plaintext to vm1's volume" "no TLS" nbdinfo --size "nbd://127.0.0.1:$port/vm1-disk"
refused "vm2's PSK to vm1's volume" "another client than vm2" \
    nbdinfo --size "$(nbds vm1-disk vm2 "tls-psk-file=$tmp/psk-vm2/keys.psk")"
refused "X.509 without a client certificate to vm1's volume" "has no id" \
    q_img "$(q_x509 anon)" vm1-disk
refused "a wrong key for vm1 (qemu)" 'PSK identity "vm1"' q_img "$(q_psk wrong-vm1 vm1)" vm1-disk
refused "a wrong key for vm1 (libnbd)" 'PSK identity "vm1"' \
    nbdinfo --size "$(nbds any vm1 "tls-psk-file=$tmp/psk-wrong-vm1/keys.psk")"
refused "an unknown identity" 'unknown PSK identity "vm9"' q_img "$(q_psk vm9)" any
# (qemu checks its own certificate against its CA file and never connects
# with a foreign one; libnbd sends it.)
refused "a foreign CA's client certificate" "certificate verify failed" \
    nbdinfo --size "$(nbds cert-disk "" "tls-certificates=$tmp/x509-foreign")"

# Plaintext pipelined after STARTTLS (nbdkit CVE-2021-3716): a raw client.
pipeline() {
    /usr/bin/python3 - "$port" <<'PY'
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
g = b""
while len(g) < 18: g += s.recv(18 - len(g))
assert g[:16] == b"NBDMAGICIHAVEOPT"
s.sendall(struct.pack(">I", 3))                               # fixed newstyle, no zeroes
opt = lambda o, d=b"": b"IHAVEOPT" + struct.pack(">II", o, len(d)) + d
s.sendall(opt(5) + opt(8))                                    # STARTTLS, then STRUCTURED_REPLY
data = b""
while True:
    b = s.recv(4096)
    if not b: break
    data += b
# At most the STARTTLS ACK; never an answer to the plaintext option.
if len(data) > 20: sys.exit("the server answered plaintext sent after STARTTLS")
sys.exit(1)  # refused: the connection was closed
PY
}
refused "plaintext pipelined after STARTTLS" "CVE-2021-3716" pipeline
echo "ok: nbd_tls on"

# ---- nbd_tls "require" -------------------------------------------------------------
cluster_stop agent1
cluster_set agent1 'nbd_tls="require"'
cluster_start agent1
cluster_wait_ready 30
sock=$(cluster_vol_socket any)
refused "plaintext to a require server" "TLS is required" \
    nbdinfo --size "nbd://127.0.0.1:$port/any"
export_name() {
    /usr/bin/python3 - "$port" <<'PY'
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
g = b""
while len(g) < 18: g += s.recv(18 - len(g))
s.sendall(struct.pack(">I", 3) + b"IHAVEOPT" + struct.pack(">II", 1, 3) + b"any")
if s.recv(4096): sys.exit("NBD_OPT_EXPORT_NAME in plaintext was answered")
sys.exit(1)
PY
}
refused "NBD_OPT_EXPORT_NAME in plaintext" "NBD_OPT_EXPORT_NAME in plaintext" export_name
refused "a volume attached for no client, over TCP" "names no client" \
    nbdinfo --size "$(nbds any "" "tls-certificates=$tmp/x509-anon")"
q_io "$(q_psk vm1)" vm1-disk "read -P 0x5a 0 1M" | grep -q "^read 1048576/1048576" ||
    fail "vm1's PSK under require"
nbdinfo --list "$(nbds "" vm1 "tls-psk-file=$tmp/psk-vm1/keys.psk")" >"$tmp/list" ||
    fail "nbdinfo --list under require"
grep -q vm1-disk "$tmp/list" && ! grep -Eq "cert-disk|any" "$tmp/list" ||
    fail "NBD_OPT_LIST shows what vm1 may not open: $(cat "$tmp/list")"
q_img "$(q_x509 certvm)" cert-disk | grep -q "virtual size" || fail "certvm under require"
# A Unix socket offers TLS but does not require it.
nbdinfo --size "nbd+unix:///?socket=$sock" >/dev/null || fail "plaintext on the volume socket"
nbdinfo --size "nbds+unix:///?socket=$sock&tls-certificates=$tmp/x509-anon" >/dev/null ||
    fail "nbds+unix on the volume socket"
echo "ok: nbd_tls require"
cluster_field agent1 /v1/status '.nbd | "\(.tls) \(.tls_handshakes) \(.tls_failures) \(.denied)"' |
    grep -q "^require " || fail "the agent's status"
cluster_stop_all
echo PASS
