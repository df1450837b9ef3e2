# nbd-functions.sh: the NBD server under test, for tests/func/test-nbd-*.sh.
# Source it after functions.sh.
#
#   nbd_server_start --export vol0:64M --export ro0:16M:ro [server args]
#       Starts tests/tools/nbd_test_server on a free port (admin on
#       another) and exports NBD_TEST_HOST, NBD_TEST_PORT, NBD_TEST_ADMIN,
#       NBD_TEST_SERVER_PID; sets NBD_URI (nbd://host:port).
#       With NBD_TEST_URI=nbd://host:port in the environment nothing is
#       started: the tests run against that server (a real agent), with
#       NBD_TEST_EXPORT (a writable volume of >= 96 MiB whose contents the
#       tests may overwrite), NBD_TEST_RO_EXPORT (optional), NBD_TEST_ADMIN
#       (optional host:port of GET /v1/status) as given there; tests that
#       need the test server's knobs skip.
#   nbd_requires_knobs
#       Skip (77) when running against an external server: the test needs
#       the test server's fault and limit knobs.
#   nbd_server_stop
#       SIGTERM, wait, and fail unless the server exited 0 (it exits 3 if
#       it ever broke the volume interface's preconditions);
#       nbd_server_stop_rc returns that status instead.
#   nbd_uri EXPORT    -> nbd://host:port/EXPORT

nbd_server_start() {
    if [ -n "${NBD_TEST_URI:-}" ]; then
        NBD_EXTERNAL=1
        local hp=${NBD_TEST_URI#nbd://}
        hp=${hp%%/*}
        export NBD_TEST_HOST=${hp%:*} NBD_TEST_PORT=${hp##*:}
        export NBD_TEST_ADMIN=${NBD_TEST_ADMIN:-} NBD_TEST_SERVER_PID=${NBD_TEST_SERVER_PID:-}
        NBD_URI="nbd://$NBD_TEST_HOST:$NBD_TEST_PORT"
        return 0
    fi
    NBD_EXTERNAL=0
    : "${NBD_TEST_SERVER:?NBD_TEST_SERVER must point at nbd_test_server}"
    local port admin log attempt
    log=$(mktemp "${TMPDIR:-/tmp}/nbd-server-log.XXXXXX")
    cleanup_fn rm -f "$log"
    NBD_SERVER_LOG=$log
    # A free port can be taken before we bind it (another test's outgoing
    # connection): if the server dies at start, try other ports.
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        admin=$(free_port)
        "$NBD_TEST_SERVER" --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" "$@" 2>"$log" &
        NBD_SERVER_PID=$!
        cleanup_fn kill_pid "$NBD_SERVER_PID"
        local end=$((SECONDS + 10))
        while [ $SECONDS -lt $end ] && kill -0 "$NBD_SERVER_PID" 2>/dev/null; do
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
            sleep 0.05
        done
        kill -0 "$NBD_SERVER_PID" 2>/dev/null && break
        echo "nbd_test_server failed to start (attempt $attempt): $(cat "$log")" >&2
    done
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || fail "nbd_test_server did not start"
    export NBD_TEST_HOST=127.0.0.1 NBD_TEST_PORT=$port NBD_TEST_ADMIN=127.0.0.1:$admin
    export NBD_TEST_SERVER_PID=$NBD_SERVER_PID
    NBD_URI="nbd://127.0.0.1:$port"
}

nbd_requires_knobs() {
    [ "${NBD_EXTERNAL:-0}" = 0 ] || skip "needs the test server's knobs (NBD_TEST_URI is set)"
}

nbd_uri() { echo "$NBD_URI/$1"; }

nbd_server_stop() {
    nbd_server_stop_rc || fail "nbd_test_server exited with status $?"
}

# As nbd_server_stop, but return the server's exit status instead of failing.
nbd_server_stop_rc() {
    [ "${NBD_EXTERNAL:-0}" = 0 ] || return 0
    kill -TERM "$NBD_SERVER_PID" 2>/dev/null || true
    local rc=0
    wait "$NBD_SERVER_PID" || rc=$?
    [ $rc -eq 0 ] || tail -20 "$NBD_SERVER_LOG" >&2
    return $rc
}

# The server's resident set in KiB (test server only).
nbd_server_rss_kb() {
    awk '/^VmRSS:/ {print $2}' "/proc/$NBD_SERVER_PID/status" 2>/dev/null || echo 0
}
