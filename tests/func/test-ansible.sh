#!/usr/bin/env bash
# The ansible role (scripts/ansible) against localhost, relocated under a
# temporary prefix and without systemd (blockd_service_manager=none), as
# every tier at once with three blob servers:
#   - every config it renders passes `blockd --check` (the role checks each
#     before installing it, too), certificates chain to the CA, keys and
#     tokens are 0600, and no secret reaches its output, even with -v;
#   - a second run changes nothing (changed=0);
#   - a change to one role's config restarts that role only;
#   - a change to the deployed Raft group (a proxy renumbered) is refused;
#   - bad inventories (an even number of proxies, a duplicate node id, a
#     blob host without a data directory, a missing token or package) fail
#     in the first play, naming the host and the variable, before any host
#     is touched.
# On booted hosts with systemd: scripts/deploy-test cluster.
. "$(dirname "$0")/functions.sh"
set -e
requires ansible-playbook --version

tmp=$(mktmp)
admin_token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
read_token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')

# playbook LOG INVENTORY [ARGS...]: run site.yml as the test runs it; its
# status, output in LOG.
playbook() {
    local log=$1 inv=$2
    shift 2
    ANSIBLE_LOCALHOST_WARNING=false ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=false \
        timeout 600 ansible-playbook -i "$inv" "$SRCDIR/scripts/ansible/site.yml" \
        -e "blockd_prefix=$tmp/root" -e blockd_service_manager=none \
        -e blockd_install_package=false -e "blockd_bin=$BLOCKD" -e "blockd_cert_bin=$BLOCKD" \
        -e ansible_become=false -e "blockd_tls_dir=$tmp/tls" "$@" >"$log" 2>&1
}
# recap LOG: "ok=N changed=N ..." of localhost in LOG's PLAY RECAP.
recap() { sed -n 's/^localhost *: //p' "$1"; }

cat >"$tmp/inventory.yml" <<INV
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: $(command -v python3)
    blockd_admin_token: "$admin_token"
    blockd_read_token: "$read_token"
  children:
    blockd_proxies:
      hosts:
        localhost: {blockd_node_id: 1, blockd_addr: 127.0.0.1}
    blockd_blobs:
      hosts:
        localhost:
          blockd_blob_servers:
            - {id: 11, data_dir: $tmp/root/srv/disk1/blockd}
            - {id: 12, data_dir: $tmp/root/srv/disk2/blockd}
            - {id: 13, data_dir: $tmp/root/srv/disk3/blockd, name: disk3, port: 7300, admin_port: 8301}
    blockd_agents:
      hosts:
        localhost: {blockd_agent_volumes: [{name: vol0, size: 1G}]}
INV

playbook "$tmp/run1.log" "$tmp/inventory.yml" -v || { cat "$tmp/run1.log"; fail "playbook failed"; }
etc=$tmp/root/etc/blockd
for f in proxy blob11 blob12 disk3 agent; do
    [ -f "$etc/$f.json" ] || fail "no $etc/$f.json"
    "$BLOCKD" --check --config "$etc/$f.json" >/dev/null || fail "$f.json does not validate"
    [ "$(stat -c %a "$etc/tls/$f.key")" = 600 ] || fail "$f.key is not 0600"
done
[ "$(stat -c %a "$etc/admin.token")" = 600 ] || fail "admin token is not 0600"
[ "$(stat -c %a "$etc/read.token")" = 600 ] || fail "read token is not 0600"
for pair in proxy:"role proxy, id 1" blob11:"role blob, id 11" blob12:"role blob, id 12" \
            disk3:"role blob, id 13" agent:"role agent, id localhost"; do
    f=${pair%%:*}
    "$BLOCKD" cert show "$etc/tls/$f.pem" | grep -q "identity:  cluster zone-a, ${pair#*:}" ||
        fail "$f.pem: $("$BLOCKD" cert show "$etc/tls/$f.pem")"
done
openssl verify -CAfile "$etc/tls/ca.pem" "$etc/tls/"{proxy,blob11,blob12,disk3,agent}.pem | grep -c ': OK' |
    grep -qx 5 || fail "a certificate does not verify against the CA"
jq -e '.proxy.peers == [{"id": 1, "addr": "127.0.0.1:7100"}]' "$etc/proxy.json" >/dev/null ||
    fail "proxy peers: $(jq -c .proxy.peers "$etc/proxy.json")"
jq -e '.blob.listen == "127.0.0.1:7201" and .blob.admin == "127.0.0.1:8201" and
       (.blob.data_dir | endswith("/srv/disk2/blockd")) and .blob.proxies == ["127.0.0.1:7100"]' \
    "$etc/blob12.json" >/dev/null || fail "blob12.json: $(jq -c .blob "$etc/blob12.json")"
jq -e '.blob.listen == "127.0.0.1:7300" and .blob.admin == "127.0.0.1:8301"' "$etc/disk3.json" \
    >/dev/null || fail "disk3.json: $(jq -c .blob "$etc/disk3.json")"
for d in disk1 disk2 disk3; do
    [ "$(stat -c %a "$tmp/root/srv/$d/blockd")" = 700 ] || fail "$d's data directory is not 0700"
done
if grep -qF -e "$admin_token" -e "$read_token" "$tmp/run1.log"; then
    fail "a token is in the playbook's output (-v)"
fi
echo "first run: $(recap "$tmp/run1.log")"

# Nothing changed: nothing to do.
playbook "$tmp/run2.log" "$tmp/inventory.yml" || { cat "$tmp/run2.log"; fail "second run failed"; }
recap "$tmp/run2.log" | grep -q ' changed=0 ' ||
    { cat "$tmp/run2.log"; fail "second run changed something: $(recap "$tmp/run2.log")"; }
