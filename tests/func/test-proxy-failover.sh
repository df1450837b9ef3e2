#!/usr/bin/env bash
# Issue 4, CONTRACT C1/C3/C7/C16/C18 (rows 3 and 9): SIGKILL of the Raft
# leader proxy while stamped writes stream through the agent.  A new leader
# must be elected within a few seconds, I/O must continue (the agent fails
# over to another proxy), no acknowledged write may be lost, and once the
# killed proxy is back all three proxies must hold byte-identical indexes
# (same digest at the same applied index).  Then a proxy that missed many
# entries (more than the snapshot threshold) catches up from a snapshot.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbdkit.sh"
. "$(dirname "$0")/cluster.sh"
set -e
fsx_requires
tmp=$(mktmp)
seed=$(test_seed)

cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 1 \
    --set proxy.snapshot_threshold=64 --set proxy.snapshot_trailing=16 \
    --set agent.cache_bytes='"8M"' --set agent.flush_age_ms=100
cluster_start
cluster_wait_ready 30
cluster_create_volume vol0 64M
uri=$(cluster_uri vol0)

# status_field NAME JQ: a field of a proxy's /v1/status.
status_field() {
    curl -s --max-time 5 "http://${CLUSTER_ADMIN[$1]}/v1/status?scan=1" | jq -r "$2"
}
# converged: every running proxy has applied the same index with the same digest.
converged() {
    local n first="" a d
    for n in proxy1 proxy2 proxy3; do
        a=$(status_field "$n" '.index.applied_index // empty') || return 1
        d=$(status_field "$n" '.index.digest // empty') || return 1
        [ -n "$a" ] && [ -n "$d" ] || return 1
        [ -z "$first" ] && first="$a/$d"
        [ "$a/$d" = "$first" ] || return 1
    done
    echo "applied $first"
}

"$BLOCKD_FSX" --uri "$uri" --seed "$seed" --log "$tmp/fsx.log" --op-timeout 60 \
    --duration 20 --out-dir "$tmp" >"$tmp/fsx.out" 2>&1 &
fsx=$!
cleanup_fn kill_pid $fsx
sleep 4
leader=$(cluster_leader)
[ -n "$leader" ] || fail "no leader"
t0=$SECONDS
cluster_kill "$leader"
echo "killed leader $leader"
# A new leader among the other two, within a few seconds.
new=""
for _ in $(seq 1 100); do
    new=$(cluster_leader 2>/dev/null || true)
    [ -n "$new" ] && [ "$new" != "$leader" ] && break
    sleep 0.1
done
[ -n "$new" ] && [ "$new" != "$leader" ] || fail "no new leader within 10 s"
echo "new leader $new after $((SECONDS - t0)) s"
wait $fsx || { tail -30 "$tmp/fsx.out"; fail "fsx failed across the leader kill (seed $seed)"; }
tail -2 "$tmp/fsx.out"
# Every write fsx saw acknowledged is there (the agent never died: C1, C7).
"$BLOCKD_FSX" --uri "$uri" --verify-log "$tmp/fsx.log" --require acked --op-timeout 60 \
    >"$tmp/verify.out" 2>&1 || { tail -30 "$tmp/verify.out"; fail "acknowledged writes lost"; }

cluster_start "$leader"
wait_for 30 converged
echo "indexes identical after the restart: $(converged)"

# A proxy that misses many entries catches up (log, then snapshot).
victim=proxy3
[ "$victim" = "$(cluster_leader)" ] && victim=proxy2
cluster_stop "$victim"
"$BLOCKD_FSX" --uri "$uri" --seed $((seed + 1)) --ops 1500 --init any --op-timeout 60 \
    --out-dir "$tmp" >"$tmp/fsx2.out" 2>&1 || { tail -30 "$tmp/fsx2.out"; fail "fsx while $victim was down"; }
cluster_start "$victim"
wait_for 60 converged
echo "$victim caught up: $(converged)"
grep -q "snapshot" "$CLUSTER_DIR/$victim/blockd.log" || echo "note: $victim caught up from the log"
