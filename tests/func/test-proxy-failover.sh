#!/usr/bin/env bash
# Issue 4, CONTRACT C1/C3/C7/C16/C18 (rows 3 and 9): SIGKILL of the Raft
# leader proxy while stamped writes stream through the agent.  A new leader
# must be elected within a few seconds, I/O must continue (the agent fails
# over to another proxy), no acknowledged write may be lost, and once the
# killed proxy is back all three proxies must hold byte-identical indexes
# (same digest at the same applied index).  Then a proxy that missed many
# entries (more than the snapshot threshold and trailing entries, so the
# leader's log no longer holds them) catches up, which takes a snapshot.
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

# converged: every running proxy has applied the same index with the same digest.
converged() {
    local n first="" a d
    for n in proxy1 proxy2 proxy3; do
        a=$(cluster_field "$n" "/v1/status?scan=1" '.index.applied_index // empty') || return 1
        d=$(cluster_field "$n" "/v1/status?scan=1" '.index.digest // empty') || return 1
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

# A proxy that misses many entries catches up (snapshot, then log).
victim=proxy3
[ "$victim" = "$(cluster_leader)" ] && victim=proxy2
missed_from=$(cluster_field "$victim" /v1/status .raft.applied_index)
cluster_stop "$victim"
"$BLOCKD_FSX" --uri "$uri" --seed $((seed + 1)) --ops 1500 --init any --op-timeout 60 \
    --out-dir "$tmp" >"$tmp/fsx2.out" 2>&1 || { tail -30 "$tmp/fsx2.out"; fail "fsx while $victim was down"; }
missed=$(($(cluster_field leader /v1/status .raft.applied_index) - missed_from))
# The leader snapshots every 64 entries and keeps 16 behind its snapshot:
# with more missed than that, the entries after missed_from are gone from
# its log and only a snapshot can bring the victim back.
[ "$missed" -gt $((64 + 16)) ] || fail "$victim missed only $missed entries: no snapshot needed"
cluster_start "$victim"
wait_for 60 converged
echo "$victim missed $missed entries and caught up: $(converged)"
