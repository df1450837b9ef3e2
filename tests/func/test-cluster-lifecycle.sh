#!/usr/bin/env bash
# The cluster's life cycle on real blockd processes, and the harness
# (cluster.sh) every other functional test stands on; each check is one a
# broken harness or role would fail:
#   - cluster_init's configs (with TLS and --fault) pass `blockd --check`;
#     the token files and every private key are 0600; each certificate
#     names its process; every address is distinct;
#   - with TLS in every role, the cluster elects a leader, takes a volume
#     and serves NBD I/O; the admin API answers over HTTPS only, and only
#     with a token (the read token reads, cannot mutate); blobcli with a
#     ctl certificate is served, without a certificate refused;
#   - the recorded pid is blockd itself; cluster_kill kills it, clears it,
#     and a restart gets a new process; a second start is refused;
#   - cluster_wait_ready is bounded: with two of three proxies stopped there
#     is no leader and it fails within its bound;
#   - a paused leader is never reported as leader; the others elect a new
#     one; after the resume the harness names the leader most proxies
#     follow;
#   - every role exits 0 on SIGTERM (cluster_stop_all);
#   - a test that starts a cluster and exits, passing or failing, leaves no
#     process behind and prints the logs only when it failed.
# Defends the PREAMBLE rules of tests/func/README and issue 12's trust
# at the boundaries (C10: identities come from certificates).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires /usr/bin/python3 -c 'import nbd'
tmp=$(mktmp)

cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 1 --fault seed=5 \
    --fault blob2.delay_ms=0 --set proxy.node_timeout_ms=1500 --set proxy.election_timeout_ms=1000

# ---- Configs ----
[ "${CLUSTER_NAMES[*]}" = "blob1 blob2 blob3 proxy1 proxy2 proxy3 agent1" ] ||
    fail "names or start order: ${CLUSTER_NAMES[*]}"
for name in "${CLUSTER_NAMES[@]}"; do
    conf=$CLUSTER_DIR/$name/$name.json
    out=$("$BLOCKD" --check --config "$conf" 2>&1) || fail "$name: blockd --check rejects $conf: $out"
done
[ "$(stat -c %a "$CLUSTER_TOKEN_FILE")" = 600 ] || fail "token file mode"
[ "$(stat -c %a "$CLUSTER_READ_TOKEN_FILE")" = 600 ] || fail "read token file mode"
for name in "${CLUSTER_NAMES[@]}"; do
    [ "$(stat -c %a "$CLUSTER_TLS_DIR/$name.key")" = 600 ] || fail "$name.key mode"
    role=${CLUSTER_ROLE[$name]}
    "$BLOCKD" cert show "$CLUSTER_TLS_DIR/$name.pem" |
        grep -qx "identity:  cluster $CLUSTER_ID, role $role, id ${CLUSTER_NODE_ID[$name]:-$name}" ||
        fail "$name.pem names another identity: $("$BLOCKD" cert show "$CLUSTER_TLS_DIR/$name.pem")"
done
jq -e '.blob.fault == {seed: 5, delay_ms: 0}' "$CLUSTER_DIR/blob2/blob2.json" >/dev/null ||
    fail "blob2 fault: $(jq -c .blob.fault "$CLUSTER_DIR/blob2/blob2.json")"
