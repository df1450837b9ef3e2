#!/usr/bin/env bash
# test-nbd-errors.sh PROGRAM...: the error tests of CONTRACT.md §3 4.1 and
# 4.2 (one libnbd program per row, tests/func/errors-*.c) against one
# server, as TAP.  Defends C17.  Against the test server every program
# runs; against an external one (NBD_TEST_URI) those needing knobs skip.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"

[ $# -gt 0 ] || skip "no error programs (libnbd missing at build time)"
nbd_server_start --export vol0:64M --export ro0:16M:ro --export err0:16M --export big0:1T \
    --fail err0:1:5:0:65536 --max-io 4M --long-extents
if [ "$NBD_EXTERNAL" = 0 ]; then
    export NBD_TEST_EXPORT=vol0 NBD_TEST_RO_EXPORT=ro0 NBD_TEST_ERR_EXPORT=err0
    export NBD_TEST_BIG_EXPORT=big0
fi

echo "1..$(($# + 1))"
i=0
for prog in "$@"; do
    i=$((i + 1))
    name=$(basename "$prog")
    out=$(timeout 180 "$prog" 2>&1)
    rc=$?
    if [ $rc -eq 0 ]; then
        echo "ok $i - $name"
        [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/# /'
    elif [ $rc -eq 77 ]; then
        echo "ok $i - $name # SKIP ${out##*SKIP: }"
    else
        echo "not ok $i - $name (exit $rc)"
        printf '%s\n' "$out" | sed 's/^/# /'
    fi
done
i=$((i + 1))
stop_log=$(mktemp "${TMPDIR:-/tmp}/nbd-stop.XXXXXX")
cleanup_fn rm -f "$stop_log"
if nbd_server_stop_rc 2>"$stop_log"; then
    echo "ok $i - server stopped cleanly, no volume interface violations"
else
    echo "not ok $i - server stop"
    sed 's/^/# /' "$stop_log"
fi
exit 0
