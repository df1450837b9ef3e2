#!/usr/bin/env bash
# Large writes around the journal (agent_io.c "large writes around the
# journal", README "Large writes"): an aligned write of at least
# direct_write_bytes is shipped as it arrives and answered once the cluster
# holds it; a JOURNAL_CLEAN tombstone keeps replay from bringing back an
# older journaled version of its blocks.  Defends C4 (an acknowledged write
# survives an agent crash), C7 (read your writes) and C9 (no older version
# comes back).
#
#   1. 16 MiB in 1 MiB writes go direct (blockd_agent_direct_writes_total)
#      and leave the journal empty of data; every byte reads back;
#   2. the resurrection case: small journaled writes, flushed (shipped,
#      still in the journal's open segment), then a direct 1 MiB write
#      over them; the agent is SIGKILLed and restarted (replay): the
#      direct write's bytes, not the journal's older ones, are read;
#   3. a large write over a block dirty in the journal goes through the
#      journal (nothing older may be left behind it) and reads back, also
#      after a kill;
#   4. blockd-fsx with ops up to 1 MiB (most large ones direct, small ones
#      journaled, overlapping) and the agent SIGKILLed mid-run, twice:
#      verify-log --require acked (C4);
#   5. the leader proxy killed under that workload: every read checked
#      (direct writes of unknown outcome are journaled and re-shipped);
#   6. a direct write sent while every proxy is frozen (the links stay
#      up) is journaled when its ship times out, read from the journal,
#      shipped later (blockd_agent_direct_write_fallbacks_total).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbdkit.sh"
. "$(dirname "$0")/cluster.sh"
set -e
fsx_requires
requires /usr/bin/python3 -c 'import nbd'
tmp=$(mktmp)
seed=$(test_seed)

cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 1 --set agent.io_timeout_ms=6000 \
    --set agent.flush_age_ms=600000 --set agent.cache_bytes='"64M"'
cluster_start
cluster_wait_ready 30
cluster_create_volume vol0 64M
uri=$(cluster_uri vol0)
img=$tmp/image
truncate -s 64M "$img"
py=/usr/bin/python3

# metric NAME_REGEX: the sum of the agent's samples that match.
metric() { cluster_metric agent1 "$1"; }

# io.py URI IMAGE CMD ...: one NBD client; the local image is the truth.
cat >"$tmp/io.py" <<'PY'
import nbd, random, sys
uri, path, cmd = sys.argv[1], sys.argv[2], sys.argv[3]
rnd = random.Random(int(sys.argv[4]))
h = nbd.NBD(); h.connect_uri(uri)
f = open(path, "r+b")
def write(off, data):
    h.pwrite(data, off); f.seek(off); f.write(data); f.flush()
def check(off, ln, what):
    for o in range(off, off + ln, 1 << 20):  # requests within the agent's max_io
        n = min(1 << 20, off + ln - o)
        f.seek(o); want = f.read(n); got = h.pread(n, o)
        if got != want:
            bad = next(i for i in range(n) if got[i] != want[i])
            sys.exit("%s: wrong bytes at %d" % (what, o + bad))
M = 1 << 20
if cmd == "fill":            # 16 MiB in 1 MiB writes, flushed
    for i in range(16):
        write(i * M, rnd.randbytes(M))
    h.flush()
elif cmd == "resurrect":     # small-flush, then 1 MiB over it; hold the connection
    import time                # (an idle clean volume detaches and drops its journal)
    off = int(sys.argv[5])
    for b in rnd.sample(range(256), 8):
        write(off + b * 4096, rnd.randbytes(4096))
    h.flush()
    write(off, rnd.randbytes(M))
    check(off, M, "direct write over journaled blocks")
    print("ready", flush=True)
    time.sleep(60)
elif cmd == "turned-back":   # 1 MiB at OFF while the proxies (PIDS) are frozen
    import os, signal, time
    off, pids = int(sys.argv[5]), [int(p) for p in sys.argv[6].split(",")]
    h.pwrite(rnd.randbytes(4096), off + M)   # the volume is attached and active
    try:
        for p in pids: os.kill(p, signal.SIGSTOP)
        t0 = time.monotonic()
        write(off, rnd.randbytes(M))         # sent direct, never answered: journaled
        dt = time.monotonic() - t0
        check(off, M, "a turned-back direct write, from the journal")
    finally:
        for p in pids: os.kill(p, signal.SIGCONT)
    h.flush()
    check(off, M, "a turned-back direct write, after the flush")
    print("%.1f" % dt)
elif cmd == "small":         # one 4 KiB write at OFF, not flushed
    write(int(sys.argv[5]), rnd.randbytes(4096))
elif cmd == "big":           # one 1 MiB write at OFF, not flushed
    write(int(sys.argv[5]), rnd.randbytes(M))
elif cmd == "check":         # LEN bytes at OFF
    check(int(sys.argv[5]), int(sys.argv[6]), "check")
PY
io() { "$py" "$tmp/io.py" "$uri" "$img" "$@"; }
M=$((1 << 20))

# 1. Direct writes.
d0=$(metric blockd_agent_direct_writes_total)
io fill $seed || fail "fill"
d1=$(metric blockd_agent_direct_writes_total)
[ $((d1 - d0)) -ge 16 ] || fail "1 MiB writes did not go direct: $d0 -> $d1"
io check 0 0 $((16 * M)) || fail "16 MiB written directly do not read back"
echo "1: 16 x 1 MiB went direct ($d0 -> $d1 direct writes); read back"

