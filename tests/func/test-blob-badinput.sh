#!/usr/bin/env bash
# Defends CONTRACT.md §3 "internal wire codec" and C17 on the blob server:
# bad magic, a bad header checksum, a huge length, a frame cut off mid-way,
# requests before HELLO, a wrong cluster, malformed fields, unknown types
# and a payload that does not match its checksum each get a close or an
# error reply -- while a client on another connection keeps storing and
# reading blobs, and nothing stored is harmed.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/blob-lib.sh"
set -e

tmp=$(mktmp)
blob_setup "$tmp"
blob_run

# A well-behaved client works through all of it.
cli storm --count 3000 --inflight 16 --size 4096 --start-id 1000 --acked "$tmp/acked" \
    >"$tmp/storm.out" &
storm=$!
cleanup_fn "kill $storm 2>/dev/null"

for round in 1 2 3; do
    for mode in badmagic hugelen badcsum truncated noauth badfields unknown badpayload; do
        cli garbage --mode "$mode" --timeout-ms 5000 || fail "round $round: $mode"
    done
done

# A peer of another cluster, or with the wrong secret, is refused.
out=$("$BLOBCLI" --cluster other --addr "$BLOB_ADDR" --timeout-ms 3000 report 2>&1 || true)
[[ $out == *error* ]] || fail "other cluster was served: $out"
out=$("$BLOBCLI" --cluster functest --secret wrong --addr "$BLOB_ADDR" --timeout-ms 3000 report 2>&1 || true)
[[ $out == *error* ]] || fail "wrong secret was served: $out"

# Raw bytes from bash: random garbage, then an oversized header.
for i in 1 2 3; do
    exec 3<>"/dev/tcp/127.0.0.1/$BLOB_PORT"
    head -c 4096 /dev/urandom >&3 || true
    exec 3>&-
done

wait "$storm" || fail "storm failed: $(cat "$tmp/storm.out")"
grep -q "ok 3000 failed 0" "$tmp/storm.out" || fail "storm: $(cat "$tmp/storm.out")"
cli verify --ids "$tmp/acked" --size 4096 | grep -q "ok 3000 failed 0" || fail "verify"
kill -0 "$BLOB_PID" || fail "the server died"
grep -q "protocol" "$tmp/blob.log" || grep -q "closing" "$tmp/blob.log" || fail "no log line for bad frames"
echo "blob bad input: all cases handled, server kept serving"
