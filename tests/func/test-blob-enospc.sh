#!/usr/bin/env bash
# Defends CONTRACT.md C15 (row 12, resource exhaustion) on the blob server:
# on a data directory that fills up (a 6 MiB tmpfs; without the privilege
# to mount one, a configured capacity_bytes), puts fail with a clean
# ENOSPC status -- never EIO, never a crash, never a partial ack -- the
# server reports itself out of space and read-only, keeps serving reads of
# everything acknowledged, and recovers on the full disk after a SIGKILL.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires curl --version

tmp=$(mktmp)
mnt=$tmp/mnt
mkdir -p "$mnt"
sets=(--set blob.heartbeat_ms=100 --set blob.segment_bytes='"1M"' --set blob.max_blob_bytes='"256K"')
if mount -t tmpfs -o size=6m tmpfs "$mnt" 2>/dev/null; then
    cleanup_fn umount -l "$mnt"
    echo "data on a 6 MiB tmpfs"
    sets+=(--set "blob.data_dir=\"$mnt/data\"")
else
    echo "cannot mount a tmpfs; using capacity_bytes instead"
    sets+=(--set blob.capacity_bytes='"6M"')
fi
cluster_init "$tmp/c" --proxies 0 --blobs 1 --agents 0 "${sets[@]}"
cluster_start
cluster_wait_ready 20
cli() { cluster_blobcli blob1 "$@"; }

cli storm --count 200 --inflight 8 --size 65536 --acked "$tmp/acked" >"$tmp/storm.out" 2>&1 || true
n=$(wc -l <"$tmp/acked")
echo "$(tail -1 "$tmp/storm.out"); $n acknowledged"
[ "$n" -gt 10 ] && [ "$n" -lt 200 ] || fail "expected the disk to fill: $n acknowledged"
grep -q "status=ENOSPC" "$tmp/storm.out" || fail "no ENOSPC status: $(cat "$tmp/storm.out")"
! grep -q "status=EIO" "$tmp/storm.out" || fail "EIO instead of ENOSPC: $(cat "$tmp/storm.out")"
out=$(cli put --id 100000 --size 200000 || true)
[[ $out == *status=ENOSPC* ]] || fail "put on a full disk: $out"
[ "$(cluster_field blob1 /v1/status .read_only)" = true ] || fail "not read-only when full"
[ "$(cluster_field blob1 /v1/status .failed)" = false ] || fail "ENOSPC must not fail the store"
cli verify --ids "$tmp/acked" --size 65536 | grep -q "ok $n failed 0" || fail "reads on a full disk"

cluster_kill blob1
cluster_start
cluster_wait_ready 20
cli verify --ids "$tmp/acked" --size 65536 | grep -q "ok $n failed 0" || fail "acked blobs lost on a full disk"
cluster_stop_all
echo "blob ENOSPC: clean status, reads continue, recovery on a full disk"
