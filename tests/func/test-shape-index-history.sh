#!/usr/bin/env bash
# test-shape-index-history.sh: a proxy whose index has applied raft entries
# but whose raft log is empty (a restored or copied index directory, a
# wiped raft directory) refuses to start, saying why, and changes nothing;
# before this it started, bootstrapped a log from 1 and answered its first
# commands with HTTP 500 (apply skipped every entry up to the index's
# applied one).  With its own raft directory back it starts and serves;
# with neither (a fresh proxy) it catches up from the others (issue 15).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires jq --version

tmp=$(mktmp)
cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 0 \
    --set proxy.node_timeout_ms=1500 --set proxy.election_timeout_ms=1000 \
    --set blob.heartbeat_ms=200 --set blob.segment_bytes='"32M"' --set blob.max_blob_bytes='"4M"'
cluster_start
cluster_wait_ready 30
cluster_create_volume v1 64M --attach volcli
cluster_vol_write v1 31 4
cluster_wait_applied 30

d=$CLUSTER_DIR/proxy3/data
cluster_stop proxy3 || fail "proxy3 did not stop cleanly"
applied=$(cluster_field leader /v1/status .index.applied_index)
mv "$d/raft" "$tmp/raft.away"

# The index without its log: refused at start, with the reason.
rc=0
cluster_exec proxy3 timeout 60 "$BLOCKD" --role=proxy --config "$CLUSTER_DIR/proxy3/proxy3.json" \
    >"$tmp/refused.out" 2>&1 || rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "proxy3 over an index without its raft log: exit $rc"
cat "$tmp/refused.out" "$d/../blockd.log" 2>/dev/null | grep -q "raft log in .* is empty: the index does not belong to this log" ||
    fail "no clear refusal (exit $rc): $(tail -n 5 "$tmp/refused.out")"
echo "ok: refused at start (exit $rc): $(grep -o 'the index has applied.*log' "$tmp/refused.out" "$d/../blockd.log" 2>/dev/null | head -n 1)"
# Nothing written: the directory is still empty of raft state.
! ls "$d/raft"/seg-* "$d/raft"/snap-* >/dev/null 2>&1 || fail "the refused start wrote a raft log"

# Its own raft directory back: it starts, serves and catches up.
rm -rf "$d/raft"
mv "$tmp/raft.away" "$d/raft"
cluster_start proxy3
cluster_wait_ready 30
cluster_vol_write v1 32 4 4
cluster_wait_applied 30
a3=$(cluster_field proxy3 /v1/status .index.applied_index)
[ "$a3" -gt "$applied" ] || fail "proxy3 did not apply anything new ($applied -> $a3)"
echo "ok: with its raft log back, proxy3 applies again ($applied -> $a3)"

# Neither index nor log (what the refusal advises): it starts empty and
# catches up from the others.
cluster_stop proxy3 || fail "proxy3 did not stop cleanly"
rm -rf "$d/raft" "$d/index"
cluster_start proxy3
cluster_wait_ready 30
cluster_wait_applied 60
cluster_field proxy3 /v1/volumes/v1 .name | grep -qx v1 || fail "a fresh proxy3 does not know v1"
echo "ok: a fresh proxy3 caught up ($(cluster_field proxy3 /v1/status .index.applied_index) applied)"
cluster_vol_verify v1 31 4
cluster_vol_verify v1 32 4 4
cluster_stop_all
echo "PASS"
