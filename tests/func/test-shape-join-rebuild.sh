#!/usr/bin/env bash
# test-shape-join-rebuild.sh: a new blob server joins a full cluster and
# receives partitions by rate-limited rebalancing, while writes go on; the
# Raft leader is killed in the middle of a move, and the new leader resumes
# that move from its checkpoint in the index instead of starting it over
# (issue 15; defends C3).  Every partition ends on three servers in three
# zones, in sync, and everything written reads back.  Small blobs (8 KiB)
# and a slow copy rate (rebuild_bytes_per_sec) make a move last several
# checkpoints.  Reads during the move never try the member being filled
# first (no failover).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires python3 --version

MIB=64
tmp=$(mktmp)
zones=()
for j in 1 2 3 4; do zones+=(--set "blob$j.zone=\"z$j\"" --set "blob$j.host=\"h$j\""); done
# blob4 (node 14) joins later, with twice the others' capacity: twice the partitions.
cluster_init "$tmp/c" --proxies 3 --blobs 4 --agents 0 \
    --set proxy.node_timeout_ms=1500 --set proxy.election_timeout_ms=1000 \
    --set blob.heartbeat_ms=200 --set blob.segment_bytes='"32M"' --set blob.max_blob_bytes='"4M"' \
    --set proxy.repair_interval_ms=1000 --set proxy.partition_bytes='"1G"' \
    --set proxy.rebuild_bytes_per_sec='"1M"' --set proxy.blob_max_bytes='"8K"' \
    --set blob.capacity_bytes='"4G"' --set blob4.capacity_bytes='"8G"' "${zones[@]}"
cluster_start blob1 blob2 blob3 proxy1 proxy2 proxy3
cluster_wait_ready 30
cluster_create_volume v 1G --attach volcli
cluster_vol_write v 51 "$MIB"
wait_for 60 cluster_in_sync 1
clusterjs() { cluster_get leader /v1/cluster; }
loads() {
    clusterjs | python3 -c '
import json, sys, collections
d = json.load(sys.stdin)
c = collections.Counter(n for p in d["partitions"] for n in p["nodes"])
print(" ".join("%d:%d" % (k, c[k]) for k in sorted(c)))'
}
echo "partitions before the join: $(loads)"

# Writes go on throughout, 1 MiB at a time; a client whose proxy dies
# goes to the next one (as an agent does), so the leader's death costs no
# write.
background_writes() {
    local k=0 i ok
    while [ ! -e "$tmp/stop" ] && [ $k -lt 200 ]; do
        ok=false
        for i in 1 2 3 1 2 3; do
            if cluster_volcli "proxy$i" write v $((100 + k)) 1 $((256 + k)) >"$tmp/bg.$k" 2>&1; then
                ok=true
                break
            fi
            sleep 0.5
        done
        $ok || {
            echo "$k" >"$tmp/bg.failed"
            break
        }
        k=$((k + 1))
        sleep 0.2
    done
    echo "$k" >"$tmp/bg.count"
}
background_writes &
bg=$!
cleanup_fn kill_pid "$bg"

# The new server joins; rebalancing starts moving replicas to it.
cluster_start blob4
moving_with_checkpoint() {
    clusterjs | python3 -c '
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if any(m["checkpoint"] > 0 and m["reason"] == "rebalance" and
                  m["bytes_left"] > (4 << 20) for m in d["rebuild"]["list"]) else 1)'
}
wait_for 120 moving_with_checkpoint
clusterjs | python3 -c '
import json, sys
for m in json.load(sys.stdin)["rebuild"]["list"]: print("move under way:", m)'

# Reads during the move try the member being filled last: none pays a
# failed round trip there first (blockd_proxy_blob_gets_total{result="failover"}).
failovers() {
    cluster_get proxy1 /metrics | awk '/^blockd_proxy_blob_gets_total\{.*result="failover"/ {s += $NF} END {print s + 0}'
}
f0=$(failovers)
cluster_vol_verify v 51 "$MIB"
f1=$(failovers)
[ "$f1" = "$f0" ] || fail "reads during the move failed over $((f1 - f0)) times: the member being filled was tried first"
echo "ok: $MIB MiB read during the move, no failover"

# Kill the leader in the middle of it.
old=$(cluster_leader)
echo "killing the leader, $old"
cluster_kill "$old"
wait_for 30 cluster_leader
resumed() {
    cluster_field leader /v1/cluster '.rebuild.moves_resumed // 0' | grep -qv '^0$'
}
wait_for 30 resumed
echo "the new leader resumed from the checkpoint"
grep -h "resumes after blob" "$CLUSTER_DIR"/proxy*/blockd.log | head -n 3
cluster_start "$old"

# Until balanced: the new server holds about twice the others' share.
settled() {
    clusterjs | python3 -c '
import json, sys, collections
d = json.load(sys.stdin)
c = collections.Counter(n for p in d["partitions"] for n in p["nodes"])
zone = {n["id"]: n["zone"] for n in d["nodes"]}
apart = all(len({zone[m] for m in p["nodes"]}) == 3 for p in d["partitions"])
sys.exit(0 if not d["rebuild"]["list"] and c[14] >= 3 and apart else 1)'
}
wait_for 240 settled
echo "partitions after the join: $(loads)"
: >"$tmp/stop"
wait "$bg" || true
[ ! -e "$tmp/bg.failed" ] || fail "a write during the moves failed: $(cat "$tmp/bg.$(cat "$tmp/bg.failed")")"
nbg=$(cat "$tmp/bg.count")
for ((k = 0; k < nbg; k++)); do cluster_note_index <"$tmp/bg.$k"; done
echo "$nbg writes went on during the moves"
wait_for 120 cluster_in_sync 1
cluster_vol_verify v 51 "$MIB"
for ((k = 0; k < nbg; k++)); do cluster_vol_verify v $((100 + k)) 1 $((256 + k)) >/dev/null; done
cluster_stop_all
echo "PASS"
