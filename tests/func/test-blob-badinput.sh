#!/usr/bin/env bash
# Defends CONTRACT.md §3 "internal wire codec" and C17 on the blob server:
# bad magic, a bad header checksum, a huge length, a frame cut off mid-way,
# requests before HELLO, a wrong cluster, malformed fields, unknown types
# and a payload that does not match its checksum each get a close or an
# error reply -- while a client on another connection keeps storing and
# reading blobs, and nothing stored is harmed.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e

tmp=$(mktmp)
cluster_init "$tmp/c" --proxies 0 --blobs 1 --agents 0 --set blob.heartbeat_ms=100
cluster_start
cluster_wait_ready 20
cli() { cluster_blobcli blob1 "$@"; }

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

# A peer without a certificate, or with one of another cluster's CA, is
# refused at its TLS handshake.
out=$("$BLOBCLI" --cluster "$CLUSTER_ID" --addr "${CLUSTER_WIRE[blob1]}" --timeout-ms 3000 report 2>&1 || true)
[[ $out == *error* ]] || fail "a peer without TLS was served: $out"
"$BLOCKD" cert ca --dir "$tmp/other-ca" --cluster "$CLUSTER_ID" >/dev/null
"$BLOCKD" cert issue --ca "$tmp/other-ca" --role ctl --id blobcli --out "$tmp/other" >/dev/null
out=$("$BLOBCLI" --cluster "$CLUSTER_ID" --ca "$CLUSTER_CA" --cert "$tmp/other.pem" --key "$tmp/other.key" \
    --addr "${CLUSTER_WIRE[blob1]}" --timeout-ms 3000 report 2>&1 || true)
[[ $out == *error* ]] || fail "a certificate of another CA was served: $out"

# Raw bytes from bash: random garbage, then an oversized header.
for i in 1 2 3; do
    exec 3<>"/dev/tcp/${CLUSTER_WIRE[blob1]/://}"
    head -c 4096 /dev/urandom >&3 || true
    exec 3>&-
done

wait "$storm" || fail "storm failed: $(cat "$tmp/storm.out")"
grep -q "ok 3000 failed 0" "$tmp/storm.out" || fail "storm: $(cat "$tmp/storm.out")"
cli verify --ids "$tmp/acked" --size 4096 | grep -q "ok 3000 failed 0" || fail "verify"
cluster_running blob1 || fail "the server died"
log=$CLUSTER_DIR/blob1/blockd.log
grep -q "protocol" "$log" || grep -q "closing" "$log" || fail "no log line for bad frames"
cluster_stop_all
echo "blob bad input: all cases handled, server kept serving"
