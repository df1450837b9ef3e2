#!/usr/bin/env bash
# test-shape-drain.sh: draining one of four blob servers, each in a zone of
# its own, while writes go on: `blockd ctl node drain` moves every replica
# off it (blob to blob, checkpointed) and prints progress until it is done;
# then every blob is on three servers in three zones, every partition's
# members hold the same blobs, everything written reads back, and `node
# remove` forgets the server (issue 15; defends C3).  Bad input changes
# nothing: an unknown server is 400, removing a server still in a
# partition is 409, and draining when fewer than three others would remain
# is 409.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires python3 --version

MIB=48
tmp=$(mktmp)
# Each blob server in a zone and on a host of its own.
zones=()
for j in 1 2 3 4; do
    zones+=(--set "blob$j.zone=\"z$j\"" --set "blob$j.host=\"h$j\"")
done
cluster_init "$tmp/c" --proxies 3 --blobs 4 --agents 0 \
    --set proxy.node_timeout_ms=1500 --set proxy.election_timeout_ms=1000 \
    --set blob.heartbeat_ms=200 --set blob.segment_bytes='"32M"' --set blob.max_blob_bytes='"4M"' \
    --set proxy.repair_interval_ms=1000 --set proxy.partition_bytes='"1G"' \
    --set blob.capacity_bytes='"4G"' --set blob.rack='"r1"' "${zones[@]}"
cluster_start
cluster_wait_ready 30
cluster_create_volume v 1G --attach volcli
cluster_vol_write v 41 "$MIB"
wait_for 30 cluster_in_sync "$MIB"
clusterjs() { cluster_get leader /v1/cluster; }

# Every partition apart by zone (and, given an id, none holding that server).
zones_ok() {
    clusterjs | python3 -c '
import json, sys
d = json.load(sys.stdin)
zone = {n["id"]: n["zone"] for n in d["nodes"]}
bad = [p["id"] for p in d["partitions"] if len({zone.get(m) for m in p["nodes"]}) != 3]
exclude = int(sys.argv[1]) if len(sys.argv) > 1 else 0
held = [p["id"] for p in d["partitions"] if exclude in p["nodes"]]
sys.exit(1 if bad or held else 0)' "$@"
}
zones_ok
clusterjs | python3 -c 'import json,sys; print("placement:", json.load(sys.stdin)["placement"])'

# The server in the most partitions goes.
victim=$(clusterjs | python3 -c '
import json, sys, collections
c = collections.Counter(n for p in json.load(sys.stdin)["partitions"] for n in p["nodes"])
print(c.most_common(1)[0][0])')
echo "draining blob server $victim"

# node_state ID: the server's state as GET /v1/nodes/ID says.
node_state() {
    cluster_ctl --json node status "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])'
}

# Bad input first: nothing changes.
out=$(cluster_ctl node drain 99 --no-wait 2>&1) && fail "draining an unknown server succeeded: $out"
echo "$out" | grep -q "HTTP 400" || fail "unknown server: $out"
echo "$out" | grep -q "unknown blob server 99" || fail "unknown server, no reason: $out"
out=$(cluster_ctl node remove "$victim" 2>&1) && fail "removing a server in partitions succeeded: $out"
echo "$out" | grep -q "HTTP 409" || fail "remove in use: $out"
echo "$out" | grep -q "drain it first" || fail "remove in use, no reason: $out"
[ "$(node_state "$victim")" = active ] || fail "a refusal changed it"

# Writes go on during the drain: 4 MiB at a time until told to stop.
background_writes() {
    local k=0
    while [ ! -e "$tmp/stop" ] && [ $k -lt 40 ]; do
        cluster_volcli proxy1 write v $((100 + k)) 4 $((256 + 4 * k)) >"$tmp/bg.$k" 2>&1 || {
            echo "$k" >"$tmp/bg.failed"
            break
        }
        k=$((k + 1))
    done
    echo "$k" >"$tmp/bg.count"
}
background_writes &
bg=$!
cleanup_fn kill_pid "$bg"

CLUSTER_CTL_TIMEOUT=180 cluster_ctl node drain "$victim" | tee "$tmp/drain.out"
grep -q "ETA" "$tmp/drain.out" || fail "the drain printed no progress"
grep -q "is drained" "$tmp/drain.out" || fail "the drain did not finish"
: >"$tmp/stop"
wait "$bg" || true
[ ! -e "$tmp/bg.failed" ] || fail "a write during the drain failed: $(cat "$tmp/bg.$(cat "$tmp/bg.failed")")"
nbg=$(cat "$tmp/bg.count")
for ((k = 0; k < nbg; k++)); do cluster_note_index <"$tmp/bg.$k"; done
echo "$nbg writes of 4 MiB went on during the drain"

# No partition names it; every partition apart by zone; three copies each.
wait_for 30 zones_ok "$victim"
clusterjs | python3 -c '
import json, sys
d = json.load(sys.stdin)
r = d["rebuild"]
print("moves started", r.get("moves_started"), "done", r.get("moves_done"), "copied", r.get("bytes_copied"))
for p in d["partitions"]: print("partition", p["id"], p["nodes"], p["separation"])'
wait_for 60 cluster_in_sync $((MIB + 4 * nbg))
cluster_vol_verify v 41 "$MIB"
for ((k = 0; k < nbg; k++)); do cluster_vol_verify v $((100 + k)) 4 $((256 + 4 * k)) >/dev/null; done

# The copies went server to server: the new members pulled them.
pulled=0
for j in 1 2 3 4; do
    n=$(cluster_field "blob$j" /v1/status '.pulls.blobs // 0')
    pulled=$((pulled + n))
done
[ "$pulled" -gt 0 ] || fail "no blob server pulled anything"
echo "$pulled blobs pulled blob to blob"

# Remove it; then draining any other would leave two: refused.
cluster_ctl node remove "$victim"
cluster_ctl --json node list | python3 -c '
import json, sys
ids = [n["id"] for n in json.load(sys.stdin)["nodes"]]
sys.exit(1 if int(sys.argv[1]) in ids else 0)' "$victim" || fail "removed server still listed"
other=$(clusterjs | python3 -c 'import json,sys; print(json.load(sys.stdin)["partitions"][0]["nodes"][0])')
out=$(cluster_ctl node drain "$other" --no-wait 2>&1) && fail "draining down to two servers succeeded: $out"
echo "$out" | grep -q "HTTP 409" || fail "drain below three: $out"
echo "$out" | grep -q "every partition needs three" || fail "drain below three, no reason: $out"
[ "$(node_state "$other")" = active ] || fail "the refused drain changed it"
cluster_vol_write v 43 8 512
cluster_vol_verify v 43 8 512
cluster_stop_all
echo "PASS"
