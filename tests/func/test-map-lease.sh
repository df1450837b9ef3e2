#!/usr/bin/env bash
# Reads in two hops (DESIGN §4, README "Reads in two hops"): the agent reads
# blobs straight from the blob servers under a map lease a proxy gave it,
# and falls back to the proxy whenever the map cannot serve.  Defends C7
# (a write acknowledged after a map was cached is what the next read
# returns: the ack invalidates the map before the dirty copy goes), C9
# (a zeroed range never reads its old bytes from a stale map), C13 (GC
# waits out the leases: old blobs are collected while reads go on, and no
# read fails) and C14 (every byte compared with what was written).
#
#   1. 16 MiB written and flushed; 300 random 4 KiB reads and 20 of 1 MiB
#      are correct, most served directly (blockd_agent_direct_reads_total,
#      map cache hits);
#   2. read (the map is cached), overwrite or zero, flush, read again: the
#      new bytes, 60 times;
#   3. a blob server killed: reads stay correct (another replica, or the
#      proxy);
#   4. GC: the whole range overwritten while a reader runs; once the old
#      blobs' grace has passed they are gone from every server, and the
#      reader saw no error and no wrong byte.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires /usr/bin/python3 -c 'import nbd'

tmp=$(mktmp)
cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 1 --set proxy.gc_grace_ms=5000 \
    --set proxy.read_timeout_ms=1500 --set proxy.map_lease_ms=2000
cluster_start
cluster_wait_ready 30
cluster_create_volume vol0 64M
uri=$(cluster_uri vol0)
img=$tmp/image
truncate -s 64M "$img"

# metric NAME_AND_LABEL_REGEX: the sum of the agent's samples that match.
metric() { cluster_metric agent1 "$1"; }

# io.py URI IMAGE CMD ARGS: one NBD client; the local image is the truth.
cat >"$tmp/io.py" <<'PY'
import nbd, random, sys, time
uri, path, cmd = sys.argv[1], sys.argv[2], sys.argv[3]
rnd = random.Random(int(sys.argv[4]))
h = nbd.NBD(); h.connect_uri(uri)
f = open(path, "r+b")
def want(off, ln):
    f.flush(); f.seek(off); return f.read(ln)
def check(off, ln, what):
    got = h.pread(ln, off)
    if got != want(off, ln):
        sys.exit("%s: wrong bytes at %d+%d" % (what, off, ln))
def write(off, data):
    h.pwrite(data, off); f.seek(off); f.write(data); f.flush()
if cmd == "fill":            # 16 MiB in 1 MiB writes, then flush
    for i in range(16):
        write(i << 20, rnd.randbytes(1 << 20))
    h.flush()
elif cmd == "reads":         # N random 4 KiB reads, M of 1 MiB, in the first 16 MiB
    n, m = int(sys.argv[5]), int(sys.argv[6])
    for _ in range(n):
        check(rnd.randrange(0, 4096) * 4096, 4096, "4k read")
    for _ in range(m):
        check(rnd.randrange(0, 16) << 20, 1 << 20, "1M read")
elif cmd == "rwr":           # read (caches the map), overwrite or zero, flush, read
    for i in range(int(sys.argv[5])):
        blk = rnd.randrange(0, 4096) * 4096
        ln = 4096 * rnd.randrange(1, 9)
        check(blk, ln, "first read")
        if i % 3 == 2:
            h.zero(ln, blk); f.seek(blk); f.write(bytes(ln)); f.flush()
        else:
            write(blk, rnd.randbytes(ln))
        h.flush()
        check(blk, ln, "read after write #%d" % i)
