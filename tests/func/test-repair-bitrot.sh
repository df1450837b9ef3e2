#!/usr/bin/env bash
# test-repair-bitrot.sh: bytes flipped inside blob data on one server's
# disk are never served (reads fail over), and the leader heals the bad
# copies from the others via BLOB_REPORT (defends C14, C3; CONTRACT row 8).
# (Anti-entropy runs a minute apart, but a server that comes back gets its
# partitions synced at once, which may copy a bad blob it no longer lists
# before its report arrives: both paths put the same bytes back, so the
# test counts heals and copies together, and requires at least one heal.)
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster-lib.sh"
set -e
requires curl --version
requires python3 --version

MIB=32
FLIPS=6
seed=${TEST_SEED:-$RANDOM}
echo "seed $seed"
tmp=$(mktmp)
cluster_setup "$tmp" 3 '"repair_interval_ms": 60000' '"scrub_bytes_per_sec": "256M"'
cluster_start
vol_create v 1G
vol_write v 21 "$MIB"
wait_for 20 every_partition_in_sync "$MIB"
healed0=$(repair_field blobs_healed)
copied0=$(repair_field blobs_copied)

# Flip one byte inside the data of FLIPS distinct records of blob server 1
# (never a header: the record must stay a known, bad blob).
blob_stop 1
python3 - "$tmp/b1" "$seed" "$FLIPS" <<'PY' >"$tmp/flipped"
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
        blob_id, = struct.unpack_from("<Q", data, off + 16)
        stored_len, = struct.unpack_from("<I", data, off + 32)
        start = off + 64 + 4 * ((stored_len + 4095) // 4096)
        if rtype == 1 and stored_len and start + stored_len <= len(data):
            recs.append((path, blob_id, start, stored_len))
        off = (start + stored_len + 7) // 8 * 8
for path, blob_id, start, n in rng.sample(recs, min(flips, len(recs))):
    pos = start + rng.randrange(n)
    with open(path, "r+b") as f:
        f.seek(pos)
        b = f.read(1)[0]
        f.seek(pos)
        f.write(bytes([b ^ (1 << rng.randrange(8))]))
    print(blob_id)
PY
[ "$(wc -l <"$tmp/flipped")" -eq "$FLIPS" ] || fail "could not damage $FLIPS records"
echo "damaged blobs: $(tr '\n' ' ' <"$tmp/flipped")"
blob_start 1

# Reads never return the damaged bytes: they fail over to good replicas.
vol_verify v 21 "$MIB"

# The damaged copies are found (reads, scrub), reported, and healed.
no_bad_left() {
    local bad
    bad=$(blob_cli 1 report | sed -n 's/^bad_blobs=//p')
    local healed=$(($(repair_field blobs_healed) - healed0)) copied=$(($(repair_field blobs_copied) - copied0))
    [ "$bad" = 0 ] && [ "$healed" -ge 1 ] && [ $((healed + copied)) -ge "$FLIPS" ]
}
wait_for 40 no_bad_left
echo "healed: $(($(repair_field blobs_healed) - healed0)), copied by anti-entropy: $(($(repair_field blobs_copied) - copied0))"
grep -h "healed blob" "$tmp"/proxy*.log | head -3

# Each damaged blob reads and verifies on blob server 1 itself again.
for id in $(cat "$tmp/flipped"); do
    ok=0
    for p in $(part_ids); do
        if blob_cli 1 get --id "$id" --partition "$p" >/dev/null 2>&1; then ok=1; break; fi
    done
    [ $ok = 1 ] || fail "blob $id does not read back from blob server 1"
done
every_partition_in_sync "$MIB" || fail "replicas differ after healing"
curl -sf "http://$(leader_admin)/metrics" | grep -q '^blockd_proxy_repair_blobs_healed_total{.*} [1-9]' ||
    fail "the heal counter is not in /metrics"
vol_verify v 21 "$MIB"
cluster_stop
echo "PASS"
