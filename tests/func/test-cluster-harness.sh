#!/usr/bin/env bash
# Self-test of cluster.sh while the blockd roles cannot run yet: the
# configs it writes must pass the real config parser (blockd --check), and
# its process management is exercised on a stand-in (cluster-standin.py:
# an admin endpoint with the /v1/status shape cluster.sh reads, and nbdkit
# as the agent's NBD server).  Each check is one the harness would fail if
# broken: the recorded pid is the process itself, a kill really kills, a
# pause really stops, waits are bounded, the token is sent and required,
# the leader follows the status JSON, and every process dies at exit.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbdkit.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires jq --version
requires curl --version
requires /usr/bin/python3 -c 'import http.server'
requires nbdkit --version

tmp=$(mktmp)
standin=$SRCDIR/tests/func/cluster-standin.py

cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 1 --secret \
    --fault seed=5 --fault blob2.fsync_eio_after=3

# ---- Configs ----
[ ${#CLUSTER_NAMES[@]} -eq 7 ] || fail "expected 7 processes: ${CLUSTER_NAMES[*]}"
[ "${CLUSTER_NAMES[*]}" = "blob1 blob2 blob3 proxy1 proxy2 proxy3 agent1" ] ||
    fail "start order: ${CLUSTER_NAMES[*]}"
for name in "${CLUSTER_NAMES[@]}"; do
    conf=$CLUSTER_DIR/$name/$name.json
    out=$("$BLOCKD" --check --config "$conf" 2>&1) || fail "$name: blockd --check rejects $conf: $out"
done
[ "$(stat -c %a "$CLUSTER_TOKEN_FILE")" = 600 ] || fail "token file mode"
[ "$(stat -c %a "$CLUSTER_DIR/cluster.secret")" = 600 ] || fail "secret file mode"
jq -e '.proxy.peers | length == 3' "$CLUSTER_DIR/proxy2/proxy2.json" >/dev/null || fail "peers"
jq -e '.blob.fault == {seed: 5, fsync_eio_after: 3}' "$CLUSTER_DIR/blob2/blob2.json" >/dev/null ||
    fail "blob2 fault: $(jq -c .blob.fault "$CLUSTER_DIR/blob2/blob2.json")"
jq -e '.blob.fault == {seed: 5}' "$CLUSTER_DIR/blob1/blob1.json" >/dev/null || fail "blob1 fault"
jq -e '.proxy | has("allow_tmpfs") | not' "$CLUSTER_DIR/proxy1/proxy1.json" >/dev/null ||
    [ "$(stat -f -c %T "$CLUSTER_DIR")" = tmpfs ] || fail "allow_tmpfs off tmpfs"
ports=$(jq -r '.. | strings | select(test("^127\\.0\\.0\\.1:[0-9]+$"))' "$CLUSTER_DIR"/*/*.json | sort -u)
[ "$(wc -l <<<"$ports")" -eq 14 ] || fail "expected 14 distinct addresses: $ports"
# On tmpfs, proxies get allow_tmpfs (checked in a subshell: one cluster per shell).
if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
    shm=$(mktemp -d /dev/shm/blockd-test.XXXXXX)
    cleanup_fn rm -rf "$shm"
    (CLUSTER_DIR= cluster_init "$shm/c" --proxies 1 --blobs 1 --agents 0
     jq -e '.proxy.allow_tmpfs == true' "$shm/c/proxy1/proxy1.json" >/dev/null) ||
        fail "allow_tmpfs missing on tmpfs"
    "$BLOCKD" --check --config "$shm/c/proxy1/proxy1.json" >/dev/null || fail "tmpfs config invalid"
fi
echo "ok: configs"

# ---- Processes, on the stand-in ----
cluster_launch() {
    /usr/bin/python3 "$standin" "$2" "$3" >>"$CLUSTER_DIR/$1/out.log" 2>&1 &
}
echo 2 >"$CLUSTER_DIR/leader"
# proxy2 ignores SIGTERM, so only a real SIGKILL passes the kill check below.
STANDIN_IGNORE_TERM=proxy2 cluster_start
for name in "${CLUSTER_NAMES[@]}"; do
    pid=${CLUSTER_PID[$name]}
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$name/$name.json" ||
        fail "$name: pid $pid is not the process itself: $(tr '\0' ' ' <"/proc/$pid/cmdline")"
done
cluster_wait_ready 20
[ "$(cluster_leader)" = proxy2 ] || fail "leader: $(cluster_leader)"
[ "$(cluster_status agent1 | jq -r .role)" = agent ] || fail "agent status"
echo "ok: start, ready, leader"

# No leader: cluster_wait_ready fails, and within its bound.
echo 0 >"$CLUSTER_DIR/leader"
t0=$SECONDS
if (cluster_wait_ready 2) >/dev/null 2>&1; then fail "wait_ready passed without a leader"; fi
[ $((SECONDS - t0)) -le 6 ] || fail "wait_ready took $((SECONDS - t0))s for a 2s bound"
echo 2 >"$CLUSTER_DIR/leader"
# A process whose admin endpoint is not up yet is waited for.
cluster_stop blob2
STANDIN_SLOW_START=blob2 cluster_start blob2
if (cluster_wait_ready 1) >/dev/null 2>&1; then fail "wait_ready passed before blob2 answered"; fi
cluster_wait_ready 10
echo "ok: bounded wait"

# Volume creation sends the token and JSON to the leader; a follower
# redirects; a wrong token is refused.
cluster_create_volume vol0 64M
grep -qx "proxy2 vol0 67108864" "$CLUSTER_DIR/volumes.log" || fail "create: $(cat "$CLUSTER_DIR/volumes.log")"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Content-Type: application/json" \
    -H "Authorization: Bearer wrong" --data '{"name":"x","size":4096}' \
    "http://${CLUSTER_ADMIN[proxy2]}/v1/volumes")
[ "$code" = 401 ] || fail "wrong token got $code"
good_token=$(<"$CLUSTER_TOKEN_FILE")
echo wrong >"$CLUSTER_TOKEN_FILE"
if (cluster_create_volume vol1 1G) >/dev/null 2>&1; then fail "create with a wrong token passed"; fi
echo "$good_token" >"$CLUSTER_TOKEN_FILE"
echo "ok: create volume"

# The agent's URI reaches its NBD server: blockd-fsx runs against it.
uri=$(cluster_uri vol0)
[ "$uri" = "nbd://${CLUSTER_NBD[agent1]}/vol0" ] || fail "uri $uri"
wait_for 10 "nbdinfo --size '$uri'"
if [ -x "${BLOCKD_FSX:-}" ]; then
    "$BLOCKD_FSX" --uri "$uri" --conns 2 --ops 500 --out-dir "$tmp" >/dev/null || fail "fsx on cluster_uri"
fi
echo "ok: uri"

# Kill the leader; a new one is elected (by the stand-in's file); restart.
old=${CLUSTER_PID[proxy2]}
cluster_kill proxy2
! kill -0 "$old" 2>/dev/null || fail "proxy2 survived cluster_kill"
[ -z "${CLUSTER_PID[proxy2]}" ] || fail "pid not cleared"
echo 3 >"$CLUSTER_DIR/leader"
cluster_wait_ready 10
[ "$(cluster_leader)" = proxy3 ] || fail "leader after kill: $(cluster_leader)"
cluster_start proxy2
[ "${CLUSTER_PID[proxy2]}" != "$old" ] && kill -0 "${CLUSTER_PID[proxy2]}" || fail "restart after kill"
if (cluster_start proxy2) >/dev/null 2>&1; then fail "double start passed"; fi
echo "ok: kill and restart"

# Pause really stops the process: status times out; resume brings it back.
cluster_pause blob3
[[ $(ps -o stat= -p "${CLUSTER_PID[blob3]}") == T* ]] || fail "blob3 not stopped"
CLUSTER_HTTP_TIMEOUT=1
if cluster_status blob3 >/dev/null 2>&1; then fail "a paused process answered"; fi
cluster_wait_ready 5   # paused processes are not waited for
cluster_resume blob3
CLUSTER_HTTP_TIMEOUT=5
cluster_status blob3 >/dev/null || fail "blob3 after resume"
# A paused leader is not reported as leader.
cluster_pause proxy3
if cluster_leader >/dev/null; then fail "a paused leader was reported"; fi
cluster_resume proxy3
echo "ok: pause and resume"

# Stop: SIGTERM; a process that ignores it is killed after the bound and
# cluster_stop reports it.
old=${CLUSTER_PID[blob1]}
cluster_stop blob1
! kill -0 "$old" 2>/dev/null || fail "blob1 survived cluster_stop"
cluster_restart blob1
cluster_stop blob1
STANDIN_IGNORE_TERM=blob1 cluster_start blob1
wait_for 10 "cluster_status blob1"   # serving, so its handler is installed
old=${CLUSTER_PID[blob1]}
CLUSTER_STOP_TIMEOUT=1
if cluster_stop blob1; then fail "cluster_stop did not report an ignored SIGTERM"; fi
! kill -0 "$old" 2>/dev/null || fail "blob1 survived the SIGKILL after its stop timeout"
CLUSTER_STOP_TIMEOUT=10
echo "ok: stop, restart, bounded stop"

# Logs.
logs=$(cluster_logs proxy2 2>&1)
grep -q "^----- proxy2: .*out.log" <<<"$logs" || fail "cluster_logs: $logs"

# Cleanup at exit: a child test that starts a cluster and exits (passing,
# then failing) leaves no process behind and prints logs only on failure.
for outcome in 0 1; do
    (
        trap - EXIT
        BLOCKD=$BLOCKD SRCDIR=$SRCDIR TMPDIR=$tmp bash -c '
            . "$SRCDIR/tests/func/functions.sh"
            . "$SRCDIR/tests/func/cluster.sh"
            cluster_launch() { /usr/bin/python3 "$SRCDIR/tests/func/cluster-standin.py" "$2" "$3" >>"$CLUSTER_DIR/$1/out.log" 2>&1 & }
            cluster_init "$(mktmp)/c" --proxies 1 --blobs 1 --agents 1
            cluster_start >/dev/null
            for n in "${CLUSTER_NAMES[@]}"; do echo "${CLUSTER_PID[$n]}"; done >"$TMPDIR/child.pids"
            exit '"$outcome" >"$tmp/child.out" 2>&1
    ) || true
    pids=$(cat "$tmp/child.pids")
    [ "$(wc -w <<<"$pids")" -eq 3 ] || fail "child cluster pids: $pids"
    for pid in $pids; do
        wait_for 10 "! kill -0 $pid"
    done
    if [ $outcome -eq 1 ]; then
        grep -q "^----- proxy1:" "$tmp/child.out" || fail "no logs printed on failure: $(cat "$tmp/child.out")"
    else
        ! grep -q "^----- " "$tmp/child.out" || fail "logs printed on success"
    fi
done
echo "ok: cleanup at exit"
echo "cluster harness self-test passed"
