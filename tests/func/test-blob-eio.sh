#!/usr/bin/env bash
# Defends CONTRACT.md C15 on the blob server (row 12): with the fault knob
# fault.fsync_eio_after, an fdatasync fails with EIO.  The put that
# depended on it fails with EIO, every later put fails too (never retried
# and then acknowledged), the server reports itself failed and read-only,
# and it keeps serving reads of everything acknowledged before.  After a
# restart without the fault, every acknowledged blob is there.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires curl --version

tmp=$(mktmp)
cluster_init "$tmp/c" --proxies 0 --blobs 1 --agents 0 --set blob.heartbeat_ms=100 \
    --fault fsync_eio_after=12
cluster_start
cluster_wait_ready 20
cli() { cluster_blobcli blob1 "$@"; }

: >"$tmp/acked"
first_fail=0
for id in $(seq 1 20); do
    out=$(cli put --id "$id" --size 5000 || true)
    if [[ $out == *stored_len* ]]; then
        [ $first_fail = 0 ] || fail "put $id acknowledged after put $first_fail failed"
        echo "$id" >>"$tmp/acked"
    else
        [[ $out == *status=EIO* ]] || fail "put $id: expected EIO, got: $out"
        [ $first_fail != 0 ] || first_fail=$id
    fi
done
n=$(wc -l <"$tmp/acked")
[ "$n" -gt 0 ] && [ $first_fail -gt 0 ] || fail "acked $n, first failure $first_fail"
echo "acknowledged $n puts, then put $first_fail and all later ones failed"
[ "$(cluster_field blob1 /v1/status .failed)" = true ] || fail "status does not say failed"
[ "$(cluster_field blob1 /v1/status .read_only)" = true ] || fail "status does not say read-only"
cli verify --ids "$tmp/acked" --size 5000 | grep -q "ok $n failed 0" || fail "reads after the failure"
grep -q "fdatasync failed" "$CLUSTER_DIR/blob1/blockd.log" || fail "no log line for the failure"

cluster_stop blob1 || true # a failed store's exit status is not the point here
cluster_unset blob1 fault
cluster_start
cluster_wait_ready 20
cli verify --ids "$tmp/acked" --size 5000 | grep -q "ok $n failed 0" || fail "acked blobs lost"
cli put --id 100 --size 5000 | grep -q stored_len || fail "no puts after restart"
[ "$(cluster_field blob1 /v1/status .failed)" = false ] || fail "still failed after restart"
cluster_stop_all
echo "blob fsync EIO: fail-stop, reads continue, nothing acked was lost"
