#!/usr/bin/env bash
# test-repair-orphans.sh: copies the index never heard of (a put whose index
# commit never happened) are deleted after the orphan grace, never before,
# and live blobs are untouched (defends C13, C9).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires curl --version
requires python3 --version

GRACE=40000   # the smallest grace the config accepts (twice the write deadline)
MIB=8
tmp=$(mktmp)
cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 0 \
    --set proxy.node_timeout_ms=1500 --set proxy.election_timeout_ms=1000 \
    --set blob.heartbeat_ms=200 --set blob.segment_bytes='"32M"' --set blob.max_blob_bytes='"4M"' \
    --set proxy.repair_interval_ms=500 --set proxy.orphan_grace_ms=$GRACE
cluster_start
cluster_wait_ready 30
repair_field() { cluster_field leader /v1/status ".repair.$1"; }
cluster_create_volume v 1G --attach volcli
cluster_vol_write v 41 "$MIB"
wait_for 20 cluster_in_sync "$MIB"

live() { for p in $(cluster_partitions | cut -d' ' -f1); do cluster_blob_ids blob1 "$p"; done | wc -l; }
live0=$(live)

# Orphans: huge ids no lease ever reaches, in a partition that exists, at
# its current epoch; on one server or on all three of its members.
read -r part epoch m1 m2 m3 <<<"$(cluster_partitions | head -1)"
members=("$(cluster_node_name "$m1")" "$(cluster_node_name "$m2")" "$(cluster_node_name "$m3")")
base=$(((1 << 62) + (1 << 40)))
orphans=()
for k in 1 2 3; do
    id=$((base + k))
    cluster_blobcli "${members[0]}" put --id "$id" --partition "$part" --epoch "$epoch" --size 8192 --seed "$k" >/dev/null
    orphans+=("${members[0]}:$id")
done
for m in "${members[@]}"; do
    id=$((base + 10))
    cluster_blobcli "$m" put --id "$id" --partition "$part" --epoch "$epoch" --size 4096 >/dev/null
    orphans+=("$m:$id")
done
t0=$SECONDS

present() { cluster_blobcli "${1%%:*}" stat --id "${1##*:}" >/dev/null 2>&1; }

# Half the grace later (many passes): nothing deleted yet.
sleep $((GRACE / 2000))
for o in "${orphans[@]}"; do present "$o" || fail "orphan $o deleted before the grace"; done
[ "$(repair_field orphans_tracked)" -ge "${#orphans[@]}" ] || fail "orphans are not tracked"
echo "after $((SECONDS - t0)) s: ${#orphans[@]} orphans kept, $(repair_field orphans_tracked) tracked"

# After the grace: all gone.
all_gone() {
    local o
    for o in "${orphans[@]}"; do if present "$o"; then return 1; fi; done
}
wait_for $((GRACE / 1000 + 15)) all_gone
elapsed=$((SECONDS - t0))
[ $elapsed -ge $((GRACE / 1000 - 1)) ] || fail "orphans deleted after $elapsed s, before the grace"
echo "orphans deleted after $elapsed s; counter $(repair_field orphans_deleted)"
[ "$(repair_field orphans_deleted)" -ge "${#orphans[@]}" ] || fail "orphan counter too low"

# Live blobs untouched: same count, three copies, data reads back.
live1=$(live)
[ "$live0" = "$live1" ] || fail "blob server 1 listed $live0 blobs before, $live1 after"
cluster_in_sync "$MIB" || fail "replicas differ"
cluster_vol_verify v 41 "$MIB"
cluster_get leader /metrics | grep -q '^blockd_proxy_repair_orphans_deleted_total{.*} [1-9]' ||
    fail "the orphan counter is not in /metrics"
cluster_stop_all
echo "PASS"
