#!/usr/bin/env bash
# Issue 5 against the real thing: the NBD protocol tests written for the
# test server (tests/func/test-nbd-*.sh, nbd_conformance.py and the
# errors-*.c programs of CONTRACT.md §3 4.1/4.2) run against a real agent
# in front of a real 3 proxy / 3 blob cluster, plus nbdcopy of 256 MiB of
# random data in and out with equal checksums, qemu-img convert/compare and
# fio verify.  Tests that need the test server's fault knobs skip (listed
# with their reason).  Prints TAP; defends C1, C2, C8, C17.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
requires nbdcopy --version
requires /usr/bin/python3 -c 'import nbd'
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktmp)

# The errors-* programs expect a server without TLS (errors-starttls):
# test-nbd-tls.sh tests the agent with it.
cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 1 --set 'agent.nbd_tls="off"' >/dev/null 2>&1
cluster_start >/dev/null
cluster_wait_ready 30
# Each script gets a fresh volume of the size it was written for (they
# compare with files or nbdkit memory of that size, which start zeroed).
for v in copy256:256M conf:96M nbdcopy:64M qemu:64M fio:64M diff:64M err:64M big0:1T; do
    cluster_create_volume "${v%%:*}" "${v#*:}" >/dev/null
done
export NBD_TEST_URI="nbd://${CLUSTER_NBD[agent1]}" NBD_TEST_BIG_EXPORT=big0
export NBD_TEST_ADMIN="${CLUSTER_ADMIN[agent1]}" NBD_TEST_ADMIN_CA="$CLUSTER_CA" \
    NBD_TEST_ADMIN_TOKEN_FILE="$CLUSTER_READ_TOKEN_FILE"

n=0
bad=0
tap() { # tap NAME RC OUTPUT
    n=$((n + 1))
    if [ "$2" -eq 0 ]; then echo "ok $n - $1"
    elif [ "$2" -eq 77 ]; then echo "ok $n - $1 # SKIP $(printf '%s' "$3" | grep -o 'SKIP.*' | head -1)"
    else
        echo "not ok $n - $1 (exit $2)"
        printf '%s\n' "$3" | tail -20 | sed 's/^/# /'
        bad=$((bad + 1))
    fi
}

# 256 MiB of random data in and out.
head -c 256M /dev/urandom >"$tmp/in"
out=$( { nbdcopy --flush "$tmp/in" "$NBD_TEST_URI/copy256" &&
         nbdcopy "$NBD_TEST_URI/copy256" - | sha256sum >"$tmp/out.sum"; } 2>&1)
rc=$?
if [ $rc -eq 0 ] && [ "$(sha256sum <"$tmp/in")" != "$(cat "$tmp/out.sum")" ]; then
    rc=1
    out="checksums differ"
fi
tap "nbdcopy 256 MiB random in and out, equal checksums" $rc "$out"
rm -f "$tmp/in"

# The protocol conformance script (TAP of its own: count it as one).
out=$(NBD_TEST_EXPORT=conf timeout 600 bash "$here/test-nbd-conformance.sh" 2>&1)
rc=$?
if [ $rc -eq 0 ] && printf '%s\n' "$out" | grep -q '^not ok'; then rc=1; fi
tap "nbd_conformance.py ($(printf '%s\n' "$out" | grep -c '^ok') checks)" $rc "$out"

for t in nbdcopy:test-nbd-nbdcopy.sh qemu:test-nbd-qemu.sh fio:test-nbd-fio.sh \
    diff:test-nbd-differential.sh; do
    out=$(NBD_TEST_EXPORT=${t%%:*} timeout 600 bash "$here/${t#*:}" 2>&1)
    tap "${t#*:}" $? "$out"
done

for prog in "$@"; do
    out=$(NBD_TEST_EXPORT=err timeout 180 "$prog" 2>&1)
    tap "$(basename "$prog")" $? "$out"
done

# The cluster survived all of it.
for name in "${CLUSTER_NAMES[@]}"; do
    cluster_running "$name"
    tap "$name still running" $? "$name exited"
done
echo "1..$n"
[ $bad -eq 0 ]
