#!/usr/bin/env bash
# F3, CONTRACT C4/C5 (row 3): SIGKILL of the agent with unflushed writes in
# its journal, three times.  After each restart every write the agent had
# acknowledged must read back (the journal is replayed and shipped), and no
# block may hold data older than its last acknowledged write, another
# block's data or garbage.  A long flush age and no flush or FUA in the
# workload (either makes the agent ship everything it holds) keep data
# dirty in the cache when the kill lands; the test fails if none is.  Also
# reports journal replay time (agent log).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbdkit.sh"
. "$(dirname "$0")/cluster.sh"
set -e
fsx_requires
tmp=$(mktmp)
seed=$(test_seed)

cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 1 \
    --set agent.flush_age_ms=60000 --set agent.cache_bytes='"64M"'
cluster_start
cluster_wait_ready 30
cluster_create_volume vol0 64M
uri=$(cluster_uri vol0)

init=zero
for k in 1 2 3; do
    s=$((seed + k))
    # Writes, trims and zeroes, never a flush: acknowledged, unflushed data.
    "$BLOCKD_FSX" --uri "$uri" --seed "$s" --log "$tmp/fsx-$k.log" --op-timeout 30 \
        --duration 30 --init "$init" --mix flush=0,fua=0,multiconn=0,reconnect=0 \
        --out-dir "$tmp" >"$tmp/fsx-$k.out" 2>&1 &
    fsx=$!
    # Let it run a while, and then until the agent holds unshipped data
    # (up to 30 s more: on a loaded machine fsx's first writes can be late).
    sleep 3
    for _ in $(seq 300); do
        vols=$(cluster_field agent1 /v1/status '.volumes' || true)
        dirty=$(jq -r '.dirty_bytes // 0' <<<"$vols" 2>/dev/null || echo 0)
        [ "${dirty:-0}" -gt 0 ] || ! kill -0 "$fsx" 2>/dev/null && break
        sleep 0.1
    done
    cluster_kill agent1
    # Nothing dirty would make this a plain restart test.
    [ "$dirty" -gt 0 ] || {
        tail -5 "$tmp/fsx-$k.out"
        echo "the agent's volumes before the kill: $vols"
        fail "kill $k: no unshipped data in the agent's cache at the kill"
    }
    wait $fsx || rc=$?
    [ "${rc:-0}" -eq 3 ] || [ "${rc:-0}" -eq 0 ] ||
        { tail -20 "$tmp/fsx-$k.out"; fail "fsx failed before the kill"; }
    unset rc
    echo "kill $k: agent killed with $dirty dirty bytes"
    cluster_start agent1
    cluster_wait_ready 30
    "$BLOCKD_FSX" --uri "$uri" --verify-log "$tmp/fsx-$k.log" --require acked --op-timeout 60 \
        >"$tmp/verify-$k.out" 2>&1 ||
        { tail -30 "$tmp/verify-$k.out"; fail "acknowledged writes lost across agent kill $k (seed $s)"; }
    tail -1 "$tmp/verify-$k.out"
    init=any
done
grep -h "replay" "$CLUSTER_DIR/agent1/blockd.log" | tail -3 || true
echo "3 agent kills: 0 acknowledged writes lost"