grep -q 'restart blockd-' "$tmp/run2.log" && fail "second run would restart something"
echo "second run: $(recap "$tmp/run2.log")"

# One agent setting changed: the agent's config, and a restart of the agent only.
playbook "$tmp/run3.log" "$tmp/inventory.yml" -e blockd_agent_cache_bytes=2G ||
    { cat "$tmp/run3.log"; fail "third run failed"; }
recap "$tmp/run3.log" | grep -q ' changed=1 ' || fail "third run: $(recap "$tmp/run3.log")"
restarts=$(grep -o '"msg": "restart [^"]*"' "$tmp/run3.log" | sort | tr '\n' ' ')
[ "$restarts" = '"msg": "restart blockd-agent@agent.service" ' ] ||
    fail "a changed agent config restarts: $restarts"
jq -e '.agent.cache_bytes == "2G"' "$etc/agent.json" >/dev/null || fail "agent.json not updated"
echo "third run (agent cache_bytes changed): $(recap "$tmp/run3.log"); $restarts"

# The role does not change the Raft group of a running cluster:
# renumbering the proxy is refused before anything is written.
cp "$etc/proxy.json" "$tmp/proxy.json.before"
if playbook "$tmp/run4.log" "$tmp/inventory.yml" -e blockd_node_id=2; then
    cat "$tmp/run4.log"
    fail "a renumbered proxy was rolled out"
fi
grep -qF 'localhost runs with proxies [1], the inventory says [2]' "$tmp/run4.log" ||
    { cat "$tmp/run4.log"; fail "the membership check did not say what changed"; }
cmp -s "$etc/proxy.json" "$tmp/proxy.json.before" || fail "proxy.json changed"
recap "$tmp/run4.log" | grep -q ' changed=0 ' || fail "run 4 changed something: $(recap "$tmp/run4.log")"
echo "fourth run (proxy renumbered): refused, nothing changed"

# bad NAME EXPECTED [ARGS...]: with the inventory $BAD_INV, the playbook
# fails in its first play with EXPECTED in its output, touching no host
# (the prefix it would write under stays absent), and says no secret.
bad() {
    local name=$1 want=$2 inv=$tmp/bad-$1.yml
    shift 2
    printf '%s\n' "$BAD_INV" >"$inv"
    rm -rf "$tmp/root"
    if playbook "$tmp/bad-$name.log" "$inv" "$@"; then
        cat "$tmp/bad-$name.log"
        fail "$name: the playbook passed"
    fi
    grep -qF -- "$want" "$tmp/bad-$name.log" || { cat "$tmp/bad-$name.log"; fail "$name: no '$want'"; }
    grep -q 'TASK \[blockd : Refuse the inventory\]' "$tmp/bad-$name.log" ||
        { cat "$tmp/bad-$name.log"; fail "$name: it did not fail in the check"; }
    grep -q 'PLAY \[blockd - where every host is reached\]' "$tmp/bad-$name.log" &&
        fail "$name: a play after the check ran"
    [ ! -e "$tmp/root" ] || fail "$name: $tmp/root was written"
    grep -qF -e "$admin_token" -e "$read_token" "$tmp/bad-$name.log" && fail "$name: a token in the output"
    echo "refused ($name): $want"
}
# A cluster of named hosts that are never connected to (the check touches
# none); each case breaks one thing through these variables.
P2='        p2: {blockd_node_id: 2}'
B2='        b2: {blockd_blob_servers: [{id: 12, data_dir: /srv/d1}]}'
B3='        b3: {blockd_blob_servers: [{id: 13, data_dir: /srv/d1}]}'
P4=
cluster_inv() {
    cat <<INV
all:
  vars: {ansible_connection: local, blockd_admin_token: "$admin_token", blockd_read_token: "$read_token"}
  children:
    blockd_proxies:
      hosts:
        p1: {blockd_node_id: 1}
$P2
        p3: {blockd_node_id: 3}
$P4
    blockd_blobs:
      hosts:
        b1: {blockd_blob_servers: [{id: 11, data_dir: /srv/d1}]}
$B2
$B3
    blockd_agents:
      hosts:
        a1: {}
INV
}
BAD_INV=$(P4='        p4: {blockd_node_id: 4}' cluster_inv) \
    bad even 'group blockd_proxies: 4 hosts (p1, p2, p3, p4); Raft needs an odd number'
BAD_INV=$(P2='        p2: {blockd_node_id: 1}' cluster_inv) \
    bad duplicate 'p2: blockd_node_id 1 is also the id of proxy p1'
BAD_INV=$(B2='        b2: {blockd_blob_servers: [{id: 12}]}' B3='        b3: {blockd_node_id: 13}' cluster_inv) \
    bad nodatadir 'b2: blockd_blob_servers[0].data_dir is not set'
grep -qF 'b3: blockd_blob_servers is not set' "$tmp/bad-nodatadir.log" ||
    fail "nodatadir: b3 (no blockd_blob_servers) is not named"
BAD_INV=$(cluster_inv | sed 's/, blockd_read_token: "[0-9a-f]*"//') \
    bad notoken 'a1: blockd_read_token is not set'
BAD_INV=$(cluster_inv) bad nopackage 'p1: blockd_package is not set' -e blockd_install_package=true
BAD_INV=$(cluster_inv) bad badpackage "blockd_package $tmp/nothing.deb is not a file on the controller" \
    -e blockd_install_package=true -e "blockd_package=$tmp/nothing.deb"
echo "ansible role: renders valid configs, idempotent, restarts only what changed, refuses bad inventories"
