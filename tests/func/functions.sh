# functions.sh: helpers for end-to-end test scripts (source it).
#
#   . "$(dirname "$0")/functions.sh"
#   requires nbdinfo --version        # skip (exit 77) if a tool is missing
#   tmp=$(mktmp)                      # a temp dir removed at exit
#   port=$(free_port)                 # a free loopback TCP port, claimed
#   cleanup_fn kill_pid $pid          # run at exit, in reverse order
#   wait_for 10 "nbdinfo --size nbd://127.0.0.1:$port/vol0"   # bounded wait
#   skip "why" / fail "why"           # exit 77 / exit 1
#
# Every process a test starts is stopped by pid at exit; every wait has a
# timeout; ports come from free_port so parallel tests do not collide.
# blockd processes are started through cluster.sh, which does all of this.

set -u
: "${BLOCKD:?BLOCKD must point at the blockd binary}"
: "${SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"

_cleanups=()
cleanup_fn() { _cleanups+=("$*"); }
# At exit the cleanups run in reverse order.  They see the test's status in
# TEST_EXIT_STATUS (to print logs on failure) and may set it to 1 to fail a
# test that found a fault only while stopping (a sanitizer report).
_run_cleanups() {
    TEST_EXIT_STATUS=$?
    for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do eval "${_cleanups[$i]}" || true; done
    exit "$TEST_EXIT_STATUS"
}
trap _run_cleanups EXIT

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }

requires() { "$@" >/dev/null 2>&1 || skip "requires: $*"; }

# mktmp: print a new temp dir, removed at exit.  Its name carries the
# test's pid, so the removal (registered here, in the test's own shell)
# also covers dirs made inside $(...), whose own cleanup list dies with
# the subshell.  It runs last, after every process is stopped.
mktmp() {
    mktemp -d "${TMPDIR:-/tmp}/blockd-test.$$.XXXXXX"
}
_tmp_release() { rm -rf "${TMPDIR:-/tmp}"/blockd-test.$$.*; }
cleanup_fn _tmp_release

# free_port: print a free TCP port on 127.0.0.1 in 20000-59999, chosen at
# random, checked by connecting to it and claimed for this test (see
# port_claim); the caller binds it soon after.  Ports in the kernel's
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

# port_claim PORT: claim PORT for this test, unless another live test holds
# it.  The claim is a marker file holding the test's pid ($$, which a
# $(...) subshell shares, so a claim made inside one is still this test's),
# created atomically (noclobber), and released at exit.  A marker whose
# test is gone (killed before its cleanup ran), or older than an hour (its
# pid reused), is stale and taken over.
port_claim() {
    local m="${TMPDIR:-/tmp}/blockd-port-$1" owner
    ( set -C; echo $$ >"$m" ) 2>/dev/null && return 0
    owner=$(cat "$m" 2>/dev/null)
    if [ -n "$owner" ] && [ -d "/proc/$owner" ] && [ -z "$(find "$m" -mmin +60 2>/dev/null)" ]; then
        return 1
    fi
    rm -f "$m"
    ( set -C; echo $$ >"$m" ) 2>/dev/null
}

# _port_release: at exit, remove every marker this test made.
_port_release() {
    local m
    for m in "${TMPDIR:-/tmp}"/blockd-port-*; do
        [ "$(cat "$m" 2>/dev/null)" = $$ ] && rm -f "$m"
    done
    return 0
}
cleanup_fn _port_release

# kill_pid PID: SIGTERM, up to 10 s for it to go, then SIGKILL.
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

# nbd_apply URI FILE SEED N: N random writes (4 KiB to 256 KiB, one in
# five a zero) to both the volume at URI and the local image FILE, then
# flush: FILE stays what the volume must read as.  (Debian's libnbd
# binding: /usr/bin/python3, as below.)
nbd_apply() {
    /usr/bin/python3 - "$@" <<'PY'
import nbd, random, sys
uri, path, seed, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rnd = random.Random(seed)
h = nbd.NBD(); h.connect_uri(uri)
size = h.get_size()
with open(path, "r+b") as f:
    for _ in range(n):
        ln = rnd.randrange(1, 65) * 4096
        off = rnd.randrange(0, (size - ln) // 4096 + 1) * 4096
        if rnd.random() < 0.2:
            h.zero(ln, off); data = bytes(ln)
        else:
            data = rnd.randbytes(ln); h.pwrite(data, off)
        f.seek(off); f.write(data)
h.flush(); h.shutdown()
PY
}

# nbdsh runs `python3 -m nbd`, but Debian's libnbd binding loads only in
# /usr/bin/python3, which may not be the python3 first on PATH.
nbdsh() { /usr/bin/python3 -m nbd "$@"; }
