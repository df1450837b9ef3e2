#!/usr/bin/env bash
# test-qos.sh: per-volume QoS (issue 13) on a real cluster, end to end.
#   - profiles through `blockd ctl qos-profile` (a default one), volumes
#     created with a profile, with their own limits, and with neither (the
#     default); bad input is 400/404/409 naming the field, and changes
#     nothing;
#   - fio (nbd engine, two jobs each on its own NBD connection: the
#     volume's one set of buckets is shared) against two volumes at once:
#     each achieves its own limit within 10 %, and the agent's counters
#     (/metrics, /v1/status) show it throttled them;
#   - a profile changed while fio runs reaches the agent within a second
#     (no reattach, no I/O error) and the new rate holds;
#   - the proxy shows the agent's figures in the volume's JSON.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires fio --version
fio --enghelp 2>/dev/null | grep -qw nbd || skip "fio has no nbd engine"
requires jq --version
tmp=$(mktmp)
py=/usr/bin/python3

cluster_init "$tmp/c" --proxies 1 --blobs 2 --agents 1
cluster_start
cluster_wait_ready 30
ctl() { cluster_ctl "$@"; }
agent_vol() { cluster_field agent1 /v1/status ".volumes.volumes[] | select(.name == \"$1\") | $2"; }

# ---- profiles and volumes ------------------------------------------------------------
ctl qos-profile create std --default --iops 5000 >/dev/null || fail "create std"
ctl qos-profile create slow --iops 150 >/dev/null || fail "create slow"
ctl qos-profile list | grep -q "^std  *yes" || fail "std is not the default"
ctl volume create a 256M --profile slow >/dev/null || fail "create a"
ctl volume create b 256M --iops 300 --iops-burst 600 --burst-seconds 1 >/dev/null ||
    fail "create b"
ctl volume create c 64M >/dev/null || fail "create c"
ctl volume attach a agent1 >/dev/null || fail "attach a"
ctl volume attach b agent1 >/dev/null || fail "attach b"
[ "$(ctl --json volume info a | jq -r .qos.effective.iops)" = 150 ] || fail "a: not slow's 150"
[ "$(ctl --json volume info b | jq -r '.qos.profile')" = null ] || fail "b has a profile"
[ "$(ctl --json volume info c | jq -r '.qos.profile + " " + (.qos.effective.iops|tostring)')" = "std 5000" ] ||
    fail "c did not get the default profile"
echo "ok: profiles, a default, volumes with a profile, own limits, and the default"

# ---- bad input -----------------------------------------------------------------------
bad() { # CODE WORD METHOD PATH BODY: answered CODE with WORD in the message
    local out code
    out=$(cluster_curl -o - -w '\n%{http_code}' -X "$3" -H 'Content-Type: application/json' \
        --data "$5" "$(cluster_url proxy1 "$4")")
    code=$(tail -n1 <<<"$out")
    [ "$code" = "$1" ] || fail "$3 $4 $5: HTTP $code, expected $1: $out"
    grep -q -- "$2" <<<"$out" || fail "$3 $4 $5: message does not name $2: $out"
}
bad 400 limits.iops PATCH /v1/volumes/a '{"limits": {"iops": -5}}'
bad 400 limits.iops PATCH /v1/volumes/a '{"limits": {"iops": "many"}}'
bad 400 limits.iops PATCH /v1/volumes/a '{"limits": {"iops": 100000000}}'
bad 400 limits.bps PATCH /v1/volumes/a '{"limits": {"bps": 12}}'
bad 400 limits.iops_burst PATCH /v1/volumes/a '{"limits": {"iops": 100, "iops_burst": 50}}'
bad 400 limits.turbo PATCH /v1/volumes/a '{"limits": {"turbo": 1}}'
bad 400 limits.io_size POST /v1/qos-profiles '{"name": "x", "limits": {"io_size": 1000}}'
bad 404 profile PATCH /v1/volumes/a '{"profile": "nosuch"}'
bad 404 profile POST /v1/volumes '{"name": "d", "size": "64M", "profile": "nosuch"}'
bad 409 slow DELETE /v1/qos-profiles/slow ''
bad 409 std POST /v1/qos-profiles '{"name": "std", "limits": {}}'
ctl volume info d >/dev/null 2>&1 && fail "volume d was created by a bad request"
[ "$(ctl --json volume info a | jq -r '.qos.profile + " " + (.qos.limits|length|tostring)')" = "slow 0" ] ||
    fail "a bad request changed a"
echo "ok: bad input is 400/404/409 naming the field; nothing changed"

