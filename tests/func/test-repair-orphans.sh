#!/usr/bin/env bash
# test-repair-orphans.sh: copies the index never heard of (a put whose index
# commit never happened) are deleted after the orphan grace, never before,
# and live blobs are untouched (defends C13, C9).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster-lib.sh"
set -e
requires curl --version
requires python3 --version

GRACE=40000   # the smallest grace the config accepts (twice the write deadline)
MIB=8
tmp=$(mktmp)
cluster_setup "$tmp" 3 "\"repair_interval_ms\": 500, \"orphan_grace_ms\": $GRACE"
cluster_start
vol_create v 1G
vol_write v 41 "$MIB"
wait_for 20 every_partition_in_sync "$MIB"

live0=$(for p in $(part_ids); do blob_ids 1 "$p"; done | wc -l)

# Orphans: huge ids no lease ever reaches, in a partition that exists, at
# its current epoch; on one server or on all three of its members.
part=$(part_ids | head -1)
read -r -a members <<<"$(part_members "$part")"
epoch=$(cluster_json | python3 -c '
import json, sys
print([p["epoch"] for p in json.load(sys.stdin)["partitions"] if p["id"] == int(sys.argv[1])][0])' "$part")
base=$(((1 << 62) + (1 << 40)))
orphans=()
for k in 1 2 3; do
    id=$((base + k))
    blob_cli $((members[0] - 10)) put --id "$id" --partition "$part" --epoch "$epoch" --size 8192 --seed "$k" >/dev/null
    orphans+=("$((members[0] - 10)):$id")
done
for m in "${members[@]}"; do
    id=$((base + 10))
    blob_cli $((m - 10)) put --id "$id" --partition "$part" --epoch "$epoch" --size 4096 >/dev/null
    orphans+=("$((m - 10)):$id")
done
t0=$SECONDS

present() { blob_cli "${1%%:*}" stat --id "${1##*:}" >/dev/null 2>&1; }

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
live1=$(for p in $(part_ids); do blob_ids 1 "$p"; done | wc -l)
[ "$live0" = "$live1" ] || fail "blob server 1 listed $live0 blobs before, $live1 after"
every_partition_in_sync "$MIB"
vol_verify v 41 "$MIB"
curl -sf "http://$(leader_admin)/metrics" | grep -q '^blockd_proxy_repair_orphans_deleted_total{.*} [1-9]' ||
    fail "the orphan counter is not in /metrics"
cluster_stop
echo "PASS"
