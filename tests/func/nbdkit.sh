# nbdkit.sh: reference NBD servers for test scripts (source it after
# functions.sh).  The tools in tests/tools must work against any NBD server;
# these helpers start nbdkit as that server.
#
#   nbdkit_start srv "$tmp/srv" memory 64M      # sets srv_uri, srv_pid, srv_dir
#   "$BLOCKD_FSX" --uri "$srv_uri" --ops 1000
#   nbdkit_kill srv                             # SIGKILL (a crash)
#   nbdkit_start srv "$tmp/srv" file "$tmp/disk.img"   # restart on the same dir
#
# Each server listens on a Unix socket DIR/sock (no ports to collide), writes
# DIR/pid once it accepts connections, and is killed by pid at exit.

# nbdkit_start NAME DIR [nbdkit args...]: start a server; set NAME_uri,
# NAME_pid and NAME_dir.  Fails the test if it does not come up in 10 s.
nbdkit_start() {
    local name=$1 dir=$2
    shift 2
    mkdir -p "$dir"
    rm -f "$dir/pid" "$dir/sock"
    # --exit-with-parent (implies --foreground): no orphan if the test dies.
    nbdkit --exit-with-parent -U "$dir/sock" -P "$dir/pid" "$@" >>"$dir/nbdkit.log" 2>&1 &
    local pid=$!
    cleanup_fn kill_pid "$pid"
    local end=$((SECONDS + 10))
    until [ -s "$dir/pid" ] && [ -S "$dir/sock" ]; do
        kill -0 "$pid" 2>/dev/null || fail "nbdkit $* exited: $(tail -5 "$dir/nbdkit.log")"
        [ $SECONDS -lt $end ] || fail "nbdkit $* did not start in 10 s"
        sleep 0.05
    done
    printf -v "${name}_pid" '%s' "$pid"
    printf -v "${name}_dir" '%s' "$dir"
    printf -v "${name}_uri" '%s' "nbd+unix:///?socket=$dir/sock"
}

# nbdkit_kill NAME: SIGKILL the server and wait (bounded) until it is gone.
nbdkit_kill() {
    local pidvar="${1}_pid"
    local pid=${!pidvar}
    kill -KILL "$pid" 2>/dev/null || true
    wait_for 10 "! kill -0 $pid"
}

# nbdkit_stop NAME: SIGTERM, bounded wait, then SIGKILL.
nbdkit_stop() {
    local pidvar="${1}_pid"
    kill_pid "${!pidvar}"
}

# fsx_requires: skip unless blockd-fsx was built (it needs libnbd).
fsx_requires() {
    [ -x "${BLOCKD_FSX:-}" ] || skip "blockd-fsx was not built (libnbd-dev missing?)"
    requires nbdkit --version
}

# test_seed: $TEST_SEED or a fresh random seed, printed for replay.
test_seed() {
    local s=${TEST_SEED:-$(( (RANDOM << 30) ^ (RANDOM << 15) ^ RANDOM ))}
    echo "seed $s (replay with TEST_SEED=$s)" >&2
    echo "$s"
}
