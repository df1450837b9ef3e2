#!/usr/bin/env bash
# test-nbd-fio.sh: fio's nbd engine with verify=crc32c (random writes,
# then every block read back and verified), at queue depth 16.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires fio --version
fio --enghelp 2>/dev/null | grep -qw nbd || skip "fio has no nbd engine"
set -e
tmp=$(mktmp)
nbd_server_start --export vol0:64M
uri=$(nbd_uri "${NBD_TEST_EXPORT:-vol0}")
fio --name=verify --ioengine=nbd --uri="$uri" --rw=randwrite --bs=4k --bsrange=4k-64k \
    --iodepth=16 --size=32M --verify=crc32c --verify_fatal=1 --do_verify=1 \
    --output-format=json --output="$tmp/fio.json" >/dev/null 2>"$tmp/fio.err" ||
    { cat "$tmp/fio.err"; fail "fio failed"; }
# fio's nbd engine prints a line before the JSON: parse from the first '{'
/usr/bin/python3 -c '
import json, sys
s = open(sys.argv[1]).read()
j = json.loads(s[s.index("{"):])["jobs"][0]
assert j["error"] == 0, j["error"]
assert j["write"]["io_bytes"] >= 32 << 20, j["write"]["io_bytes"]
assert j["read"]["io_bytes"] >= 32 << 20, j["read"]["io_bytes"]   # the verify pass
print("fio wrote %d and verified %d bytes" % (j["write"]["io_bytes"], j["read"]["io_bytes"]))
' "$tmp/fio.json"
nbd_server_stop
