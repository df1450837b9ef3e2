#!/usr/bin/env bash
# test-shape-proxies.sh: the Raft group goes from 3 to 5 proxies and back
# to 3 while fio writes and verifies through an agent: `blockd ctl proxy
# add` adds proxies started with "join": true (each catches up, from a
# snapshot here, before it votes), `proxy remove` takes out two of the
# original three, the leader among them, and fio sees no error (issue 15;
# defends C1, C3, C16: the three left hold identical indexes).  Bad input
# changes nothing: an id or an address already in the group is 409, an
# unknown proxy 400, and a removal that would leave the voters without a
# reachable majority 409.  proxy4 and proxy5 have certificates and configs
# from the harness but are not started with the others.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires python3 --version
requires fio --version
fio --enghelp 2>/dev/null | grep -qw nbd || skip "fio has no nbd engine"

tmp=$(mktmp)
cluster_init "$tmp/c" --proxies 5 --blobs 4 --agents 1 \
    --set proxy.node_timeout_ms=1500 --set proxy.election_timeout_ms=1000 \
    --set blob.heartbeat_ms=200 --set blob.segment_bytes='"32M"' --set blob.max_blob_bytes='"4M"' \
    --set proxy.snapshot_threshold=64 --set proxy.snapshot_trailing=16 \
    --set proxy.repair_interval_ms=2000 \
    --set agent1.cache_bytes='"16M"' --set agent1.flush_age_ms=200
# The group starts as proxies 1-3; 4 and 5 join it later (they know the
# three, and themselves).
peer() { jq -n --argjson id "$1" --arg a "${CLUSTER_WIRE[proxy$1]}" '{id: $id, addr: $a}'; }
three=$(for i in 1 2 3; do peer $i; done | jq -sc .)
for i in 1 2 3; do cluster_set "proxy$i" "peers=$three"; done
for i in 4 5; do
    cluster_set "proxy$i" "peers=$( (for j in 1 2 3 $i; do peer $j; done) | jq -sc .)"
    cluster_set "proxy$i" join=true
done
cluster_start blob1 blob2 blob3 blob4 proxy1 proxy2 proxy3 agent1
cluster_wait_ready 30

# roles: "id:role ..." of the group, as the leader says.
roles() {
    cluster_get leader /v1/proxies | python3 -c '
import json, sys
print(" ".join("%d:%s" % (p["id"], p["role"]) for p in sorted(json.load(sys.stdin)["proxies"], key=lambda p: p["id"])))'
}
voters_are() { [ "$(roles)" = "$1" ]; }
leader_id() { cluster_field leader /v1/proxies .leader; }

cluster_create_volume v 256M
wait_for 20 "(exec 3<>/dev/tcp/${CLUSTER_NBD[agent1]%:*}/${CLUSTER_NBD[agent1]##*:}) 2>/dev/null"
uri=$(cluster_uri v)

fio --name=verify --ioengine=nbd --uri="$uri" --rw=randrw --rwmixread=40 --bs=4k-64k \
    --bsrange=4k-64k --size=96M --iodepth=8 --direct=1 --verify=crc32c --verify_fatal=1 \
    --verify_backlog=512 --serialize_overlap=1 --time_based=1 --runtime=75 --fsync=64 \
    --output-format=json --output="$tmp/fio.json" >"$tmp/fio.out" 2>&1 &
fiopid=$!
cleanup_fn kill_pid $fiopid
sleep 5

# Bad input first: nothing changes.
out=$(cluster_ctl proxy add 2 "${CLUSTER_WIRE[proxy4]}" 2>&1) && fail "adding a member id succeeded: $out"
echo "$out" | grep -q "HTTP 409" && echo "$out" | grep -q "already a member" || fail "id in use: $out"
out=$(cluster_ctl proxy add 4 "${CLUSTER_WIRE[proxy2]}" 2>&1) && fail "adding a used address succeeded: $out"
echo "$out" | grep -q "HTTP 409" && echo "$out" | grep -q "already in use by proxy 2" ||
    fail "address in use: $out"
out=$(cluster_ctl proxy remove 9 2>&1) && fail "removing an unknown proxy succeeded: $out"
echo "$out" | grep -q "HTTP 400" && echo "$out" | grep -q "unknown proxy 9" || fail "unknown: $out"
voters_are "1:voter 2:voter 3:voter" || fail "a refusal changed the group: $(roles)"

