#!/usr/bin/env bash
# test-repair-wipe.sh: a blob server's disk is replaced (same id, empty data
# dir); anti-entropy alone restores every live blob on it, and the data then
# reads back from that server alone (defends C3, C9, C13; CONTRACT row 13).
# Prints the re-replication time per GiB (F7).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires curl --version
requires python3 --version

MIB=${WIPE_MIB:-96}
tmp=$(mktmp)
cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 0 \
    --set proxy.node_timeout_ms=1500 --set proxy.election_timeout_ms=1000 \
    --set blob.heartbeat_ms=200 --set blob.segment_bytes='"32M"' --set blob.max_blob_bytes='"4M"' \
    --set proxy.repair_interval_ms=500
cluster_start
cluster_wait_ready 30
repair_field() { cluster_field leader /v1/status ".repair.$1"; }
cluster_create_volume v 1G --attach volcli
cluster_vol_write v 11 "$MIB"
wait_for 20 cluster_in_sync "$MIB"

# Replace blob server 2's disk.
cluster_stop blob2 || fail "blob2 did not stop cleanly"
rm -rf "$CLUSTER_DIR/blob2/data"
copied0=$(repair_field blobs_copied)
t0=$(date +%s%N)
cluster_start blob2
cluster_wait_ready 20
# Anti-entropy copies every blob back (1 MiB blobs: one per MiB written).
restored() {
    [ $(($(repair_field blobs_copied) - copied0)) -ge "$MIB" ] &&
        [ "$(repair_field copies_queued)" = 0 ] && [ "$(repair_field copies_in_flight)" = 0 ]
}
wait_for 60 restored
t1=$(date +%s%N)
ms=$(((t1 - t0) / 1000000))
echo "re-replicated $MIB MiB in $ms ms from the restart: $((ms * 1024 / MIB)) ms per GiB"
# Every partition's members list the same ids again (BLOB_LIST ids equal).
wait_for 30 cluster_in_sync "$MIB"

# Every copy on the restored server reads back and verifies.
n=0
for p in $(cluster_partitions | cut -d' ' -f1); do
    for id in $(cluster_blob_ids blob2 "$p"); do
        cluster_blobcli blob2 get --id "$id" --partition "$p" >/dev/null || fail "blob $id does not read on blob2"
        n=$((n + 1))
    done
done
echo "blob2 serves $n verified blobs"
cluster_get leader /v1/cluster | python3 -c '
import json, sys
for p in json.load(sys.stdin)["partitions"]:
    s = p["sync"]
    assert s is not None, p
    print("partition", p["id"], "complete", s["complete"], "copied", s["copied"])'

# Only the restored server is left: everything still reads back.
cluster_stop blob1 blob3 || fail "unclean stop"
cluster_vol_verify v 11 "$MIB"
cluster_stop_all
echo "PASS"
