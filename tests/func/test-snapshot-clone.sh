#!/usr/bin/env bash
# Snapshots and clones through `blockd ctl`, on a real cluster, with the
# data read back through the agent: a snapshot keeps the volume as it was
# (C12-style point in time), a clone starts from the snapshot and then
# diverges without touching its source, deleting the snapshot and then the
# source volume (and letting GC run) leaves the clone whole (C13: a blob is
# freed only when nothing refers to it).  Also `volume detach` (the
# operator's force-detach) and the CLI's errors for unknown snapshots.
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
ctl() {
    "$BLOCKD" ctl --url "${CLUSTER_ADMIN[proxy1]}" --url "${CLUSTER_ADMIN[proxy2]}" \
        --url "${CLUSTER_ADMIN[proxy3]}" --token-file "$CLUSTER_TOKEN_FILE" "$@"
}
uri() { echo "nbd://${CLUSTER_NBD[agent1]}/$1"; }

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
io "$(uri v)" "w:0:$M:A" || fail "write A"
ctl snapshot create v s1 | grep -q "snapshot s1 of v created" || fail "snapshot create"
io "$(uri v)" "w:0:$((512 * K)):B" || fail "write B"
ctl volume clone v s1 c1 | grep -q "^c1 " || fail "clone"
io "$(uri c1)" "r:0:$M:A" || fail "the clone does not read the snapshot's data"
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
ctl snapshot rm v s1 | grep -q "deleted snapshot s1 of v" || fail "snapshot rm"
ctl --json snapshot list v | jq -e '.snapshots | length == 0' >/dev/null || fail "s1 still listed"
echo "ok: snapshots list and delete; unknown ones are one-line errors"

# The source goes: force-detach its agent (it stays attached while idle),
# delete it, and let GC free what only it referenced.
ctl volume detach v | grep -q "^v " || fail "volume detach"
ctl volume rm v | grep -q "deleted v" || fail "volume rm"
gc_done() {
    curl -sf --max-time 5 "http://${CLUSTER_ADMIN[$(cluster_leader)]}/v1/status" |
        jq -e '.index.gc_pending == 0' >/dev/null
}
wait_for 30 gc_done
io "$(uri c1)" "r:0:$((512 * K)):A" "r:$((512 * K)):$((256 * K)):C" "r:$((768 * K)):$((256 * K)):A" ||
    fail "the clone lost data after its source and snapshot were deleted"
echo "ok: the clone is whole after its snapshot and source are gone and GC ran"
# Every process stops on SIGTERM, the agent too with a fenced volume.
for n in agent1 proxy1 proxy2 proxy3 blob1 blob2 blob3; do
    cluster_stop "$n" >/dev/null || fail "$n did not stop on SIGTERM"
done
echo PASS
