#!/usr/bin/env bash
# Defends CONTRACT.md C15 (row 12, resource exhaustion) on the blob server:
# on a data directory that fills up (a 6 MiB tmpfs; without the privilege
# to mount one, a configured capacity_bytes), puts fail with a clean
# ENOSPC status -- never EIO, never a crash, never a partial ack -- the
# server reports itself out of space and read-only, keeps serving reads of
# everything acknowledged, and recovers on the full disk after a SIGKILL.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/blob-lib.sh"
set -e
requires curl --version

tmp=$(mktmp)
mnt=$tmp/mnt
mkdir -p "$mnt"
if mount -t tmpfs -o size=6m tmpfs "$mnt" 2>/dev/null; then
    cleanup_fn umount -l "$mnt"
    echo "data on a 6 MiB tmpfs"
    blob_setup "$tmp" '"segment_bytes": "1M", "max_blob_bytes": "256K"'
    sed -i "s|\"data_dir\": \"$tmp/data\"|\"data_dir\": \"$mnt/data\"|" "$tmp/blob.json"
else
    echo "cannot mount a tmpfs; using capacity_bytes instead"
    blob_setup "$tmp" '"segment_bytes": "1M", "max_blob_bytes": "256K", "capacity_bytes": "6M"'
fi
blob_run

cli storm --count 200 --inflight 8 --size 65536 --acked "$tmp/acked" >"$tmp/storm.out" 2>&1 || true
n=$(wc -l <"$tmp/acked")
echo "$(tail -1 "$tmp/storm.out"); $n acknowledged"
[ "$n" -gt 10 ] && [ "$n" -lt 200 ] || fail "expected the disk to fill: $n acknowledged"
grep -q "status=ENOSPC" "$tmp/storm.out" || fail "no ENOSPC status: $(cat "$tmp/storm.out")"
! grep -q "status=EIO" "$tmp/storm.out" || fail "EIO instead of ENOSPC: $(cat "$tmp/storm.out")"
out=$(cli put --id 100000 --size 200000 || true)
[[ $out == *status=ENOSPC* ]] || fail "put on a full disk: $out"
[ "$(status_field read_only)" = true ] || fail "not read-only when full"
[ "$(status_field failed)" = false ] || fail "ENOSPC must not fail the store"
cli verify --ids "$tmp/acked" --size 65536 | grep -q "ok $n failed 0" || fail "reads on a full disk"

kill -KILL "$BLOB_PID"
wait "$BLOB_PID" 2>/dev/null || true
blob_run
cli verify --ids "$tmp/acked" --size 65536 | grep -q "ok $n failed 0" || fail "acked blobs lost on a full disk"
echo "blob ENOSPC: clean status, reads continue, recovery on a full disk"
