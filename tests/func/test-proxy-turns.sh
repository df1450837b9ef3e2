#!/usr/bin/env bash
# test-proxy-turns.sh: volumes of two agents take turns at the proxy
# (issue 13 item 5; src/base/turnq.h), and nothing is lost.
#   - one proxy, so both agents' writes meet there; agent1's volume "big"
#     takes 1 MiB random writes at QD8 without flushes (its agent ships on
#     pressure, up to 32 MiB in flight), agent2's volume "quiet" takes
#     stamped 4 KiB writes each followed by a FLUSH, at the same time;
#   - the proxy's counters show writes that waited their volume's turn
#     (blockd_proxy_write_turn_waits_total > 0), and the volumes' flows
#     are freed once idle;
#   - every flushed quiet block reads back from the cluster (the admin
#     data endpoint, checksum-verified) as written, and "big" reads the
#     same through its agent and from the cluster after fio's final flush
#     (fio itself verified what it wrote as it went: verify_backlog).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires fio --version
fio --enghelp 2>/dev/null | grep -qw nbd || skip "fio has no nbd engine"
requires /usr/bin/python3 -c 'import nbd'
requires jq --version
tmp=$(mktmp)
py=/usr/bin/python3

cluster_init "$tmp/c" --proxies 1 --blobs 3 --agents 2
cluster_start
cluster_wait_ready 30
cluster_create_volume big 128M --attach agent1
cluster_create_volume quiet 16M --attach agent2
big_uri="nbd://${CLUSTER_NBD[agent1]}/big"
quiet_uri="nbd://${CLUSTER_NBD[agent2]}/quiet"
wait_for 20 "nbdinfo --size '$big_uri' >/dev/null 2>&1"
wait_for 20 "nbdinfo --size '$quiet_uri' >/dev/null 2>&1"

turn_waits() {
    cluster_get proxy1 /metrics | awk '/^blockd_proxy_write_turn_waits_total/ {printf "%d", $2}'
}
[ "$(turn_waits)" = 0 ] || fail "writes waited before any write: $(turn_waits)"

# The quiet volume: block i gets a stamp of round r; every write is
# flushed before the next; it runs until told to stop, then prints the
# last stamp of each block it wrote (what the cluster must hold).
"$py" - "$quiet_uri" "$tmp/quiet.stop" >"$tmp/quiet.out" 2>&1 <<'PY' &
import nbd, os, sys, time
h = nbd.NBD(); h.connect_uri(sys.argv[1])
last, r = {}, 0
deadline = time.monotonic() + 60
while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:
    i = r % 512
    data = (b"q%08d-%08d;" % (i, r)) * 215
    data += b"\0" * (4096 - len(data))
    h.pwrite(data, i * 4096); h.flush()
    last[i] = r
    r += 1
h.shutdown()
print("writes", r)
for i, rr in sorted(last.items()):
    print(i, rr)
PY
quiet=$!
cleanup_fn kill_pid $quiet
sleep 1

fio --name=big --ioengine=nbd --uri="$big_uri" --rw=randwrite --bs=1M --iodepth=8 \
    --size=128M --time_based --runtime=8 --verify=crc32c --verify_backlog=16 \
    --end_fsync=1 --output-format=json --output="$tmp/big.json" >/dev/null 2>&1 ||
    fail "fio on big: $(cat "$tmp/big.json" 2>/dev/null | tail -5)"
touch "$tmp/quiet.stop"
wait_pid_timeout() { local n=0; while kill -0 "$1" 2>/dev/null; do sleep 0.2; n=$((n + 1)); [ $n -lt "$2" ] || return 1; done; }
wait_pid_timeout $quiet 150 || fail "the quiet writer did not stop"
wait $quiet || fail "the quiet writer failed: $(tail -5 "$tmp/quiet.out")"
writes=$(awk '/^writes/ {print $2}' "$tmp/quiet.out")
[ "${writes:-0}" -ge 20 ] || fail "the quiet volume wrote only ${writes:-0} times"
big_errs=$(sed -n '/^{/,$p' "$tmp/big.json" | jq '.jobs[0].error')
[ "$big_errs" = 0 ] || fail "fio on big reported error $big_errs"
echo "ok: big took $(sed -n '/^{/,$p' "$tmp/big.json" | jq '.jobs[0].write.bw_bytes / 1e6 | floor') MB/s, quiet $writes flushed writes"

waits=$(turn_waits)
[ "${waits:-0}" -gt 0 ] || fail "no write waited its turn while two volumes wrote"
echo "ok: $waits writes waited their volume's turn at the proxy"

# Every flushed quiet block is in the cluster as last written.
cluster_curl -o "$tmp/quiet.img" "$(cluster_url proxy1 "/v1/volumes/quiet/data?offset=0&length=2097152")" ||
    fail "reading quiet from the cluster"
"$py" - "$tmp/quiet.img" "$tmp/quiet.out" <<'PY' || fail "the quiet volume lost a flushed write"
import sys
img = open(sys.argv[1], "rb").read()
n = 0
for line in open(sys.argv[2]):
    p = line.split()
    if len(p) != 2 or p[0] == "writes":
        continue
    i, r = int(p[0]), int(p[1])
    want = (b"q%08d-%08d;" % (i, r)) * 215
    got = img[i * 4096:i * 4096 + len(want)]
    if got != want:
        sys.exit("block %d: want round %d, got %r" % (i, r, got[:20]))
    n += 1
print("ok: %d quiet blocks read back from the cluster as last flushed" % n)
PY

# "big" reads the same through its agent and from the cluster.
"$py" - "$big_uri" "$tmp/big.img" <<'PY' || fail "reading big through agent1"
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
with open(sys.argv[2], "wb") as f:
    for off in range(0, 128 << 20, 4 << 20):
        f.write(h.pread(4 << 20, off))
h.shutdown()
PY
for off in $(seq 0 $((4 << 20)) $(((128 << 20) - 1))); do
    cluster_curl -o - "$(cluster_url proxy1 "/v1/volumes/big/data?offset=$off&length=$((4 << 20))")"
done >"$tmp/big.cluster" || fail "reading big from the cluster"
cmp "$tmp/big.img" "$tmp/big.cluster" || fail "big: the agent and the cluster disagree"
echo "ok: big reads the same through its agent and from the cluster"

# Flows are freed once idle (a second without writes).
wait_for 10 "[ \"\$(cluster_get proxy1 /metrics | awk '/^blockd_proxy_write_turn_flows/ {print \$2}')\" = 0 ]"
echo "ok: the proxy freed the idle volumes' flows"
cluster_stop_all
