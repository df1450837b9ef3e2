# functions.sh: helpers for end-to-end test scripts (source it).
#
#   . "$(dirname "$0")/functions.sh"
#   requires nbdinfo --version        # skip (exit 77) if a tool is missing
#   tmp=$(mktmp)                      # a temp dir removed at exit
#   port=$(free_port)                 # a free loopback TCP port
#   cleanup_fn kill_pid $pid          # run at exit, in reverse order
#   wait_for 10 "nbdinfo --size nbd://127.0.0.1:$port/vol0"   # bounded wait
#
# Every process a test starts is stopped by pid at exit; every wait has a
# timeout; ports come from free_port so parallel tests do not collide.

set -u
: "${BLOCKD:?BLOCKD must point at the blockd binary}"
: "${SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"

_cleanups=()
cleanup_fn() { _cleanups+=("$*"); }
_run_cleanups() {
    local rc=$?
    TEST_EXIT_STATUS=$rc   # cleanups may look (e.g. print logs on failure)
    for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do eval "${_cleanups[$i]}" || true; done
    exit $rc
}
trap _run_cleanups EXIT

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }

requires() { "$@" >/dev/null 2>&1 || skip "requires: $*"; }

mktmp() {
    local d
    d=$(mktemp -d "${TMPDIR:-/tmp}/blockd-test.XXXXXX")
    cleanup_fn rm -rf "$d"
    echo "$d"
}

# A free TCP port on 127.0.0.1 in 20000-59999, chosen at random and checked
# by binding it; the caller binds it soon after.  Ports in the kernel's
# ephemeral range (ip_local_port_range, usually from 32768) are avoided:
# the kernel hands those to port-0 binds and outgoing connections, which
# could take the port between this check and the caller's bind.
free_port() {
    local p lo=20000 hi=59999 eph
    eph=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 0)
    [ "${eph:-0}" -gt $((lo + 1000)) ] && [ "$eph" -le $hi ] && hi=$((eph - 1))
    for _ in $(seq 1 200); do
        p=$((lo + RANDOM % (hi - lo + 1)))
        # Nothing listening, and no other test has claimed it.
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && port_claim "$p"; then
            echo "$p"
            return 0
        fi
    done
    fail "no free port"
}

# port_claim PORT: claim PORT for this test (a marker file other tests
# see), unless another test holds it.  A marker older than an hour is stale
# and taken over: every test ends within minutes, but one killed, or a
# claim made inside $(...) (its cleanup list dies with the subshell), leaves
# its marker behind.
port_claim() {
    local m="${TMPDIR:-/tmp}/blockd-port-$1"
    if [ -e "$m" ] && [ -z "$(find "$m" -mmin +60 2>/dev/null)" ]; then
        return 1
    fi
    touch "$m"
    cleanup_fn rm -f "$m"
}

kill_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# wait_for SECONDS COMMAND...: retry COMMAND until it succeeds or time runs out.
wait_for() {
    local secs=$1
    shift
    local end=$((SECONDS + secs))
    while [ $SECONDS -lt $end ]; do
        if eval "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    eval "$@" || fail "timed out after ${secs}s waiting for: $*"
}

# nbdsh runs `python3 -m nbd`, but Debian's libnbd binding loads only in
# /usr/bin/python3, which may not be the python3 first on PATH.
nbdsh() { /usr/bin/python3 -m nbd "$@"; }