# 3 -> 5: each new proxy joins, catches up, then votes.
for i in 4 5; do
    cluster_start "proxy$i"
    cluster_ctl proxy add $i "${CLUSTER_WIRE[proxy$i]}"
    wait_for 60 "roles | grep -q '$i:voter'"
    echo "group: $(roles)"
done
cluster_get proxy4 /v1/proxies | python3 -c '
import json, sys
me = [p for p in json.load(sys.stdin)["proxies"] if p["id"] == 4][0]
print("proxy 4 stored", me.get("snapshots_stored"), "snapshot(s) while catching up")
sys.exit(0 if me.get("snapshots_stored", 0) >= 1 else 1)' || fail "proxy 4 did not catch up from a snapshot"

# 5 -> 3: remove two of the original three, the leader among them if it
# is one of them (its removal hands leadership over).
gone=(1 2)
[ "$(leader_id)" = 3 ] && gone=(3 1)
for i in "${gone[@]}"; do
    cluster_ctl proxy remove "$i"
    wait_for 30 "! roles | grep -q '^$i:\\| $i:'"
    cluster_stop "proxy$i"
    # A removed leader hands over: until the others have elected one, a
    # follower still names the old leader (421).  Wait for a leader that
    # answers before the next removal.
    wait_for 30 "roles 2>/dev/null | grep -q voter"
    echo "removed proxy $i; group: $(roles)"
done
keep=$(roles)
echo "group now: $keep"
[ "$(echo "$keep" | wc -w)" = 3 ] || fail "not three proxies: $keep"

wait $fiopid || { cat "$tmp/fio.out"; tail -c 3000 "$tmp/fio.json"; fail "fio failed"; }
errs=$(cluster_get agent1 /metrics | awk '/^blockd_nbd_request_errors_total/ {s += $2} END {print s + 0}')
[ "$errs" = 0 ] || fail "the agent answered $errs NBD requests with an error"
python3 - "$tmp/fio.json" <<'PY'
import json, sys
t = open(sys.argv[1]).read()
d = json.loads(t[t.index("{"):])
j = d["jobs"][0]
if j["error"] != 0:
    sys.exit(f"fio error {j['error']}")
gib = (j["read"]["io_bytes"] + j["write"]["io_bytes"]) / 2**30
mx = max(j["read"]["clat_ns"]["max"], j["write"]["clat_ns"]["max"]) / 1e9
print(f"fio verify across 3 -> 5 -> 3 proxies: 0 errors, {gib:.2f} GiB moved, "
      f"max I/O stall {mx:.2f} s")
PY

# The three left hold identical indexes.
converged() {
    local i first="" v
    for i in $(echo "$keep" | tr ' ' '\n' | cut -d: -f1); do
        v=$(cluster_field "proxy$i" "/v1/status?scan=1" '"\(.index.applied_index) \(.index.digest)"') ||
            return 1
        [ -z "$first" ] && first=$v
        [ "$v" = "$first" ] || return 1
    done
    echo "$first" >"$tmp/converged"
}
# The index moves on (GC, repair), so the three are compared until one
# read of all three finds them at the same entry.
wait_for 60 converged
echo "indexes identical at (applied index, digest): $(cat "$tmp/converged")"

# A removal that would leave no reachable majority is refused: with one
# of the three down, removing another would leave one of two answering.
set -- $(echo "$keep" | tr ' ' '\n' | cut -d: -f1)
lid=$(leader_id)
others=()
for i in "$@"; do [ "$i" != "$lid" ] && others+=("$i"); done
cluster_stop "proxy${others[0]}"
sleep 3
out=$(cluster_ctl proxy remove "${others[1]}" 2>&1) && fail "removing below a majority succeeded: $out"
echo "$out" | grep -q "HTTP 409" && echo "$out" | grep -q "no majority" || fail "majority: $out"
[ "$(roles)" = "$keep" ] || fail "the refused removal changed the group: $(roles)"
cluster_start "proxy${others[0]}"
# The group of three serves a new volume through the leader.
cluster_create_volume w 64M --attach volcli
out=$(cluster_volcli "proxy$lid" write w 61 8 0 2>&1) || fail "volcli write: $out"
cluster_note_index <<<"$out"
out=$(cluster_volcli "proxy$lid" verify w 61 8 0 "$CLUSTER_VOL_INDEX" 2>&1) || fail "volcli verify: $out"
cluster_stop_all
echo "PASS"