jq -e '.proxy.fault == {seed: 5}' "$CLUSTER_DIR/proxy1/proxy1.json" >/dev/null || fail "proxy1 fault"
ports=$(jq -r '.. | strings | select(test("^127\\.0\\.0\\.1:[0-9]+$"))' "$CLUSTER_DIR"/*/*.json | sort -u)
[ "$(wc -l <<<"$ports")" -eq 14 ] || fail "expected 14 distinct addresses: $ports"
echo "ok: configs"

# ---- A cluster with TLS everywhere serves ----
cluster_start
for name in "${CLUSTER_NAMES[@]}"; do
    pid=${CLUSTER_PID[$name]}
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$name/$name.json" ||
        fail "$name: pid $pid is not the process itself: $(tr '\0' ' ' <"/proc/$pid/cmdline")"
done
cluster_wait_ready 30
cluster_create_volume vol0 64M
/usr/bin/python3 - "$(cluster_uri vol0)" <<'PY' || fail "NBD I/O through the agent"
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
h.pwrite(b"s" * 65536, 4096); h.flush()
assert h.pread(65536, 4096) == b"s" * 65536
h.shutdown()
PY
cluster_blobcli blob1 --timeout-ms 3000 report | grep -q '^blobs=' || fail "blobcli with a certificate"
out=$("$BLOBCLI" --cluster "$CLUSTER_ID" --addr "${CLUSTER_WIRE[blob1]}" \
    --timeout-ms 3000 report 2>&1 || true)
[[ $out == *error* ]] || fail "blobcli without TLS was served: $out"
# Admin: HTTPS only; every route but /metrics and /healthz needs a token;
# the read token cannot mutate.
code() { cluster_curl -o /dev/null -w '%{http_code}' "$@"; }
[ "$(TOKEN= code "$(cluster_url proxy1 /v1/volumes)")" = 401 ] || fail "a read without a token"
[ "$(TOKEN= code "$(cluster_url proxy1 /healthz)")" = 200 ] || fail "/healthz needs no token"
[ "$(TOKEN= code "$(cluster_url proxy1 /metrics)")" = 200 ] || fail "/metrics needs no token"
[ "$(TOKEN=$CLUSTER_READ_TOKEN_FILE code "$(cluster_url proxy1 /v1/volumes)")" = 200 ] ||
    fail "the read token cannot read"
[ "$(TOKEN=$CLUSTER_READ_TOKEN_FILE code -X DELETE "$(cluster_url proxy1 /v1/volumes/vol0)")" = 403 ] ||
    fail "the read token deleted a volume"
[ "$(TOKEN=$CLUSTER_READ_TOKEN_FILE code -X POST -H 'Content-Type: application/json' \
    --data '{"agent": "agent9", "force": true}' "$(cluster_url proxy1 /v1/volumes/vol0/attach)")" = 403 ] ||
    fail "the read token moved a volume"
[ "$(TOKEN=$CLUSTER_READ_TOKEN_FILE code -X DELETE "$(cluster_url proxy1 /v1/volumes/vol0/attach)")" = 403 ] ||
    fail "the read token detached a volume"
plain=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://${CLUSTER_ADMIN[proxy1]}/healthz" || true)
[ "$plain" != 200 ] || fail "the admin API answered plain HTTP"
echo "ok: TLS cluster serves; HTTPS with tokens and scopes; pids are the processes"

# ---- Kill, restart, double start ----
old=${CLUSTER_PID[blob3]}
cluster_kill blob3
! kill -0 "$old" 2>/dev/null || fail "blob3 survived cluster_kill"
[ -z "${CLUSTER_PID[blob3]}" ] || fail "pid not cleared"
[ "${CLUSTER_EXIT[blob3]}" = 137 ] || fail "blob3 exit status ${CLUSTER_EXIT[blob3]} after SIGKILL"
cluster_start blob3
[ "${CLUSTER_PID[blob3]}" != "$old" ] && kill -0 "${CLUSTER_PID[blob3]}" || fail "restart after kill"
if (cluster_start blob3) >/dev/null 2>&1; then fail "a second start passed"; fi
cluster_wait_ready 30
echo "ok: kill and restart"

# ---- Bounded readiness: no quorum, no leader ----
# One follower alone can never win an election.
leader=$(cluster_leader)
lone=
for p in proxy1 proxy2 proxy3; do [ "$p" = "$leader" ] || lone=$p; done
stopped=()
for p in proxy1 proxy2 proxy3; do [ "$p" = "$lone" ] || stopped+=("$p"); done
cluster_stop "${stopped[@]}" || fail "proxies did not stop cleanly"
t0=$SECONDS
if (cluster_wait_ready 3) >/dev/null 2>&1; then fail "wait_ready passed with one proxy of three"; fi
[ $((SECONDS - t0)) -le 10 ] || fail "wait_ready took $((SECONDS - t0))s for a 3s bound"
cluster_start "${stopped[@]}"
cluster_wait_ready 30
echo "ok: bounded wait"

# ---- A paused leader ----
leader=$(cluster_leader)
cluster_pause "$leader"
new=
for _ in $(seq 1 100); do
    new=$(cluster_leader 2>/dev/null || true)
    [ -n "$new" ] && break
    sleep 0.1
done
[ -n "$new" ] && [ "$new" != "$leader" ] || fail "no new leader while $leader is paused (got '$new')"
cluster_resume "$leader"
# Back, the old leader may still call itself leader for a moment: the
# harness names the one every proxy follows.
agreed() {
    local l ids
    l=$(cluster_leader) || return 1
    ids=$(for p in proxy1 proxy2 proxy3; do cluster_field "$p" /v1/status .raft.leader_id; done | sort -u)
    [ "$ids" = "${CLUSTER_NODE_ID[$l]}" ]
}
wait_for 20 agreed
echo "ok: a paused leader is not reported; $new took over; now $(cluster_leader) leads"

# ---- Every role stops cleanly ----
cluster_stop_all
for name in "${CLUSTER_NAMES[@]}"; do
    [ "${CLUSTER_EXIT[$name]}" = 0 ] || fail "$name exited with ${CLUSTER_EXIT[$name]}"
done
echo "ok: every role exits 0 on SIGTERM"

# ---- Cleanup at exit: no process left, logs only on failure ----
for outcome in 0 1; do
    BLOCKD=$BLOCKD SRCDIR=$SRCDIR OUT=$tmp bash -c '
        . "$SRCDIR/tests/func/functions.sh"
        . "$SRCDIR/tests/func/cluster.sh"
        echo $$ >"$OUT/child.pid"
        cluster_init "$(mktmp)/c" --proxies 1 --blobs 1 --agents 1
        cluster_start >/dev/null
        for n in "${CLUSTER_NAMES[@]}"; do echo "${CLUSTER_PID[$n]}"; done >"$OUT/child.pids"
        exit '"$outcome" >"$tmp/child.out" 2>&1 || true
    pids=$(cat "$tmp/child.pids")
    [ "$(wc -w <<<"$pids")" -eq 3 ] || fail "child cluster pids: $pids"
    for pid in $pids; do
        wait_for 10 "! kill -0 $pid"
    done
    if [ $outcome -eq 1 ]; then
        grep -q "^----- proxy1:" "$tmp/child.out" || fail "no logs printed on failure: $(cat "$tmp/child.out")"
    else
        ! grep -q "^----- " "$tmp/child.out" || fail "logs printed on success: $(cat "$tmp/child.out")"
    fi
    child=$(cat "$tmp/child.pid")
    ! ls -d "${TMPDIR:-/tmp}/blockd-test.$child."* >/dev/null 2>&1 || fail "the child left its temp dir"
    ! grep -lx "$child" "${TMPDIR:-/tmp}"/blockd-port-* >/dev/null 2>&1 || fail "the child left port claims"
done
echo "ok: cleanup at exit"
