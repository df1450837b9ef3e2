#!/usr/bin/env bash
# test-shape-index-full.sh: an index that reaches its size limit (90% of
# index_map_bytes, replicated as INDEX_LIMIT) refuses new data with ENOSPC
# and says so (blockd_proxy_index_full, /v1/status index_space), a new
# volume with 507, while reads, deletes and every proxy's apply loop go
# on; deleting a volume (freed in bounded REAP steps) makes room and writes
# work again (issue 15; C15: ENOSPC is returned as ENOSPC, never as EIO or
# a hang).  A 4 MiB map and 4 KiB blobs fill the index in a few seconds.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires python3 --version

tmp=$(mktmp)
cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 0 \
    --set proxy.node_timeout_ms=1500 --set proxy.election_timeout_ms=1000 \
    --set blob.heartbeat_ms=200 --set blob.segment_bytes='"32M"' --set blob.max_blob_bytes='"4M"' \
    --set proxy.index_map_bytes='"4M"' --set proxy.blob_max_bytes='"4K"' \
    --set proxy.gc_grace_ms=1000 --set proxy.read_timeout_ms=500
cluster_start
cluster_wait_ready 30
cluster_create_volume keep 64M --attach volcli
cluster_vol_write keep 71 4
cluster_create_volume fill 1G --attach volcli

space() {
    cluster_field leader /v1/status '.index_space | "\(.table_pages) \(.limit_pages) \(.full)"'
}
wait_for 20 "space | grep -qv ' 0 '"
echo "index space (table pages, limit, full): $(space)"

# Fill: 1 MiB at a time (256 blobs and extents each) until refused.
full_at=
for ((m = 0; m < 512; m++)); do
    if ! out=$(cluster_volcli proxy1 write fill $((200 + m)) 1 "$m" 2>&1); then
        echo "$out" | grep -q "No space left\|ENOSPC" || fail "write $m failed, not with ENOSPC: $out"
        full_at=$m
        break
    fi
    cluster_note_index <<<"$out"
done
[ -n "$full_at" ] || fail "512 MiB of 4 KiB blobs never filled a 4 MiB index"
echo "the index refused new data after $full_at MiB: $(echo "$out" | tail -n 1)"
[ "$(space | cut -d' ' -f3)" = true ] || fail "status does not say full: $(space)"
cluster_get leader /metrics | grep -q '^blockd_proxy_index_full{.*} 1' ||
    fail "no index_full alert in /metrics"

# Reads go on; a new volume is refused with 507 and a reason.
cluster_vol_verify keep 71 4
cluster_vol_verify fill 200 1 0
code=$(cluster_curl -o "$tmp/create.out" -w '%{http_code}' -H 'Content-Type: application/json' \
    -d '{"name": "more", "size": "64M"}' "$(cluster_url "$(cluster_leader)" /v1/volumes)")
[ "$code" = 507 ] || fail "creating a volume while full: HTTP $code $(cat "$tmp/create.out")"

# Every proxy still applies (no stall at the entry that filled it).
applied_all() {
    local i a=()
    for i in 1 2 3; do a+=("$(cluster_field "proxy$i" /v1/status .index.applied_index)"); done
    echo "${a[*]}"
}
before=$(applied_all)
# The refused writer exited still attached: detach and fence it, then delete.
cluster_ctl volume detach fill --force >/dev/null
cluster_ctl volume rm fill
reaped() { space | grep -q "false"; }
wait_for 60 reaped
after=$(applied_all)
echo "applied indexes before the delete: $before; after: $after"
for i in 0 1 2; do
    b=$(echo "$before" | cut -d' ' -f$((i + 1)))
    a=$(echo "$after" | cut -d' ' -f$((i + 1)))
    [ "$a" -gt "$b" ] || fail "proxy $((i + 1)) stopped applying ($b -> $a)"
done
echo "after the delete: $(cluster_get leader /v1/status | jq -c .index_space)"

# Room again: writes work, everything reads back.
cluster_vol_write keep 72 4 8
cluster_vol_verify keep 71 4
cluster_vol_verify keep 72 4 8
for i in 1 2 3; do
    ! grep -q "index writer failed" "$CLUSTER_DIR/proxy$i/blockd.log" ||
        fail "the index writer of proxy$i failed"
done
cluster_stop_all
echo "PASS"
