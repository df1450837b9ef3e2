#!/usr/bin/env bash
# test-nbd-qemu.sh: qemu's NBD client against the server: qemu-img convert
# in and out, qemu-img compare, qemu-img map after a sparse write (holes
# and zeroes reported by base:allocation), qemu-io patterns.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires qemu-img --version
requires qemu-io --version
set -e
tmp=$(mktmp)
nbd_server_start --export vol0:64M
uri=$(nbd_uri "${NBD_TEST_EXPORT:-vol0}")
head -c 32M /dev/urandom >"$tmp/img"
truncate -s 64M "$tmp/img"
qemu-img convert -n -f raw -O raw "$tmp/img" "$uri"
qemu-img compare -f raw -F raw "$tmp/img" "$uri"
qemu-img convert -f raw -O raw "$uri" "$tmp/back"
cmp "$tmp/img" "$tmp/back"
map=$(qemu-img map --output=json -f raw "$uri")
echo "$map" | head -5
echo "$map" | /usr/bin/python3 -c '
import json, sys
m = json.load(sys.stdin)
data = [e for e in m if e["data"]]
assert any(e["start"] == 0 and e["length"] >= 32 << 20 for e in data), m
zero_tail = [e for e in m if e["start"] >= 32 << 20]
assert all(e["zero"] for e in zero_tail), m
'
qemu-io -f raw "$uri" -c 'write -P 0xab 1M 64k' -c 'read -P 0xab 1M 64k' \
    -c 'write -z 2M 128k' -c 'read -P 0 2M 128k' -c 'discard 3M 64k' -c 'flush' >"$tmp/qio"
grep -q 'read 65536/65536' "$tmp/qio"
! grep -qi 'fail\|error\|pattern verification' "$tmp/qio" || { cat "$tmp/qio"; fail "qemu-io"; }
nbd_server_stop
