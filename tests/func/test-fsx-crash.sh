#!/usr/bin/env bash
# The crash-window checker (CONTRACT.md row 3, C4/C5): blockd-fsx --log
# during a run, SIGKILL the server, restart it on the same disk, then
# blockd-fsx --verify-log.
#
#  1. nbdkit file (every acked write is in the page cache, flush is a real
#     fdatasync): after each kill both --require flushed (C5) and
#     --require acked (C4) pass.  Three kill/restart cycles, each on its own
#     range of the disk.
#  2. nbdkit file behind the cache filter in writeback mode, which keeps
#     unflushed writes in memory: a kill loses acked, unflushed writes.
#     --require flushed passes (C5 allows it) and --require acked fails (C4
#     would not): the checker tells the two promises apart.
#  3. A hand-written log plus planted blocks trigger every verify-log
#     diagnosis deterministically, and the in-flight write window is exact.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbdkit.sh"
set -e
fsx_requires

tmp=$(mktmp)
seed=$(test_seed)
blocks=16384                      # 64 MiB
truncate -s $((blocks * 4096)) "$tmp/disk.img"

# fsx_until_killed SERVER LOG ARGS...: run fsx in the background with --log,
# SIGKILL the server once the log has grown, and require exit 3.
fsx_until_killed() {
    local srv=$1 log=$2
    shift 2
    local urivar=${srv}_uri
    "$BLOCKD_FSX" --uri "${!urivar}" --log "$log" --duration 60 --out-dir "$tmp" "$@" \
        >"$log.out" 2>&1 &
    local fsx=$!
    cleanup_fn kill_pid $fsx
    wait_for 20 "[ \$(wc -l <'$log') -gt $((2000 + RANDOM % 3000)) ]"
    nbdkit_kill "$srv"
    local rc=0
    wait_for 20 "! kill -0 $fsx"
    wait $fsx || rc=$?
    [ $rc -eq 3 ] || fail "fsx exit $rc after the server was killed, expected 3: $(tail -5 "$log.out")"
    grep -q "I/O ERROR" "$log.out" || fail "fsx did not report the lost connection"
}

# verify LOG REQUIRE URI: must pass.
verify() {
    out=$("$BLOCKD_FSX" --uri "$3" --verify-log "$1" --require "$2" 2>&1) ||
        fail "verify-log --require $2 failed: $out"
    echo "ok: $out"
}

# 1. Kill nbdkit file three times.
for cycle in 0 1 2; do
    nbdkit_start file "$tmp/file" file "$tmp/disk.img"
    fsx_until_killed file "$tmp/c$cycle.log" --seed $((seed + cycle)) --conns 2 \
        --range $((cycle * 4096)):4096
    nbdkit_start file "$tmp/file" file "$tmp/disk.img"
    verify "$tmp/c$cycle.log" flushed "$file_uri"
    verify "$tmp/c$cycle.log" acked "$file_uri"
    nbdkit_stop file
done

# 2. A write-back server loses unflushed writes on a kill.  Run one: a
# normal mix ending in a flush, so all of it is durable.  Run two, on another
# range: writes and reads only, nothing flushed.  Then kill.  Run one must
# pass both checks (flushed data survives); run two passes --require
# flushed (C5 allows losing unflushed writes) and fails --require acked
# (C4 does not): the checker tells the two promises apart.  Block status,
# trim and zero are off: blockd-fsx found that the cache filter (nbdkit
# 1.32) answers block status from the file, calling blocks that only the
# cache holds holes (bstatus-zero), and keeps cached data readable after a
# trim (plain NBD allows that, see --loose-trim); neither is tested here.
nbdkit_start wb "$tmp/wb" --filter=cache file "$tmp/disk.img" cache=writeback
common=(--uri "$wb_uri" --out-dir "$tmp" --ops 1500 --mix bstatus=0,trim=0,zero=0)
"$BLOCKD_FSX" "${common[@]}" --seed "$seed" --range 12288:2048 --log "$tmp/wb1.log" \
    --final-flush >/dev/null || fail "write-back run one failed"
"$BLOCKD_FSX" "${common[@]}" --seed $((seed + 1)) --range 14336:2048 --log "$tmp/wb2.log" \
    --mix flush=0,fua=0,multiconn=0,reconnect=0 >/dev/null || fail "write-back run two failed"
