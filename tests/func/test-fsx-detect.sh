#!/usr/bin/env bash
# blockd-fsx must FAIL, with the right diagnosis, against servers that
# break the contract (a checker that cannot fail is worse than none).
# Each case runs fsx against a server with one deterministic bug
# (nbdkit-buggy.sh) or against data planted by another writer, and passes
# only if fsx exits 1 naming the expected diagnosis, prints the seed and the
# op history, and writes the .good image and .ops file.  The control case
# (the same buggy server with the bug off) must pass.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbdkit.sh"
set -e
fsx_requires
requires nbdkit sh --version
requires cmp --version

tmp=$(mktmp)
seed=$(test_seed)
buggy=$SRCDIR/tests/func/nbdkit-buggy.sh
size=$((64 * 4096))
case_no=0

# start_buggy MODE AFTER: a fresh buggy server on a zeroed image; sets srv_*.
start_buggy() {
    case_no=$((case_no + 1))
    local d=$tmp/case$case_no
    mkdir -p "$d/state"
    truncate -s $size "$d/disk.img"
    BUGGY_IMG=$d/disk.img BUGGY_STATE=$d/state BUGGY_MODE=$1 BUGGY_AFTER=$2 \
        nbdkit_start srv "$d" sh "$buggy"
}

# run_fsx ARGS...: run fsx into $out/$rc, in the current case's directory.
run_fsx() {
    set +e
    out=$("$BLOCKD_FSX" --uri "$srv_uri" --out-dir "$srv_dir" --max-blocks 4 "$@" 2>&1)
    rc=$?
    set -e
}

# expect_diag NAME DIAG: the last run_fsx failed as a proper fsx failure
# with diagnosis DIAG (an extended regex, e.g. "stale|lost-write").
expect_diag() {
    local name=$1 diag=$2 s
    [ $rc -eq 1 ] || fail "$name: exit $rc, expected 1 (verification failure): $out"
    grep -Eq "FAIL seed=[0-9]+ op=[0-9]+ \(.*\) block=[0-9]+ offset=[0-9]+: ($diag) \(" <<<"$out" ||
        fail "$name: expected diagnosis '$diag' in: $out"
    s=$(sed -n 's/.*FAIL seed=\([0-9]*\) op=.*/\1/p' <<<"$out" | head -1)
    grep -q "^last [0-9]* ops, oldest first:" <<<"$out" || fail "$name: no op history"
    grep -q "replay with: --seed $s" <<<"$out" || fail "$name: no replay hint"
    [ "$(stat -c %s "$srv_dir/blockd-fsx-$s.good")" -eq "$(stat -c %s "$srv_dir/disk.img" 2>/dev/null || echo $size)" ] ||
        fail "$name: .good image missing or of the wrong size"
    [ -s "$srv_dir/blockd-fsx-$s.ops" ] || fail "$name: .ops file missing"
    echo "ok: $name: $(grep -m1 FAIL <<<"$out")"
    nbdkit_stop srv
}

# Control: the plugin without a bug passes (so the failures below are the bugs).
start_buggy none 0
run_fsx --conns 2 --ops 300 --seed "$seed"
[ $rc -eq 0 ] || fail "control run against the bug-free plugin failed: $out"
nbdkit_stop srv

# Server bugs, each with its diagnosis.
start_buggy drop-overwrite 20;  run_fsx --conns 2 --ops 400 --seed "$seed" --log "$tmp/drop.log"
expect_diag drop-overwrite stale
drop_dir=$srv_dir
start_buggy drop-new 20;        run_fsx --conns 2 --ops 400 --seed "$seed"; expect_diag drop-new lost-write
start_buggy torn-write 20;      run_fsx --conns 2 --ops 400 --seed "$seed"; expect_diag torn-write torn
start_buggy trim-noop 2;        run_fsx --conns 2 --ops 400 --seed "$seed"; expect_diag trim-noop resurrected
start_buggy misdirect-read 20;  run_fsx --conns 2 --ops 400 --seed "$seed"; expect_diag misdirect-read misdirected
start_buggy garbage-read 20;    run_fsx --conns 2 --ops 400 --seed "$seed"; expect_diag garbage-read garbage
start_buggy extents-lie 0;      run_fsx --conns 2 --ops 400 --seed "$seed"; expect_diag extents-lie bstatus-zero
# C8: write on A, flush on B, read on C must see the write.
start_buggy private-conns 0
run_fsx --conns 3 --ops 400 --seed "$seed" \
    --mix read=0,bstatus=0,flush=0,reconnect=0,trim=0,zero=0,fua=0,write=1,multiconn=1
expect_diag private-conns "stale|lost-write|resurrected"
grep -q "FAIL .*(multiconn on conn" <<<"$out" || fail "private-conns: not caught by the multiconn op"

# C7: a server whose writes reach other connections only at the next flush
# (the NBD multi-conn minimum) is not linearizable: the default check fails
# it, and --consistency flush, which models exactly that, passes it.
start_buggy lag-until-flush 0
run_fsx --conns 3 --ops 400 --seed "$seed"
expect_diag lag-until-flush "stale|lost-write|resurrected"
start_buggy lag-until-flush 0
run_fsx --conns 3 --ops 400 --seed "$seed" --consistency flush
[ $rc -eq 0 ] || fail "--consistency flush against a flush-consistent server: $out"
nbdkit_stop srv
echo "ok: lag-until-flush passes only with --consistency flush"

