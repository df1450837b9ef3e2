#!/usr/bin/env bash
# Issue 5, F2 (CONTRACT row 3): fio randrw with verify=crc32c through the
# nbd engine while one blob server and then the Raft leader proxy are
# SIGKILLed (and later restarted): no verify error, no I/O error.  Four
# blob servers, so partitions without the killed server keep taking writes
# (a write never waits on a down server, DESIGN §4).  Also reports the
# longest I/O stall seen by fio (max completion latency).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires fio --version
fio --enghelp 2>/dev/null | grep -q nbd || skip "fio has no nbd engine"
tmp=$(mktmp)

cluster_init "$tmp/c" --proxies 3 --blobs 4 --agents 1 \
    --set agent.cache_bytes='"16M"' --set agent.flush_age_ms=200 \
    --set proxy.node_timeout_ms=1000
cluster_start
cluster_wait_ready 30
cluster_create_volume vol0 256M
uri=$(cluster_uri vol0)

fio --name=verify --ioengine=nbd --uri="$uri" --rw=randrw --rwmixread=40 --bs=4k-64k \
    --bsrange=4k-64k --size=96M --iodepth=8 --direct=1 --verify=crc32c --verify_fatal=1 \
    --verify_backlog=512 --serialize_overlap=1 --time_based=1 --runtime=25 --fsync=64 \
    --output-format=json --output="$tmp/fio.json" >"$tmp/fio.out" 2>&1 &
fiopid=$!
cleanup_fn kill_pid $fiopid
sleep 5
cluster_kill blob2
echo "killed blob2"
sleep 5
leader=$(cluster_leader)
cluster_kill "$leader"
echo "killed leader $leader"
sleep 6
cluster_start blob2
cluster_start "$leader"
echo "restarted blob2 and $leader"
wait $fiopid || { cat "$tmp/fio.out"; tail -c 3000 "$tmp/fio.json"; fail "fio failed"; }
# fio does not fail on a failed flush; the agent counts every error reply.
errs=$(cluster_get agent1 /metrics |
    awk '/^blockd_nbd_request_errors_total/ {s += $2} END {print s + 0}')
[ "$errs" = 0 ] || fail "the agent answered $errs NBD requests with an error"
python3 - "$tmp/fio.json" <<'PY'
import json, sys
t = open(sys.argv[1]).read()
d = json.loads(t[t.index("{"):])
j = d["jobs"][0]
if j["error"] != 0:
    sys.exit(f"fio error {j['error']}")
gib = (j["read"]["io_bytes"] + j["write"]["io_bytes"]) / 2**30
mx = max(j["read"]["clat_ns"]["max"], j["write"]["clat_ns"]["max"]) / 1e9
print(f"fio verify: 0 errors, {gib:.2f} GiB moved, max I/O stall {mx:.2f} s, "
      f"read {j['read']['iops']:.0f} IOPS, write {j['write']['iops']:.0f} IOPS")
PY
