#!/usr/bin/env bash
# test-nbd-nbdcopy.sh: 64 MiB of random data through nbdcopy in and out
# (multi-conn, many requests in flight), equal checksums; a sparse copy
# keeps holes readable as zeroes.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires nbdcopy --version
set -e
tmp=$(mktmp)
nbd_server_start --export vol0:64M
export_name=${NBD_TEST_EXPORT:-vol0}
head -c 64M /dev/urandom >"$tmp/in"
nbdcopy --flush "$tmp/in" "$(nbd_uri "$export_name")"
nbdcopy "$(nbd_uri "$export_name")" "$tmp/out"
a=$(sha256sum <"$tmp/in" | cut -d' ' -f1)
b=$(sha256sum <"$tmp/out" | cut -d' ' -f1)
[ "$a" = "$b" ] || fail "checksums differ: $a vs $b"
echo "64 MiB round trip: $a"
# sparse: a file of holes and data; zeroes are sent as WRITE_ZEROES
truncate -s 64M "$tmp/sparse"
dd if=/dev/urandom of="$tmp/sparse" bs=1M count=3 seek=20 conv=notrunc status=none
nbdcopy "$tmp/sparse" "$(nbd_uri "$export_name")"
nbdcopy "$(nbd_uri "$export_name")" "$tmp/out2"
cmp "$tmp/sparse" "$tmp/out2" || fail "sparse copy differs"
nbd_server_stop
