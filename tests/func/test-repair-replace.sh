#!/usr/bin/env bash
# test-repair-replace.sh: a blob server lost for good is replaced in each of
# its partitions after replace_after_ms (REPLACE_REPLICA, epoch + 1), its
# data is copied back to three replicas, and reads and writes go on
# throughout (defends C3, C18; CONTRACT row 13).  One partition per three
# servers (a partition bigger than a disk: one slot each), so that while
# the victim is down no old partition has three servers up: writes go on
# only because a new one is made from the up servers (proxy_mgmt.c
# ensure_partitions).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires curl --version
requires python3 --version

MIB=32
tmp=$(mktmp)
cluster_init "$tmp/c" --proxies 3 --blobs 4 --agents 0 \
    --set proxy.node_timeout_ms=1500 --set proxy.election_timeout_ms=1000 \
    --set blob.heartbeat_ms=200 --set blob.segment_bytes='"32M"' --set blob.max_blob_bytes='"4M"' \
    --set proxy.repair_interval_ms=500 --set proxy.replace_after_ms=4000 \
    --set proxy.partition_bytes='"1P"'
cluster_start
cluster_wait_ready 30
cluster_create_volume v 1G --attach volcli
cluster_vol_write v 31 "$MIB"
wait_for 20 cluster_in_sync "$MIB"
clusterjs() { cluster_get leader /v1/cluster; }

# The victim: the server in the most partitions.
victim=$(clusterjs | python3 -c '
import json, sys, collections
c = collections.Counter(n for p in json.load(sys.stdin)["partitions"] for n in p["nodes"])
print(c.most_common(1)[0][0])')
vname=$(cluster_node_name "$victim")
echo "killing blob server $victim ($vname) for good"
epochs0=$(clusterjs | python3 -c 'import json,sys; print(sum(p["epoch"] for p in json.load(sys.stdin)["partitions"]))')
cluster_kill "$vname"
t0=$SECONDS

# Reads and writes go on while it is down: reads fail over; once the proxies
# see it down, a partition of three up servers takes the writes.
cluster_vol_verify v 31 "$MIB"
victim_down() {
    clusterjs | python3 -c '
import json, sys
d = json.load(sys.stdin)
down = [n for n in d["nodes"] if n["id"] == int(sys.argv[1]) and not n["up"]]
sys.exit(0 if down and any(p["replicas_up"] == 3 for p in d["partitions"]) else 1)' "$victim"
}
wait_for 20 victim_down
cluster_vol_write v 32 16 64
[ $((SECONDS - t0)) -lt 4 ] || echo "note: the write came after replace_after_ms"

# Writes keep going through the replacement and the copying: 4 MiB writes
# (seed 100+k at 256+4k MiB) one after another until told to stop.
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

# After replace_after_ms no partition names it, and epochs moved.
gone() {
    clusterjs | python3 -c '
import json, sys
parts = json.load(sys.stdin)["partitions"]
sys.exit(1 if any(int(sys.argv[1]) in p["nodes"] for p in parts) else 0)' "$victim"
}
wait_for 40 gone
epochs1=$(clusterjs | python3 -c 'import json,sys; print(sum(p["epoch"] for p in json.load(sys.stdin)["partitions"]))')
[ "$epochs1" -gt "$epochs0" ] || fail "no partition epoch moved ($epochs0 -> $epochs1)"
echo "replaced in $(repair_field replicas_replaced) partitions"

# Three copies again: every partition's members list the same blobs.
wait_for 40 cluster_in_sync $((MIB + 16))
: >"$tmp/stop"
wait "$bg" || true
[ ! -e "$tmp/bg.failed" ] || fail "a write during the replacement failed: $(cat "$tmp/bg.$(cat "$tmp/bg.failed")")"
nbg=$(cat "$tmp/bg.count")
[ "$nbg" -ge 1 ] || fail "no write ran during the replacement"
for ((k = 0; k < nbg; k++)); do cluster_note_index <"$tmp/bg.$k"; done
echo "$nbg writes of 4 MiB went on during the replacement"
wait_for 40 cluster_in_sync $((MIB + 16 + 4 * nbg))
clusterjs | python3 -c '
import json, sys
for p in json.load(sys.stdin)["partitions"]:
    print("partition", p["id"], p["nodes"], "epoch", p["epoch"], "sync", p["sync"] and p["sync"]["complete"])'
cluster_vol_verify v 31 "$MIB"
cluster_vol_verify v 32 16 64
for ((k = 0; k < nbg; k++)); do cluster_vol_verify v $((100 + k)) 4 $((256 + 4 * k)) >/dev/null; done
echo "the $nbg background writes read back"
cluster_vol_write v 33 8 128
cluster_vol_verify v 33 8 128
cluster_stop_all
echo "PASS"
