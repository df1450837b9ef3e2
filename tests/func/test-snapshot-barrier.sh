#!/usr/bin/env bash
# A snapshot of an attached volume holds every write its agent acknowledged
# before the call (C12, README "Snapshots and the agent barrier"): a writer
# writes numbered 4 KiB blocks through NBD without flushing (so the agent
# acknowledges them from its journal and ships them later) and records
# each block once its write returned; the snapshot is taken while it runs,
# and a clone of the snapshot must hold every block recorded before the
# call, whatever the agent had shipped by then.  The answer says
# "barrier": true.  (A detached volume's snapshot, "barrier": false, is
# test_life's; the barrier's failure paths are test_agent_vol's.)
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires /usr/bin/python3 -c 'import nbd'
requires jq --version
tmp=$(mktmp)
py=/usr/bin/python3

# Age shipping well after the test: without the barrier the snapshot would
# miss the writes still in the agent's journal.
cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 1 --set agent.flush_age_ms=60000
cluster_start
cluster_wait_ready 30
ctl() { cluster_ctl "$@"; }
uri() { cluster_uri "$1"; }

ctl volume create v 64M >/dev/null
ctl volume attach v agent1 >/dev/null || fail "volume attach"

# Writer: block i holds "blk i" repeated; after each write returns, "i" is
# appended to the progress file.  It stops at the stop file (or 8192 blocks).
"$py" - "$(uri v)" "$tmp/progress" "$tmp/stop" <<'PY' &
import nbd, os, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
prog = open(sys.argv[2], "w", buffering=1)
for i in range(8192):
    if os.path.exists(sys.argv[3]):
        break
    h.pwrite(((b"blk %08d " % i) * 400)[:4096], i * 4096)
    prog.write("%d\n" % i)
h.flush(); h.shutdown()
PY
writer=$!
cleanup_fn kill_pid "$writer"
wait_for 20 '[ "$(wc -l <"$tmp/progress")" -ge 200 ]'
# Every block numbered below the count of complete lines was acknowledged
# before the call below started.
acked=$(grep -c . "$tmp/progress" || true)
ctl --json snapshot create v s1 >"$tmp/snap.json" || fail "snapshot create"
touch "$tmp/stop"
wait "$writer" || fail "the writer failed"
jq -e '.barrier == true and .consistency == "barrier"' "$tmp/snap.json" >/dev/null ||
    fail "the snapshot was not taken after a barrier: $(cat "$tmp/snap.json")"
echo "ok: snapshot s1 after the agent's barrier ($acked blocks acknowledged before the call)"

ctl volume clone v s1 c1 >/dev/null || fail "clone"
ctl volume attach c1 agent1 --read-only >/dev/null || fail "attach c1"
check() {
    "$py" - "$(uri c1)" "$1" <<'PY'
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
n = int(sys.argv[2])
for i in range(n):
    want = ((b"blk %08d " % i) * 400)[:4096]
    if h.pread(4096, i * 4096) != want:
        sys.exit("block %d, acknowledged before the snapshot, is not in it" % i)
h.shutdown()
PY
}
wait_for 10 'check 0' || fail "the clone is not served"
check "$acked" || fail "the snapshot misses acknowledged writes"
echo "ok: the snapshot holds every write acknowledged before the call"