# Determinism: the same seed against the same bug fails at the same op and block.
start_buggy misdirect-read 20; run_fsx --conns 2 --ops 400 --seed "$seed"
first=$(grep -m1 FAIL <<<"$out")
expect_diag misdirect-read-again misdirected
start_buggy misdirect-read 20; run_fsx --conns 2 --ops 400 --seed "$seed"
[ "$(grep -m1 FAIL <<<"$out")" = "$first" ] || fail "same seed, different failure: $first vs $(grep -m1 FAIL <<<"$out")"
expect_diag misdirect-read-replay misdirected

# The .good image of the drop-overwrite run is the model: it passes the log
# check (every write acked, so the window is exactly the newest write),
# while the buggy server's image fails it as stale.
nbdkit_start good "$tmp/good" -r file "$drop_dir/blockd-fsx-$seed.good"
"$BLOCKD_FSX" --uri "$good_uri" --verify-log "$tmp/drop.log" --require acked ||
    fail ".good image does not match the log"
nbdkit_start bad "$tmp/bad" -r file "$drop_dir/disk.img"
set +e
out=$("$BLOCKD_FSX" --uri "$bad_uri" --verify-log "$tmp/drop.log" --require acked 2>&1); rc=$?
set -e
[ $rc -eq 1 ] && grep -q "verify-log: FAIL block=[0-9]* offset=[0-9]*: stale" <<<"$out" ||
    fail "verify-log on the buggy image: exit $rc: $out"
echo "ok: .good image matches the log; the buggy image does not"

# Data planted by another writer on a correct server (nbdkit memory): run a
# first fsx with another identity, then ours on the same export.
planted() {
    local name=$1 diag=$2
    shift 2
    case_no=$((case_no + 1))
    nbdkit_start srv "$tmp/case$case_no" memory $size
    "$BLOCKD_FSX" --uri "$srv_uri" --ops 300 --max-blocks 4 --out-dir "$srv_dir" "$@" >/dev/null ||
        fail "$name: the planting run failed"
    run_fsx --ops 300 --seed "$seed"
    expect_diag "$name" "$diag"
}
planted other-volume other-volume --seed "$seed" --vol-id 99
planted other-run other-run --seed $((seed + 1))
planted foreign-writer foreign-writer --seed "$seed" --writer-id 2
planted fenced-generation foreign-writer --seed "$seed" --gen 0
planted unissued unissued --seed "$seed"

# --init any accepts what another run left behind.
nbdkit_start srv "$tmp/any" memory $size
"$BLOCKD_FSX" --uri "$srv_uri" --ops 300 --seed $((seed + 1)) >/dev/null
run_fsx --ops 300 --seed "$seed" --init any
[ $rc -eq 0 ] || fail "--init any over another run's data: $out"

# An error reply is exit 3 (I/O error), never a pass, and is logged.
nbdkit_start err "$tmp/err" --filter=error memory $size error-pwrite=EIO error-pwrite-rate=20%
set +e
out=$("$BLOCKD_FSX" --uri "$err_uri" --ops 400 --seed "$seed" --log "$tmp/err.log" 2>&1); rc=$?
set -e
[ $rc -eq 3 ] && grep -q "I/O ERROR seed=$seed" <<<"$out" || fail "EIO run: exit $rc: $out"
grep -q "^E [0-9]* 5$" "$tmp/err.log" || fail "EIO not logged: $(tail -3 "$tmp/err.log")"
"$BLOCKD_FSX" --uri "$err_uri" --verify-log "$tmp/err.log" || fail "verify after EIO"
echo "ok: error reply is an I/O error (exit 3), logged, and the log verifies"
# A paused server (SIGSTOP, CONTRACT row 4) is an I/O error after
# --op-timeout, not a hang; the log still verifies after SIGCONT.
nbdkit_start pz "$tmp/pz" memory $size
"$BLOCKD_FSX" --uri "$pz_uri" --duration 60 --op-timeout 2 --seed "$seed" --log "$tmp/pz.log" \
    --out-dir "$tmp" >"$tmp/pz.out" 2>&1 &
fsx=$!
cleanup_fn kill_pid $fsx
wait_for 20 "[ \$(wc -l <'$tmp/pz.log') -gt 200 ]"
kill -STOP "$pz_pid"
cleanup_fn kill -CONT "$pz_pid"
t0=$SECONDS
wait_for 20 "! kill -0 $fsx"
rc=0; wait $fsx || rc=$?
[ $rc -eq 3 ] && grep -q "no reply in 2 s (--op-timeout)" "$tmp/pz.out" ||
    fail "paused server: exit $rc: $(tail -3 "$tmp/pz.out")"
[ $((SECONDS - t0)) -le 10 ] || fail "fsx took $((SECONDS - t0)) s to give up on a 2 s timeout"
kill -CONT "$pz_pid"
"$BLOCKD_FSX" --uri "$pz_uri" --verify-log "$tmp/pz.log" --op-timeout 10 >/dev/null || fail "verify after pause"
echo "ok: a paused server is an I/O error after --op-timeout"
echo "all fsx detection cases passed"
