#!/usr/bin/env bash
# Snapshots and clones through `blockd ctl`, on a real cluster, with the
# data read back through the agent: a snapshot keeps the volume as it was
# (C12-style point in time), a clone starts from the snapshot and then
# diverges without touching its source, the snapshot cannot be deleted
# while the clone still reads through it (409 naming the clone) until the
# clone is flattened, and deleting the snapshot and then the source volume
# (and letting GC run) leaves the clone whole (C13: a blob is freed only
# when nothing refers to it).  Also `volume attach` and `volume detach` (a
# volume is served only where it is attached; a forced detach fences the
# agent holding it) and the CLI's errors for unknown snapshots.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires /usr/bin/python3 -c 'import nbd'
requires jq --version
tmp=$(mktmp)
py=/usr/bin/python3

cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 1 --set proxy.gc_grace_ms=1500 \
    --set proxy.read_timeout_ms=1000
cluster_start
cluster_wait_ready 30
ctl() { cluster_ctl "$@"; }
uri() { cluster_uri "$1"; }

# io URI OP...: run nbd operations in one connection, then flush.
#   w:OFF:LEN:BYTE   write LEN bytes of BYTE at OFF
#   r:OFF:LEN:BYTE   read and check every byte is BYTE
io() {
    "$py" - "$@" <<'PY'
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
for op in sys.argv[2:]:
    kind, off, n, byte = op.split(":")
    off, n, b = int(off), int(n), bytes([ord(byte)])
    if kind == "w":
        h.pwrite(b * n, off)
    else:
        got = h.pread(n, off)
        if got != b * n:
            bad = next(i for i in range(n) if got[i:i+1] != b)
            sys.exit("%s: byte %d is %r, expected %r" % (sys.argv[1], off + bad, got[bad:bad+1], b))
h.flush(); h.shutdown()
PY
}
K=1024; M=$((1024 * K))

ctl volume create v 64M >/dev/null
if io "$(uri v)" "w:0:$M:A" 2>/dev/null; then fail "the agent served a volume not attached to it"; fi
ctl volume attach v agent1 | grep -q "^v .* agent1 " || fail "volume attach"
io "$(uri v)" "w:0:$M:A" || fail "write A"
ctl snapshot create v s1 | grep -q "snapshot s1 of v created" || fail "snapshot create"
io "$(uri v)" "w:0:$((512 * K)):B" || fail "write B"
ctl volume clone v s1 c1 | grep -q "^c1 " || fail "clone"
ctl volume attach c1 agent1 --read-only | grep -q "agent1 (read-only)" || fail "attach c1 read-only"
io "$(uri c1)" "r:0:$M:A" || fail "the clone does not read the snapshot's data"
if io "$(uri c1)" "w:0:4096:X" 2>"$tmp/err"; then fail "a read-only attachment took a write"; fi
ctl volume attach c1 agent1 | grep -q "^c1 .* agent1 " || fail "attach c1 read-write"
# The agent learns of the change within about a second.
wait_for 10 'io "$(uri c1)" "r:0:4096:A" "w:$((1020 * K)):4096:A"'
io "$(uri v)" "r:0:$((512 * K)):B" "r:$((512 * K)):$((512 * K)):A" || fail "the source changed"
echo "ok: the clone reads the snapshot; the source keeps its later writes"

io "$(uri c1)" "w:$((512 * K)):$((256 * K)):C" || fail "write C to the clone"
io "$(uri v)" "r:0:$((512 * K)):B" "r:$((512 * K)):$((512 * K)):A" || fail "a clone write reached its source"
echo "ok: the clone diverges without touching its source"

ctl snapshot list v | grep -q "^s1 " || fail "snapshot list: $(ctl snapshot list v)"
ctl --json snapshot list v | jq -e '.snapshots | length == 1' >/dev/null || fail "snapshot list --json"
if ctl snapshot rm v nope 2>"$tmp/err"; then fail "removing an unknown snapshot succeeded"; fi
[ "$(wc -l <"$tmp/err")" = 1 ] || fail "an error should be one line: $(cat "$tmp/err")"
if ctl volume clone v nope c2 2>/dev/null; then fail "a clone of an unknown snapshot succeeded"; fi
# A client holds v open from here on: an agent lets an idle volume go two
# seconds after its last client, and the flatten below takes longer; the
# force-detach further down needs it attached.
"$py" -c 'import nbd, sys, time; h = nbd.NBD(); h.connect_uri(sys.argv[1]); time.sleep(300)' \
    "$(uri v)" &
holder=$!
cleanup_fn kill_pid "$holder"
if ctl snapshot rm v s1 2>"$tmp/err"; then fail "deleting a snapshot a clone reads through succeeded"; fi
grep -q "409" "$tmp/err" && grep -q "c1" "$tmp/err" || fail "the refusal should be a 409 naming c1: $(cat "$tmp/err")"
CLUSTER_CTL_TIMEOUT=120 cluster_ctl volume flatten c1 --wait >/dev/null 2>&1 || fail "flatten c1"
io "$(uri c1)" "r:0:$((512 * K)):A" "r:$((512 * K)):$((256 * K)):C" "r:$((768 * K)):$((256 * K)):A" ||
    fail "the clone changed while it was flattened"
ctl snapshot rm v s1 | grep -q "deleted snapshot s1 of v" || fail "snapshot rm"
ctl --json snapshot list v | jq -e '.snapshots | length == 0' >/dev/null || fail "s1 still listed"
echo "ok: snapshots list and delete; unknown ones are one-line errors"

# The source goes: attached, it cannot be deleted; detach it with --force
# (the agent would otherwise keep it while the client above holds it:
# --force fences it at once), delete it, and let GC free what only it
# referenced.
if ctl volume rm v 2>"$tmp/err"; then fail "an attached volume was deleted"; fi
grep -q "HTTP 409" "$tmp/err" || fail "rm of an attached volume: $(cat "$tmp/err")"
if ctl volume attach v agent7 2>"$tmp/err"; then fail "attached elsewhere without --force"; fi
[ "$(wc -l <"$tmp/err")" = 1 ] && grep -q "attached to agent agent1" "$tmp/err" ||
    fail "attach elsewhere: $(cat "$tmp/err")"
ctl volume detach v --force | grep -q "^v .* - *-$" || fail "volume detach"
kill_pid "$holder"
ctl volume rm v | grep -q "deleted v" || fail "volume rm"
gc_done() { [ "$(cluster_field leader /v1/status .index.gc_pending)" = 0 ]; }
wait_for 30 gc_done
io "$(uri c1)" "r:0:$((512 * K)):A" "r:$((512 * K)):$((256 * K)):C" "r:$((768 * K)):$((256 * K)):A" ||
    fail "the clone lost data after its source and snapshot were deleted"
echo "ok: the clone is whole after its snapshot and source are gone and GC ran"
# Every process stops on SIGTERM, the agent too with a fenced volume.
cluster_stop_all
echo PASS