# 2. The resurrection case.
j0=$(metric blockd_agent_direct_writes_total)
io resurrect $((seed + 1)) $((20 * M)) >"$tmp/res.out" 2>&1 &
res=$!
cleanup_fn kill_pid $res
wait_for 30 "grep -q ready '$tmp/res.out' || ! kill -0 $res"
grep -q ready "$tmp/res.out" || fail "resurrect: $(cat "$tmp/res.out")"
j1=$(metric blockd_agent_direct_writes_total)
[ $((j1 - j0)) -eq 1 ] || fail "the 1 MiB write over clean blocks did not go direct: $j0 -> $j1"
cluster_kill agent1
cluster_start agent1
cluster_wait_ready 30
kill_pid $res
grep -Eq "replayed journal .* [1-9][0-9]* entries" "$CLUSTER_DIR/agent1/blockd.log" ||
    fail "the agent replayed no journal entries (the case needs the flushed ones)"
io check 0 $((20 * M)) $M ||
    fail "after the agent's restart an older journaled version came back over a direct write"
echo "2: a direct write over flushed journal entries survives the agent's kill and replay"

# 3. A large write over a dirty block is journaled.
io small $((seed + 3)) $((30 * M + 4096 * 7)) || fail "small dirty write"
k0=$(metric blockd_agent_direct_writes_total)
io big $((seed + 4)) $((30 * M)) || fail "big write over a dirty block"
k1=$(metric blockd_agent_direct_writes_total)
[ "$k1" -eq "$k0" ] || fail "a write over a dirty block went direct: $k0 -> $k1"
dirty=$(cluster_field agent1 /v1/status '.volumes' | jq -r '.dirty_bytes // 0')
[ "$dirty" -ge $M ] || fail "the large write over a dirty block is not in the journal ($dirty dirty bytes)"
io check 0 $((30 * M)) $M || fail "large write over a dirty block"
cluster_kill agent1
cluster_start agent1
cluster_wait_ready 30
io check 0 $((30 * M)) $M || fail "large write over a dirty block, after the agent's kill"
echo "3: a large write over a dirty block went through the journal ($dirty dirty bytes); kept across a kill"

# 4. fsx with ops up to 1 MiB, agent killed mid-run.
for k in 1 2; do
    s=$((seed + 10 + k))
    d0=$(metric blockd_agent_direct_writes_total)
    "$BLOCKD_FSX" --uri "$uri" --seed "$s" --log "$tmp/fsx-$k.log" --op-timeout 30 \
        --duration 60 --init any --max-blocks 256 --range $((40 * 256)):$((16 * 256)) \
        --mix flush=1,fua=1,multiconn=0,reconnect=0 --out-dir "$tmp" >"$tmp/fsx-$k.out" 2>&1 &
    fsx=$!
    cleanup_fn kill_pid $fsx
    wait_for 120 "[ \$(wc -l <'$tmp/fsx-$k.log') -gt $((400 + RANDOM % 600)) ] || ! kill -0 $fsx"
    d1=$(metric blockd_agent_direct_writes_total)
    cluster_kill agent1
    rc=0
    wait $fsx || rc=$?
    [ $rc -eq 3 ] || [ $rc -eq 0 ] || { tail -20 "$tmp/fsx-$k.out"; fail "fsx failed before the kill"; }
    [ $((d1 - d0)) -gt 0 ] || fail "fsx round $k: no write went direct"
    cluster_start agent1
    cluster_wait_ready 30
    "$BLOCKD_FSX" --uri "$uri" --verify-log "$tmp/fsx-$k.log" --require acked --op-timeout 60 \
        >"$tmp/verify-$k.out" 2>&1 ||
        { tail -30 "$tmp/verify-$k.out"; fail "acknowledged writes lost across agent kill $k (seed $s)"; }
    echo "4.$k: $((d1 - d0)) direct writes before the kill; $(tail -1 "$tmp/verify-$k.out")"
done

# 5. The leader proxy killed under large writes.
"$BLOCKD_FSX" --uri "$uri" --seed $((seed + 20)) --op-timeout 60 --duration 20 --init any \
    --max-blocks 256 --range $((40 * 256)):$((16 * 256)) --mix multiconn=0,reconnect=0 \
    --out-dir "$tmp" >"$tmp/fsx-5.out" 2>&1 &
fsx=$!
cleanup_fn kill_pid $fsx
sleep 5
leader=$(cluster_leader)
cluster_kill "$leader"
sleep 3
cluster_start "$leader"
rc=0
wait $fsx || rc=$?
[ $rc -eq 0 ] || { tail -20 "$tmp/fsx-5.out"; fail "fsx across the leader's kill: exit $rc"; }
echo "5: the leader ($leader) killed under large writes: $(tail -1 "$tmp/fsx-5.out");" \
    "$(metric blockd_agent_direct_write_fallbacks_total) direct writes journaled after all"
# 6. A direct write the cluster never answers (every proxy frozen: its
# links stay up, so it is sent) is journaled when the ship's deadline
# passes (a third of io_timeout_ms), answered from the journal, and
# shipped once the proxies are back.
f0=$(metric blockd_agent_direct_write_fallbacks_total)
pids=$(for p in proxy1 proxy2 proxy3; do echo -n "${CLUSTER_PID[$p]},"; done)
dt=$(io turned-back $((seed + 5)) $((34 * M)) "${pids%,}") || fail "turned-back direct write"
f1=$(metric blockd_agent_direct_write_fallbacks_total)
[ $((f1 - f0)) -ge 1 ] || fail "a direct write the cluster never answered was not journaled ($f0 -> $f1)"
cluster_wait_ready 30
io check 0 $((34 * M)) $M || fail "the turned-back write, read again"
echo "6: a direct write with the proxies frozen was journaled after ${dt} s and shipped after"

cluster_stop_all