elif cmd == "reader":        # read until the file STOP exists; count reads
    import os
    stop, old = sys.argv[5], open(sys.argv[6], "rb").read()
    fd = os.open(path, os.O_RDONLY)
    k = 0
    while not os.path.exists(stop):
        off = rnd.randrange(0, 4096) * 4096
        got = h.pread(4096, off)
        # The writer overwrites as we read: the old bytes or the new are
        # right.  It writes the volume before the image: give the image
        # time to catch up before calling the bytes wrong.
        ok = got == old[off:off + 4096]
        for _ in range(40):
            if ok or got == os.pread(fd, 4096, off):
                ok = True
                break
            time.sleep(0.05)
        if not ok:
            sys.exit("reader: wrong bytes at %d" % off)
        k += 1
    print("reader: %d reads" % k)
h.shutdown()
PY
io() { /usr/bin/python3 "$tmp/io.py" "$uri" "$img" "$@"; }

# 1. Direct reads.
io fill 1
io reads 2 300 20
direct=$(metric 'blockd_agent_direct_reads_total')
hits=$(metric 'blockd_agent_map_lookups_total\{[^}]*result="hit"')
misses=$(metric 'blockd_agent_map_lookups_total\{[^}]*result="miss"')
fallbacks=$(metric 'blockd_agent_read_fallbacks_total')
echo "after 320 reads: $direct direct, map hits $hits, misses $misses, fallbacks $fallbacks"
[ "$direct" -ge 250 ] || fail "only $direct of 320 reads went direct"
[ "$hits" -ge 200 ] || fail "only $hits map cache hits"
[ "$(metric 'blockd_agent_map_cache_windows')" -ge 1 ] || fail "no map cached"
cluster_get proxy1 /metrics >/dev/null
leases=0
for p in proxy1 proxy2 proxy3; do
    leases=$((leases + $(cluster_get "$p" /metrics |
        awk '/^blockd_proxy_map_leases_total/ {s += $NF} END {print s + 0}')))
done
[ "$leases" -ge 1 ] || fail "no proxy counted a lease"

# 2. A write after a cached read: the next read has the new bytes.
io rwr 3 60
echo "read-write-read: 60 rounds correct"

# 3. One blob server down: reads stay correct.
cluster_kill blob1
io reads 4 200 4
echo "blob1 killed: 204 reads correct ($(metric 'blockd_agent_read_fallbacks_total') fallbacks so far)"
cluster_start blob1
cluster_wait_ready 30

# 4. GC under leases: overwrite everything while a reader runs.
old=$tmp/old-blobs
: >"$old"
while read -r part _ m1 _; do
    cluster_blob_ids "$(cluster_node_name "$m1")" "$part" >>"$old"
done < <(cluster_partitions)
[ -s "$old" ] || fail "no blobs listed before the overwrite"
echo "$(wc -l <"$old") blobs before the overwrite"
rm -f "$tmp/stop"
cp "$img" "$tmp/old-image"
/usr/bin/python3 "$tmp/io.py" "$uri" "$img" reader 5 "$tmp/stop" "$tmp/old-image" \
    >"$tmp/reader.out" 2>&1 &
reader=$!
cleanup_fn "touch $tmp/stop; kill $reader 2>/dev/null"
io fill 6
# Grace 5 s after the leader saw them die; leases 2 s: both well past.
gone() {
    local part m1 left=0
    while read -r part _ m1 _; do
        left=$((left + $(cluster_blob_ids "$(cluster_node_name "$m1")" "$part" |
            grep -cxFf "$old" || true)))
    done < <(cluster_partitions)
    [ "$left" = 0 ]
}
wait_for 40 gone
sleep 3 # the reader goes on past the deletions
touch "$tmp/stop"
wait "$reader" || fail "the reader failed during GC: $(cat "$tmp/reader.out")"
cat "$tmp/reader.out"
io reads 7 200 8
echo "GC: every old blob collected; reads correct throughout; $(metric 'blockd_agent_direct_reads_total') direct reads, fallbacks: $(cluster_get agent1 /metrics | grep '^blockd_agent_read_fallbacks_total' | tr '\n' ' ')"
errs=$(metric 'blockd_nbd_request_errors_total')
[ "$errs" = 0 ] || fail "$errs NBD requests failed"
cluster_stop_all
echo "map leases: direct reads correct through writes, a blob server kill and GC"
