#!/usr/bin/env bash
# test-nbd-conformance.sh: NBD conformance over libnbd's Python binding
# (nbd_conformance.py, TAP): options, structured and simple replies,
# block status, FUA, multi-conn (C8), read-only, large I/O, many in
# flight; over TCP and the Unix socket.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires /usr/bin/python3 -c 'import nbd'

tmp=$(mktmp)
if [ -z "${NBD_TEST_URI:-}" ]; then
    export NBD_TEST_UNIX=$tmp/nbd.sock
    nbd_server_start --unix "$NBD_TEST_UNIX" --export vol0:96M --export ro0:16M:ro
    export NBD_TEST_EXPORT=vol0 NBD_TEST_RO_EXPORT=ro0
else
    nbd_server_start
fi
/usr/bin/python3 "$(dirname "$0")/nbd_conformance.py"
rc=$?
nbd_server_stop_rc || { echo "not ok - server stop (violations or crash)"; exit 1; }
exit $rc
