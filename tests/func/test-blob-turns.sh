#!/usr/bin/env bash
# test-blob-turns.sh: connections take turns for puts at a blob server
# (issue 13 item 5; base/turnq.h, blob.c), and nothing is lost.
#   - two clients (two connections, as two proxies would be) put at once:
#     one 1 MiB blobs 16 at a time, the other 4 KiB blobs one at a time;
#   - the server's counters show puts that waited their connection's turn
#     (blockd_blob_put_turn_waits_total > 0), so the deep queue was held
#     while the other connection was active;
#   - every acknowledged put of both reads back with its bytes and checksum;
#   - with put_turn_cap_bytes 0 the same load makes no put wait.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e

tmp=$(mktmp)
seed=${TEST_SEED:-$RANDOM}
echo "seed $seed"
cli() { cluster_blobcli blob1 "$@"; }
turn_waits() {
    cluster_get blob1 /metrics | awk '/^blockd_blob_put_turn_waits_total/ {printf "%d", $2}'
}

# run_pair TAG: the two storms at once, each acking into $tmp/TAG.{big,small}.
run_pair() {
    local tag=$1
    : >"$tmp/$tag.big"
    : >"$tmp/$tag.small"
    cli storm --count 120 --inflight 16 --size 1048576 --start-id $((RANDOM * 1000 + 1)) \
        --parts 2 --seed "$seed" --acked "$tmp/$tag.big" >"$tmp/$tag.big.out" 2>&1 &
    local big=$!
    cleanup_fn "kill $big 2>/dev/null"
    cli storm --count 400 --inflight 1 --size 4096 --start-id $((RANDOM * 1000 + 500000001)) \
        --parts 2 --seed "$seed" --acked "$tmp/$tag.small" >"$tmp/$tag.small.out" 2>&1 &
    local small=$!
    cleanup_fn "kill $small 2>/dev/null"
    wait $big || fail "$tag: the 1 MiB storm failed: $(tail -3 "$tmp/$tag.big.out")"
    wait $small || fail "$tag: the 4 KiB storm failed: $(tail -3 "$tmp/$tag.small.out")"
    [ "$(wc -l <"$tmp/$tag.big")" = 120 ] || fail "$tag: $(wc -l <"$tmp/$tag.big") of 120 big puts acked"
    [ "$(wc -l <"$tmp/$tag.small")" = 400 ] || fail "$tag: $(wc -l <"$tmp/$tag.small") of 400 small puts acked"
    out=$(cli verify --ids "$tmp/$tag.big" --size 1048576 --parts 2 --seed "$seed") ||
        fail "$tag: big blobs lost or damaged: $out"
    out=$(cli verify --ids "$tmp/$tag.small" --size 4096 --parts 2 --seed "$seed") ||
        fail "$tag: small blobs lost or damaged: $out"
}

cluster_init "$tmp/c" --proxies 0 --blobs 1 --agents 0 --set blob.max_blob_bytes='"1M"'
cluster_start
cluster_wait_ready 20
[ "$(turn_waits)" = 0 ] || fail "puts waited before any put"
run_pair on
waits=$(turn_waits)
[ "${waits:-0}" -gt 0 ] || fail "no put waited its turn while two connections put"
echo "ok: $waits puts waited their connection's turn; every acknowledged blob reads back"
wait_for 10 "[ \"\$(cluster_get blob1 /metrics | awk '/^blockd_blob_put_turn_queued/ {print \$2}')\" = 0 ]"
cluster_stop blob1 || fail "unclean stop"

cluster_set blob1 put_turn_cap_bytes=0
cluster_start
cluster_wait_ready 20
run_pair off
[ "$(turn_waits)" = 0 ] || fail "puts waited with put_turn_cap_bytes 0: $(turn_waits)"
echo "ok: with put_turn_cap_bytes 0 no put waited; every acknowledged blob reads back"
cluster_stop_all
