#!/usr/bin/env bash
# Defends CONTRACT.md C14 and §3 "bytes on disk" (row 8, bit rot): with
# the server stopped, flip a byte in the data of a blob in a sealed
# segment, in the header of another, and in the data of a blob in the
# active segment, with dd.  After a restart each of them reads back as a
# checksum error (never data), the scrubber and recovery report all three
# through BLOB_REPORT and /v1/status, every other blob reads back intact,
# and a put of the right bytes heals a bad blob, also across a restart.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires curl --version

tmp=$(mktmp)
cluster_init "$tmp/c" --proxies 0 --blobs 1 --agents 0 --set blob.heartbeat_ms=100 \
    --set blob.segment_bytes='"1M"' --set blob.max_blob_bytes='"64K"' \
    --set blob.scrub_bytes_per_sec='"64M"'
cluster_start
cluster_wait_ready 20
cli() { cluster_blobcli blob1 "$@"; }
bad_blobs() { cluster_field blob1 /v1/status .bad_blobs; }

size=10000
rec=10080            # align8(64-byte header + 3 chunk checksums + 10000 bytes)
for id in $(seq 1 110); do cli put --id "$id" --size $size >/dev/null; done
cluster_stop blob1 || fail "unclean stop"

# 104 records fit in the first 1 MiB segment; blob 105 starts the second.
data=$CLUSTER_DIR/blob1/data
seg1=$data/p1/0000000000000001.seg
seg2=$data/p1/0000000000000002.seg
[ -f "$data/p1/0000000000000001.idx" ] || fail "first segment was not sealed"
[ -f "$seg2" ] || fail "no second segment"

# flip FILE OFFSET: xor one byte with 0x55 in place.
flip() {
    local b
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    printf "\\x$(printf %02x $((b ^ 0x55)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
flip "$seg1" $((64 + 6 * rec + 76 + 5000))   # data of blob 7
flip "$seg1" $((64 + 11 * rec + 20))         # header of blob 12
flip "$seg2" $((64 + 1 * rec + 76 + 9000))   # data of blob 106

cluster_start
cluster_wait_ready 20
for id in 7 12 106; do
    out=$(cli get --id "$id" --size $size || true)
    [[ $out == *status=ECSUM* ]] || fail "blob $id: expected a checksum error, got: $out"
done
for id in $(seq 1 110); do
    case $id in 7 | 12 | 106) continue ;; esac
    cli get --id "$id" --size $size | grep -q verified || fail "blob $id damaged"
done
wait_for 20 "[ \$(cli report | grep -c '^bad ') -eq 3 ]"
cli report | grep -q '^bad 7 1$' || fail "blob 7 not reported: $(cli report)"
cli report | grep -q '^bad 12 1$' || fail "blob 12 not reported: $(cli report)"
cli report | grep -q '^bad 106 1$' || fail "blob 106 not reported: $(cli report)"
[ "$(bad_blobs)" = 3 ] || fail "status bad_blobs $(bad_blobs)"
wait_for 20 "cluster_status blob1 | grep -q '\"passes\":[[:space:]]*[1-9]'"
grep -q "is bad" "$CLUSTER_DIR/blob1/blockd.log" || fail "no log line for the bad blobs"

# The proxy's repair: a put of the same bytes heals; other bytes do not.
cli put --id 7 --size $size --seed 9 | grep -q status=EIMMUTABLE || fail "heal with other bytes"
cli put --id 7 --size $size | grep -q stored_len || fail "heal refused"
cli get --id 7 --size $size | grep -q verified || fail "healed blob 7 does not read back"
[ "$(bad_blobs)" = 2 ] || fail "bad_blobs after heal $(bad_blobs)"

cluster_stop blob1 || fail "unclean stop"
cluster_start
cluster_wait_ready 20
cli get --id 7 --size $size | grep -q verified || fail "heal lost at restart"
[ "$(bad_blobs)" = 2 ] || fail "bad list not durable: $(bad_blobs)"
out=$(cli get --id 12 --size $size || true)
[[ $out == *status=ECSUM* ]] || fail "blob 12 after restart: $out"
cluster_stop_all
echo "blob corruption: 3 flipped bytes detected, reported, never served; heal works"
