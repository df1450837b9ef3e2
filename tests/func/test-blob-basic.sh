#!/usr/bin/env bash
# Defends the blob server's wire API (DESIGN.md §6; CONTRACT.md C9, C14):
# put / get (whole and ranged) / stat / list / delete / report over the
# wire; immutable ids (same bytes: idempotent, other bytes: EIMMUTABLE,
# deleted: never again); stale epochs fenced; compression transparent to
# GET; a clean SIGTERM keeps everything; and the admin endpoints.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires curl --version

tmp=$(mktmp)
cluster_init "$tmp/c" --proxies 0 --blobs 1 --agents 0 --set blob.heartbeat_ms=100 \
    --set blob.compression='"auto"' --set blob.segment_bytes='"2M"' --set blob.max_blob_bytes='"1M"'
cluster_start
cluster_wait_ready 20
cli() { cluster_blobcli blob1 "$@"; }

# expect NEEDLE CMD...: CMD's output contains NEEDLE (its exit status aside).
expect() {
    local needle=$1 out
    shift
    out=$("$@" 2>&1 || true)
    [[ $out == *"$needle"* ]] || fail "expected '$needle' from: $* -- got: $out"
}

expect stored_len=100000 cli put --id 1 --size 100000
expect verified cli get --id 1 --size 100000
expect verified cli get --id 1 --size 100000 --off 4096 --len 8192
expect verified cli get --id 1 --size 100000 --off 99999 --len 1
expect status=ERANGE cli get --id 1 --off 99999 --len 2
expect stored_len=100000 cli put --id 1 --size 100000            # idempotent
expect status=EIMMUTABLE cli put --id 1 --size 100000 --seed 2    # other bytes
expect status=EIMMUTABLE cli put --id 1 --size 100000 --partition 2
expect status=ECSUM cli put --id 2 --size 5000 --bad-csum
expect status=ENOENT cli stat --id 2
expect "partition=1 len=100000" cli stat --id 1

# An empty blob is a blob.
expect stored_len=0 cli put --id 5 --size 0
expect verified cli get --id 5 --size 0

# Agents may read (the direct-read path) but not write.
expect verified cli --as-agent get --id 1 --size 100000
expect status=EPERM cli --as-agent put --id 6 --size 100
expect status=EPERM cli --as-agent delete --id 1

# Compression is transparent: stored smaller, read back whole and ranged.
out=$(cli put --id 3 --size 1M --compressible)
stored=${out#stored_len=}
[ "$stored" -lt 100000 ] || fail "compressible blob stored as $stored bytes"
expect verified cli get --id 3 --size 1M --compressible
expect verified cli get --id 3 --size 1M --compressible --off 300000 --len 4096
expect stored_len=1048576 cli put --id 4 --size 1M   # not marked compressible

# Fencing: a lower epoch than the partition has seen is refused.
expect stored_len cli put --id 10 --partition 5 --epoch 9 --size 100
expect status=EFENCED cli put --id 11 --partition 5 --epoch 8 --size 100

# Listing pages through a partition in id order.
for id in 20 21 22 23 24; do cli put --id $id --partition 6 --size 64 >/dev/null; done
cli delete --id 22 --partition 6 | grep -q ok
[ "$(cli list --partition 6 --max 2 | awk '{print $1}' | tr '\n' ' ')" = "20 21 23 24 " ] ||
    fail "list: $(cli list --partition 6 --max 2)"
expect status=ENOENT cli get --id 22 --partition 6
expect status=EIMMUTABLE cli put --id 22 --partition 6 --size 64  # ids are never reused
expect ok cli delete --id 22 --partition 6                         # already deleted: ok

# Report and admin status agree.
cli report | grep -q '^blobs=9$' || fail "report: $(cli report)"
[ "$(cluster_field blob1 /v1/status .blobs)" = 9 ] || fail "status blobs: $(cluster_status blob1)"
[ "$(cluster_field blob1 /v1/status .failed)" = false ] || fail "status failed"
cluster_get blob1 /metrics | grep -q 'blockd_blob_requests_total{role="blob.11",op="put"}' ||
    fail "metrics lack per-op request counts"
cluster_get blob1 /metrics | grep -q 'blockd_blob_commit_batches_total' ||
    fail "metrics lack group-commit counts"
[ "$(cluster_curl -o /dev/null -w '%{http_code}' "$(cluster_url blob1 /v1/nope)")" = 404 ] || fail "404"

# A clean stop and restart keeps everything.
cluster_stop blob1 || fail "blockd did not stop cleanly on SIGTERM"
cluster_start blob1
cluster_wait_ready 20
expect verified cli get --id 1 --size 100000
expect verified cli get --id 3 --size 1M --compressible
expect status=ENOENT cli get --id 22 --partition 6
expect status=EFENCED cli put --id 12 --partition 5 --epoch 8 --size 100
echo "blob basic API: all checks passed"
