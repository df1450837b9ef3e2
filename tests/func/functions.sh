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
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            # Nothing listening; also make sure no one else took it in this run.
            if [ ! -e "${TMPDIR:-/tmp}/blockd-port-$p" ]; then
                : >"${TMPDIR:-/tmp}/blockd-port-$p"
                cleanup_fn rm -f "${TMPDIR:-/tmp}/blockd-port-$p"
                echo "$p"
                return 0
            fi
        fi
    done
    fail "no free port"
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