# ---- limits enforced: two volumes, two connections each ------------------------------
# run_fio VOL RW SECONDS OUT [FIO OPTION...]: QD 8 on each of two jobs (two
# NBD connections).
run_fio() {
    fio --name="$1" --ioengine=nbd --uri="$(cluster_uri "$1")" --rw="$2" --bs=4k \
        --iodepth=8 --numjobs=2 --group_reporting --size=64M --time_based \
        --runtime="$3" --output-format=json --output="$4" "${@:5}" >/dev/null 2>"$4.err" ||
        { cat "$4.err"; fail "fio on $1 failed"; }
}
# iops OUT RW: the IOPS fio measured
iops() {
    "$py" -c '
import json, sys
s = open(sys.argv[1]).read()
j = json.loads(s[s.index("{"):])["jobs"][0]
assert j["error"] == 0, j["error"]
print("%.0f" % j[sys.argv[2]]["iops"])' "$1" "$2"
}
within() { # GOT WANT PERCENT
    "$py" -c 'import sys; g, w, p = map(float, sys.argv[1:]); sys.exit(abs(g - w) > w * p / 100)' "$@"
}
# b's burst: a full bucket holds (600 - 300) * 1 s saved plus 50 ms of
# slack, spent at up to 600/s before it settles at 300: 3315 I/Os in 10 s.
# a's 150 flat (its bucket: 50 ms of slack).
run_fio a randwrite 10 "$tmp/a.json" &
fa=$!
run_fio b randwrite 10 "$tmp/b.json" &
fb=$!
wait $fa || fail "fio a"
wait $fb || fail "fio b"
ia=$(iops "$tmp/a.json" write)
ib=$(iops "$tmp/b.json" write)
echo "measured: a $ia write IOPS (limit 150), b $ib write IOPS (limit 300, burst 600 for 1 s)"
within "$ia" 150 10 || fail "a ran at $ia IOPS, limit 150"
within "$ib" 331 10 || fail "b ran at $ib IOPS, limit 300 with its burst"
# The agent lets a volume go with its last client; its series stay
# (agent.qos_stats_keep_ms), so read them there.
m=$(cluster_get agent1 /metrics)
metric() { # NAME VOLUME [MORE LABELS]: the value of that series
    awk -v want="volume=\"$2\"${3:-}" -v name="$1" \
        'index($1, name "{") == 1 && index($1, want) { print $2; f = 1 } END { exit !f }' <<<"$m"
}
d=$(metric blockd_agent_volume_delayed_total a) || fail "no delayed series for a"
[ "${d%.*}" -gt 100 ] || fail "the agent delayed $d I/Os of a"
thr=$(metric blockd_agent_volume_throttled_seconds_total b) || fail "no throttled seconds for b"
within "$thr" 9 20 || fail "b throttled for $thr s, expected about 9"
[ "$(metric blockd_agent_volume_qos_limit b ',limit="iops"')" = 300 ] ||
    fail "no blockd_agent_volume_qos_limit for b"
[ "$(metric blockd_agent_volume_ios_total b ',dir="write"')" -gt 3000 ] ||
    fail "no blockd_agent_volume_ios_total for b"
grep -q '^blockd_agent_volume_latency_seconds_bucket{.*volume="a",dir="write"' <<<"$m" ||
    fail "no latency histogram for a"
echo "ok: both limits held within 10 % over two NBD connections each; the agent counted the throttling"

# ---- a live change -------------------------------------------------------------------
# fio on a for 14 s; at 4 s the profile goes from 150 to 300.  When the
# agent applied it is the time of its log line (not of our polling, which
# pays a TLS handshake per look); the rate after it comes from fio's own
# per-second IOPS log (both jobs), from a second after the change to the
# last whole second.
now_ms() { date +%s%3N; }
log_ms() { # the wall-clock ms of the agent's last log line matching $1
    "$py" -c '
import sys, datetime
t = None
for l in open(sys.argv[1], errors="replace"):
    if sys.argv[2] in l:
        t = l.split()[0]
if t is None: sys.exit(1)
d = datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
print(int(d.timestamp() * 1000))' "$CLUSTER_DIR/agent1/blockd.log" "$1"
}
f0=$(now_ms)
run_fio a randwrite 14 "$tmp/a2.json" --write_iops_log="$tmp/a2" --log_avg_msec=1000 &
fa=$!
sleep 4
ctl qos-profile set slow --iops 300 >/dev/null || fail "set slow"
t0=$(now_ms)
wait_for 5 'log_ms "vol a: QoS limits now iops 300/"'
ta=$(log_ms "vol a: QoS limits now iops 300/")
dt=$((ta - t0))
[ "$dt" -lt 1000 ] || fail "the agent applied the change ${dt} ms after the PATCH answered"
[ "$(agent_vol a .qos.limits.iops)" = 300 ] || fail "the agent's status does not say 300"
wait $fa || fail "fio a (live change)"
rate=$("$py" - "$tmp" $((ta - f0)) <<'PY'
import glob, sys
per = {}
for f in glob.glob(sys.argv[1] + "/a2_iops.*.log"):
    for line in open(f):
        t, v = line.split(",")[:2]
        s = round(int(t) / 1000)
        per[s] = per.get(s, 0) + int(v)
after = int(sys.argv[2]) / 1000 + 2   # fio's clock starts after its connect: a margin
secs = [s for s in sorted(per) if s >= after and s <= max(per) - 1]
print("%.0f" % (sum(per[s] for s in secs) / len(secs)) if secs else 0)
PY
)
echo "measured: the agent applied the change ${dt} ms after the PATCH answered; then $rate IOPS (limit 300, fio's per-second log)"
within "$rate" 300 10 || fail "a ran at $rate IOPS after the change to 300"
echo "ok: a profile change reached the agent within a second, no reattach, no I/O error"

# ---- unset, and the proxy's view -----------------------------------------------------
ctl volume set-qos b --iops none --iops-burst none >/dev/null || fail "set-qos b none"
[ "$(ctl --json volume info b | jq -r '.qos.limited')" = false ] || fail "b still limited"
ctl volume set-qos a --profile none >/dev/null || fail "set-qos a --profile none"
ctl qos-profile rm slow | grep -q "deleted QoS profile slow" || fail "rm slow"
js=$(ctl --json volume info b)
[ "$(jq -r .qos.agent.ios.write <<<"$js")" -gt 1000 ] || fail "the proxy has no agent figures: $js"
ctl volume info a | grep -q "QOS profile: none" || fail "ctl volume info shows no QoS"
ctl volume stats b | grep -q "^write  *[1-9]" || fail "ctl volume stats shows no writes of b"
echo "ok: limits unset live, a profile removed once unused, the agent's figures on the proxy"
