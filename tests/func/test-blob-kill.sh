#!/usr/bin/env bash
# Defends CONTRACT.md C1/C3 on the blob server (row 3, process kill):
# SIGKILL the server in the middle of a PUT storm, several times, with
# blobs of different sizes in several partitions; after every restart each
# blob whose put was acknowledged reads back with the right bytes and
# checksum, and the server takes new puts.  The storm tool writes each
# acknowledged id to a file the moment its ack arrives.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e

tmp=$(mktmp)
cluster_init "$tmp/c" --proxies 0 --blobs 1 --agents 0 --set blob.heartbeat_ms=100 \
    --set blob.segment_bytes='"8M"' --set blob.max_blob_bytes='"1M"' --set blob.compression='"auto"'
cli() { cluster_blobcli blob1 "$@"; }
sizes=(4096 1000 65536 262144)
seed=${TEST_SEED:-$RANDOM}
echo "seed $seed"

for round in 0 1 2 3; do
    cluster_start
    cluster_wait_ready 20
    size=${sizes[$round]}
    acked=$tmp/acked.$round
    : >"$acked"
    extra=()
    [ $((round % 2)) = 1 ] && extra=(--compressible)
    cli storm --count 1000000 --inflight 32 --size "$size" --start-id $((round * 1000000 + 1)) \
        --parts 3 --seed "$seed" --acked "$acked" "${extra[@]}" >"$tmp/storm.$round" 2>&1 &
    storm=$!
    cleanup_fn "kill $storm 2>/dev/null"
    want=$((200 + (seed + round * 37) % 400))
    wait_for 30 "[ \$(wc -l <'$acked') -ge $want ]"
    cluster_kill blob1
    wait "$storm" 2>/dev/null || true
    echo "round $round: killed after $(wc -l <"$acked") acknowledged puts of $size bytes"
    # Every earlier round's blobs too, after each restart.
    cluster_start
    cluster_wait_ready 20
    for r in $(seq 0 "$round"); do
        extra=()
        [ $((r % 2)) = 1 ] && extra=(--compressible)
        out=$(cli verify --ids "$tmp/acked.$r" --size "${sizes[$r]}" --parts 3 --seed "$seed" \
            "${extra[@]}") || fail "round $round: blobs of round $r lost or damaged: $out"
        echo "  round $r: $out"
    done
    cli put --id $((round * 1000000 + 999999)) --size 100 | grep -q stored_len ||
        fail "no puts after restart"
    cluster_stop blob1 || fail "unclean stop"
done
grep -h "cutting\|torn" "$CLUSTER_DIR/blob1/blockd.log" || true
echo "blob kill: every acknowledged blob survived 4 SIGKILLs"
