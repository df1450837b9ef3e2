#!/usr/bin/env bash
# F4 (CONTRACT.md row 2): stamped-block fsx against a real 3 proxy / 3 blob /
# 1 agent cluster on loopback, over three connections (multi-conn, C8) with
# the linearizable model (C7), for three seeds; every op kind, including
# reconnects, flushes, FUA, trims and zeroes.  A small cache and a short
# flush age make the agent ship continuously, so reads cross the cache, the
# proxies and the blob servers.  Defends C1, C5-C9, C11.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbdkit.sh"
. "$(dirname "$0")/cluster.sh"
set -e
fsx_requires
tmp=$(mktmp)
seed=$(test_seed)

cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 1 \
    --set agent.cache_bytes='"8M"' --set agent.flush_age_ms=200
cluster_start
cluster_wait_ready 30
cluster_create_volume vol0 64M
cluster_create_volume vol1 64M
uri=$(cluster_uri vol0)
ops=${FSX_OPS:-3000}
init=zero # a new volume reads zero everywhere (C11); later runs find data
for s in "$seed" $((seed + 1)) $((seed + 2)); do
    echo "fsx seed $s, $ops ops"
    "$BLOCKD_FSX" --uri "$uri" --conns 3 --seed "$s" --ops "$ops" --op-timeout 60 \
        --init "$init" --out-dir "$tmp" --vol-id 1 >"$tmp/fsx-$s.out" 2>&1 ||
        { tail -40 "$tmp/fsx-$s.out"; fail "fsx seed $s (replay: TEST_SEED=$seed)"; }
    tail -2 "$tmp/fsx-$s.out"
    init=any
done
# Another volume at the same time never shows vol0's stamps (C11).
"$BLOCKD_FSX" --uri "$(cluster_uri vol1)" --seed "$seed" --ops 1000 --vol-id 2 \
    --op-timeout 60 --out-dir "$tmp" >"$tmp/fsx-vol1.out" 2>&1 ||
    { tail -40 "$tmp/fsx-vol1.out"; fail "fsx on vol1"; }
echo "3 seeds x $ops ops on vol0 and 1000 on vol1: 0 miscompares"
