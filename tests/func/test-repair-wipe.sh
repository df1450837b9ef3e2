#!/usr/bin/env bash
# test-repair-wipe.sh: a blob server's disk is replaced (same id, empty data
# dir); anti-entropy alone restores every live blob on it, and the data then
# reads back from that server alone (defends C3, C9, C13; CONTRACT row 13).
# Prints the re-replication time per GiB (F7).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster-lib.sh"
set -e
requires curl --version
requires python3 --version

MIB=${WIPE_MIB:-96}
tmp=$(mktmp)
cluster_setup "$tmp" 3 '"repair_interval_ms": 500'
cluster_start
vol_create v 1G
vol_write v 11 "$MIB"
wait_for 20 every_partition_in_sync "$MIB"

# Replace blob server 2's disk.
blob_stop 2
rm -rf "$tmp/b2"
copied0=$(repair_field blobs_copied)
t0=$(date +%s%N)
blob_start 2
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
wait_for 30 every_partition_in_sync "$MIB"

# Every copy on the restored server reads back and verifies.
n=0
for p in $(part_ids); do
    for id in $(blob_ids 2 "$p"); do
        blob_cli 2 get --id "$id" --partition "$p" >/dev/null || fail "blob $id does not read on blob2"
        n=$((n + 1))
    done
done
echo "blob2 serves $n verified blobs"
cluster_json | python3 -c '
import json, sys
for p in json.load(sys.stdin)["partitions"]:
    s = p["sync"]
    assert s is not None, p
    print("partition", p["id"], "complete", s["complete"], "copied", s["copied"])'

# Only the restored server is left: everything still reads back.
blob_stop 1
blob_stop 3
vol_verify v 11 "$MIB"
cluster_stop
echo "PASS"