nbdkit_kill wb
nbdkit_start file "$tmp/file" file "$tmp/disk.img"
verify "$tmp/wb1.log" flushed "$file_uri"
verify "$tmp/wb1.log" acked "$file_uri"
verify "$tmp/wb2.log" flushed "$file_uri"
grep -q " at_older_allowed=0 " <<<"$out" && fail "write-back kill lost nothing: $out"
set +e
out=$("$BLOCKD_FSX" --uri "$file_uri" --verify-log "$tmp/wb2.log" --require acked 2>&1); rc=$?
set -e
[ $rc -eq 1 ] && grep -Eq "verify-log: FAIL block=[0-9]+ offset=[0-9]+: lost-write " <<<"$out" ||
    fail "write-back kill: --require acked should fail with lost-write: exit $rc: $out"
echo "ok: write-back kill loses acked unflushed writes: C5 holds, C4 does not"
nbdkit_stop file

# 3. A hand-written log over 8 blocks, and the image it allows:
#    blocks 0-3 durable at seq 2; block 4 durable trim; block 5 durable zero;
#    block 6 durable seq 1, acked unflushed seq 7; block 7 durable seq 1,
#    seq 8 in flight.
cat >"$tmp/hand.log" <<LOG
H blockd-fsx-log 1 seed=$seed vol=1 writer=1 gen=1 size=32768 init=zero trim=strict range=0:8
I 1 W 0 8
A 1
I 2 W 0 4
A 2
FI 3
FA 3
I 4 T 4 1
A 4
I 5 Z 5 1
A 5
FI 6
FA 6
I 7 W 6 1
A 7
I 8 W 7 1
LOG
truncate -s 32768 "$tmp/hand.img"
nbdkit_start hand "$tmp/hand" file "$tmp/hand.img"
poke() { "$BLOCKD_FSX" --uri "$hand_uri" --from-log "$tmp/hand.log" "$@" >/dev/null; }
poke --poke 0 --poke-count 4 --poke-seq 2
poke --poke 6 --poke-seq 7
poke --poke 7 --poke-seq 1
cp "$tmp/hand.img" "$tmp/hand.pristine"
verify "$tmp/hand.log" flushed "$hand_uri"
verify "$tmp/hand.log" acked "$hand_uri"

# expect REQUIRE DIAG DESCRIPTION: verify-log fails with DIAG; then restore.
expect() {
    local out rc=0
    out=$("$BLOCKD_FSX" --uri "$hand_uri" --verify-log "$tmp/hand.log" --require "$1" 2>&1) || rc=$?
    if [ "$2" = pass ]; then
        [ $rc -eq 0 ] || fail "$3: expected a pass: $out"
    else
        [ $rc -eq 1 ] && grep -q "verify-log: FAIL block=[0-9]* offset=[0-9]*: $2 (" <<<"$out" ||
            fail "$3: expected '$2', exit $rc: $out"
        grep -q "failed=1 " <<<"$out" || fail "$3: expected exactly one failed block: $out"
    fi
    echo "ok: $3: ${2}"
    cp "$tmp/hand.pristine" "$tmp/hand.img"
}
blk() { dd of="$tmp/hand.img" bs=4096 seek="$1" count=1 conv=notrunc status=none "${@:2}"; }

poke --poke 6 --poke-seq 1;              expect flushed pass "acked unflushed write lost (C5 allows)"
poke --poke 6 --poke-seq 1;              expect acked stale "acked unflushed write lost (C4 forbids)"
poke --poke 7 --poke-seq 8;              expect flushed pass "in-flight write landed"
poke --poke 0 --poke-seq 1;              expect flushed stale "older than the last flush"
poke --poke 4 --poke-seq 1;              expect flushed resurrected "data back after a durable trim"
poke --poke 5 --poke-seq 1;              expect flushed resurrected "data back after a durable write_zeroes"
blk 7 if=/dev/zero;                      expect flushed lost-write "flushed block reads zeros"
dd if="$tmp/hand.pristine" bs=4096 skip=2 count=1 status=none | blk 1
                                         expect flushed misdirected "block 2's data in block 1"
dd if=/dev/zero bs=2048 count=1 status=none |
    dd of="$tmp/hand.img" bs=2048 seek=5 conv=notrunc status=none
                                         expect flushed torn "second half of block 2 zeroed"
blk 3 if=/dev/urandom;                   expect flushed garbage "random bytes"
poke --poke 0 --poke-seq 2 --vol-id 99;  expect flushed other-volume "another volume's block"
poke --poke 0 --poke-seq 2 --seed 77;    expect flushed other-run "another run's block"
poke --poke 0 --poke-seq 2 --writer-id 2; expect flushed foreign-writer "another writer"
poke --poke 0 --poke-seq 2 --gen 0;      expect flushed foreign-writer "a fenced generation"
poke --poke 0 --poke-seq 9;              expect flushed unissued "a seq never issued"
echo "all crash-window cases passed"
