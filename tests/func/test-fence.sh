#!/usr/bin/env bash
# C10 (CONTRACT row 4, pause): a stale agent is fenced.  Agent 1 writes and
# flushes, then writes more that stays in its cache, and is paused
# (SIGSTOP).  Agent 2 is refused the volume (it is attached to agent 1);
# attaching it to agent 2 is refused while agent 1 has it, until the
# operator forces it (`blockd ctl volume attach vol0 agent2 --force`),
# which fences agent 1; agent 2 attaches (a new generation), overwrites
# everything and flushes.  Agent 1 resumes: its stale cached writes must be
# refused (fenced at the Raft commit), never reach the volume, and its
# client must get errors; agent 2's data must stand.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires /usr/bin/python3 -c 'import nbd'
tmp=$(mktmp)

cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 2 --set agent.flush_age_ms=600000
cluster_start
cluster_wait_ready 30
cluster_create_volume vol0 64M
uri1="nbd://${CLUSTER_NBD[agent1]}/vol0"
uri2="nbd://${CLUSTER_NBD[agent2]}/vol0"
py=/usr/bin/python3

# Agent 1: 'A' flushed on blocks 0-99, then 'a' unflushed on 100-199; it
# keeps the connection open and reports each step on stdout.
"$py" - "$uri1" >"$tmp/a1.out" 2>&1 <<'PY' &
import nbd, sys, time
h = nbd.NBD(); h.connect_uri(sys.argv[1])
h.pwrite(b"A" * 4096 * 100, 0); h.flush()
for i in range(100):  # small writes stay in the cache (large ones skip it)
    h.pwrite(b"a" * 4096, 4096 * (100 + i))
print("written", flush=True)
time.sleep(3)  # paused here by the test, resumed later
errors = 0
for i in range(20):
    try:
        h.pwrite(b"x" * 4096, 4096 * (300 + i)); h.flush()
    except nbd.Error as e:
        errors += 1
print("after resume: %d of 20 writes+flushes failed" % errors, flush=True)
PY
a1=$!
cleanup_fn kill_pid $a1
wait_for 20 "grep -q written $tmp/a1.out"
cluster_pause agent1

# Agent 2 is refused: vol0 is attached to agent 1.
if "$py" -c 'import nbd,sys; h=nbd.NBD(); h.connect_uri(sys.argv[1])' "$uri2" 2>"$tmp/refused"; then
    fail "agent 2 served a volume attached to agent 1"
fi
echo "agent 2 refused vol0 (attached to agent 1): $(tail -1 "$tmp/refused")"

if cluster_ctl volume attach vol0 agent2 2>"$tmp/busy"; then
    fail "vol0 was attached to agent 2 while agent 1 has it"
fi
grep -q "HTTP 409" "$tmp/busy" || fail "attach elsewhere: $(cat "$tmp/busy")"
cluster_ctl volume attach vol0 agent2 --force | grep -q "^vol0 .* agent2" ||
    fail "the forced attach to agent 2"

"$py" - "$uri2" <<'PY' || fail "agent 2 could not take over"
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
h.pwrite(b"B" * 4096 * 200, 0); h.flush()
PY
echo "agent 2 attached and wrote B over blocks 0-199"

cluster_resume agent1
wait $a1 || true
grep -q "after resume" "$tmp/a1.out" || fail "agent 1's client did not finish: $(cat "$tmp/a1.out")"
echo "agent 1: $(grep 'after resume' "$tmp/a1.out")"
grep -q "after resume: 20 of 20" "$tmp/a1.out" || fail "the fenced agent's writes did not all fail"
grep -q "FENCED" "$CLUSTER_DIR/agent1/blockd.log" || fail "agent 1 did not report being fenced"

# Agent 1's stale blocks never reached the volume: everything reads B.
sleep 2
"$py" - "$uri2" <<'PY' || fail "the volume holds the stale agent's data"
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
data = h.pread(4096 * 200, 0)
bad = [i for i in range(200) if data[i * 4096:(i + 1) * 4096] != b"B" * 4096]
if bad:
    print("blocks not B:", bad[:10], "first holds", data[bad[0] * 4096:bad[0] * 4096 + 1])
    sys.exit(1)
z = h.pread(4096 * 20, 4096 * 300)
if z != bytes(4096 * 20):
    print("the fenced agent's later writes are visible"); sys.exit(1)
print("all 200 blocks hold agent 2's data; nothing of agent 1 after the fence")
PY
