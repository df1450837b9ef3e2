#!/usr/bin/env bash
# test-nbd-differential.sh: the same seeded random operation sequence
# against `nbdkit memory` (the oracle) and the server under test; every
# outcome and every byte read must match (CONTRACT.md §2 row 1).
# TEST_SEED fixes the seed; NBD_DIFF_OPS the length (default 3000).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires /usr/bin/python3 -c 'import nbd'
requires nbdkit --version
tmp=$(mktmp)
nbd_server_start --export vol0:64M
kport=$(free_port)
nbdkit -f -i 127.0.0.1 -p "$kport" -P "$tmp/nbdkit.pid" memory 64M &
kpid=$!
cleanup_fn kill_pid $kpid
wait_for 10 "(exec 3<>/dev/tcp/127.0.0.1/$kport) 2>/dev/null"
seed=${TEST_SEED:-$RANDOM}
echo "seed $seed"
/usr/bin/python3 "$(dirname "$0")/nbd_differential.py" "nbd://127.0.0.1:$kport" \
    "$(nbd_uri "${NBD_TEST_EXPORT:-vol0}")" "$seed" "${NBD_DIFF_OPS:-3000}" ||
    fail "differential run failed (seed $seed)"
nbd_server_stop
