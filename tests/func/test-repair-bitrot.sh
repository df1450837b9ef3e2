#!/usr/bin/env bash
# test-repair-bitrot.sh: bytes flipped inside blob data on one server's
# disk are never served (reads fail over), and the leader heals the bad
# copies from the others via BLOB_REPORT (defends C14, C3; CONTRACT row 8).
# Anti-entropy passes are 10 minutes apart, so the heal path (heartbeat
# n_bad -> BLOB_REPORT -> copy from a good replica) does the repair.  A
# returning server also gets its partitions synced (after its report), and
# that sync may copy a bad blob whose report it beat: both put the same
# bytes back, so heals and copies are counted together (at least one heal).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires curl --version
requires python3 --version

MIB=32
FLIPS=6
seed=${TEST_SEED:-$RANDOM}
echo "seed $seed"
tmp=$(mktmp)
cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 0 \
    --set proxy.node_timeout_ms=1500 --set proxy.election_timeout_ms=1000 \
    --set blob.heartbeat_ms=200 --set blob.segment_bytes='"32M"' --set blob.max_blob_bytes='"4M"' \
    --set proxy.repair_interval_ms=600000 --set blob.scrub_bytes_per_sec='"256M"'
cluster_start
cluster_wait_ready 30
repair_field() { cluster_field leader /v1/status ".repair.$1"; }
cluster_create_volume v 1G --attach volcli
cluster_vol_write v 21 "$MIB"
wait_for 20 cluster_in_sync "$MIB"
wait_for 30 "[ \$(repair_field passes) -ge 1 ]" # the next pass is 10 minutes away
healed0=$(repair_field blobs_healed)
copied0=$(repair_field blobs_copied)

# Flip one byte inside the data of FLIPS distinct records of blob server 1
# (never a header: the record must stay a known, bad blob).
cluster_stop blob1 || fail "blob1 did not stop cleanly"
python3 - "$CLUSTER_DIR/blob1/data" "$seed" "$FLIPS" <<'PY' >"$tmp/flipped"
import glob, os, random, struct, sys
root, seed, flips = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
recs = []
for path in sorted(glob.glob(os.path.join(root, "**", "*.seg"), recursive=True)):
    data = open(path, "rb").read()
    off = 64
    while off + 64 <= len(data):
        if data[off:off + 4] != b"BDR1":
            off += 8
            continue
        rtype, = struct.unpack_from("<B", data, off + 5)
        blob_id, part = struct.unpack_from("<QI", data, off + 16)
        stored_len, = struct.unpack_from("<I", data, off + 32)
        start = off + 64 + 4 * ((stored_len + 4095) // 4096)
        if rtype == 1 and stored_len and start + stored_len <= len(data):
            recs.append((path, blob_id, part, start, stored_len))
        off = (start + stored_len + 7) // 8 * 8
for path, blob_id, part, start, n in rng.sample(recs, min(flips, len(recs))):
    pos = start + rng.randrange(n)
    with open(path, "r+b") as f:
        f.seek(pos)
        b = f.read(1)[0]
        f.seek(pos)
        f.write(bytes([b ^ (1 << rng.randrange(8))]))
    print(blob_id, part)
PY
[ "$(wc -l <"$tmp/flipped")" -eq "$FLIPS" ] || fail "could not damage $FLIPS records"
echo "damaged blobs (id partition): $(tr '\n' ',' <"$tmp/flipped")"
# The leader sees it down, so its return is an event: its report at once,
# then an urgent sync of its partitions.
node_up() {
    cluster_get leader /v1/cluster | python3 -c '
import json, sys
sys.exit(0 if [n["up"] for n in json.load(sys.stdin)["nodes"] if n["id"] == 11] == [sys.argv[1] == "1"] else 1)' "$1"
}
wait_for 20 node_up 0
cluster_start blob1
cluster_wait_ready 20
wait_for 20 node_up 1

# Reads never return the damaged bytes: they fail over to good replicas.
cluster_vol_verify v 21 "$MIB"
# Read every damaged copy on blob server 1 itself: a checksum error, never
# data (the server then marks it bad and says so in its next heartbeat);
# or, if it was found already, the good bytes once healed, or "no such
# blob" while the heal's put is in flight.
good_csum() { cluster_blobcli blob2 stat --id "$1" | sed -n 's/.*csum=\([0-9a-f]*\).*/\1/p'; }
while read -r id part; do
    if out=$(cluster_blobcli blob1 get --id "$id" --partition "$part" 2>&1); then
        [ "$(sed -n 's/.*csum=\([0-9a-f]*\).*/\1/p' <<<"$out")" = "$(good_csum "$id")" ] ||
            fail "blob $id read back bytes that are not the blob's: $out"
    else
        grep -q "ECSUM\|ENOENT" <<<"$out" || fail "blob $id: $out"
    fi
done <"$tmp/flipped"

# The bad copies are reported (heartbeat n_bad, BLOB_REPORT) and healed.
no_bad_left() {
    local bad
    bad=$(cluster_blobcli blob1 report | sed -n 's/^bad_blobs=//p')
    local healed=$(($(repair_field blobs_healed) - healed0)) copied=$(($(repair_field blobs_copied) - copied0))
    [ "$bad" = 0 ] && [ "$healed" -ge 1 ] && [ $((healed + copied)) -ge "$FLIPS" ]
}
end=$((SECONDS + 40))
until no_bad_left; do
    if [ $SECONDS -ge $end ]; then
        cluster_blobcli blob1 report
        cluster_get leader /v1/status | jq -c .repair
        grep -h "repair\|heal\|bad\|checksum" "$CLUSTER_DIR"/proxy*/blockd.log \
            "$CLUSTER_DIR/blob1/blockd.log" | tail -n 30
        fail "bad copies not healed within 40 s"
    fi
    sleep 0.2
done
echo "healed: $(($(repair_field blobs_healed) - healed0)), copied by anti-entropy: $(($(repair_field blobs_copied) - copied0))"
grep -h "healed blob" "$CLUSTER_DIR"/proxy*/blockd.log | head -3

# Each damaged blob reads and verifies on blob server 1 itself again.
while read -r id part; do
    cluster_blobcli blob1 get --id "$id" --partition "$part" >/dev/null ||
        fail "blob $id does not read back from blob server 1"
done <"$tmp/flipped"
cluster_in_sync "$MIB" || fail "replicas differ after healing"
cluster_get leader /metrics | grep -q '^blockd_proxy_repair_blobs_healed_total{.*} [1-9]' ||
    fail "the heal counter is not in /metrics"
cluster_vol_verify v 21 "$MIB"
cluster_stop_all
echo "PASS"
