#!/usr/bin/env bash
# Issue 6 end to end: ./scripts/quickstart brings up the 7-process local
# cluster, the admin API answers every endpoint with the right status codes
# (CONTRACT.md §3 admin HTTP JSON), `blockd ctl` works against it, data
# written over NBD survives `quickstart stop` and a second start, and stop
# leaves no process behind.  Uses quickstart's fixed ports (conf/local), so
# it skips if something already listens there.
. "$(dirname "$0")/functions.sh"
set -e
requires nbdcopy --version
requires curl --version
requires nbdsh --version
requires nbdinfo --version

for p in 7101 7102 7103 7201 7202 7203 8101 8102 8103 8201 8202 8203 8301 10809; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        skip "port $p is in use (a quickstart cluster is running?)"
    fi
done

tmp=$(mktmp)
export BLOCKD_DATA=$tmp/data
qs="$SRCDIR/scripts/quickstart"
cleanup_fn "$qs" stop '>/dev/null 2>&1'
ctl() { "$BLOCKD" ctl "$@"; }
uri=nbd://127.0.0.1:10809/vol0
tok=$(cat "$BLOCKD_DATA/admin.token" 2>/dev/null || true)

timeout 180 "$qs" --detach >"$tmp/qs1.log" 2>&1 || { cat "$tmp/qs1.log"; fail "quickstart failed"; }
grep -q "NBD URI:  $uri" "$tmp/qs1.log" || fail "quickstart did not print the URI"
# vol0 is attached to the agent, which gives it its own socket.
sock=$BLOCKD_DATA/vols/vol0.sock
grep -q "vol0's socket:  $sock" "$tmp/qs1.log" || fail "quickstart did not print vol0's socket"
nbdinfo --size "nbd+unix:///?socket=$sock" | grep -qx 1073741824 || fail "vol0's own socket"
tok=$(cat "$BLOCKD_DATA/admin.token")
[ "$(stat -c %a "$BLOCKD_DATA/admin.token")" = 600 ] || fail "admin token not 0600"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d["processes"])==7
for p in d["processes"]: assert p["pid"] and p["command"] and p["config"]' "$BLOCKD_DATA/cluster.json" ||
    fail "cluster.json is incomplete"

# Running it again while it runs is safe and starts nothing new.
timeout 120 "$qs" --detach >"$tmp/qs2.log" 2>&1 || fail "second quickstart failed"
! grep -q "started" "$tmp/qs2.log" || fail "second quickstart started processes again"

# ---- data over NBD ------------------------------------------------------------
head -c 32M /dev/urandom >"$tmp/data.bin"
nbdcopy --flush "$tmp/data.bin" "$uri"
sum1=$(nbdcopy "$uri" - | head -c 32M | md5sum | cut -d' ' -f1)
[ "$sum1" = "$(md5sum <"$tmp/data.bin" | cut -d' ' -f1)" ] || fail "read back differs"

# ---- the CLI ------------------------------------------------------------------
ctl volume create cli-vol 64M | grep -q cli-vol || fail "ctl volume create"
ctl volume list | grep -q vol0 || fail "ctl volume list"
ctl --json volume info cli-vol | grep -q '"size":[[:space:]]*67108864' || fail "ctl info --json"
ctl volume resize cli-vol 128M | grep -q "128 MiB" || fail "ctl resize"
if ctl volume resize cli-vol 64M 2>"$tmp/err"; then fail "shrink accepted"; fi
[ "$(wc -l <"$tmp/err")" = 1 ] && grep -q "HTTP 409" "$tmp/err" || fail "shrink error: $(cat "$tmp/err")"
if ctl volume create cli-vol 64M 2>"$tmp/err"; then fail "duplicate create accepted"; fi
grep -q "HTTP 409" "$tmp/err" || fail "duplicate create: $(cat "$tmp/err")"
if ctl volume info nope 2>"$tmp/err"; then fail "info of a missing volume"; fi
grep -q "HTTP 404" "$tmp/err" || fail "missing volume: $(cat "$tmp/err")"
if ctl volume create bad 12X 2>/dev/null; then fail "bad size accepted"; fi
ctl volume rm cli-vol | grep -q deleted || fail "ctl rm"
ctl cluster status | grep -q "leader" || fail "ctl cluster status"
if BLOCKD_TOKEN=wrong ctl --token-file /dev/null volume create x 4096 2>"$tmp/err"; then
    fail "wrong token accepted"
fi

# ---- the admin API, code by code -----------------------------------------------
api=127.0.0.1:8102 # a follower or the leader: any proxy answers
code() { # code METHOD PATH [BODY] [extra curl args...]
    local m=$1 p=$2 b=${3:-}
    shift 3 2>/dev/null || shift $#
    curl -s --cacert "$ca" -o "$tmp/body" -w '%{http_code}' -X "$m" "$@" ${b:+--data-binary "$b"} \
        "https://$api$p"
}
ca=$BLOCKD_DATA/tls/ca/ca.pem
auth=(-H "Authorization: Bearer $tok" -H "Content-Type: application/json")
rd=(-H "Authorization: Bearer $tok")
expect() { # expect CODE METHOD PATH BODY [curl args...]
    local want=$1
    shift
    local got
    got=$(code "$@")
    [ "$got" = "$want" ] || fail "$2 $3 ${4:-}: HTTP $got, expected $want ($(cat "$tmp/body"))"
}
# HTTPS only, a token for every call but /metrics and /healthz (issue 12).
expect 401 GET /v1/volumes ""
expect 200 GET /healthz ""
plain=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$api/healthz" || true)
[ "$plain" != 200 ] || fail "the admin API answered plain HTTP"
expect 200 GET /v1/status "" "${rd[@]}"
grep -q '"raft"' "$tmp/body" || fail "status has no raft section"
expect 200 GET /v1/cluster "" "${rd[@]}"
expect 200 GET /v1/volumes "" "${rd[@]}"
expect 200 GET /metrics ""
grep -q '^blockd_raft_term' "$tmp/body" || fail "metrics have no raft term"
! grep -q "$tok" "$tmp/body" || fail "the token appears in /metrics"
expect 201 POST /v1/volumes '{"name": "api-1", "size": "1G"}' "${auth[@]}"
grep -q '"name":[[:space:]]*"api-1"' "$tmp/body" || fail "create body"
expect 200 GET /v1/volumes/api-1 "" "${rd[@]}"
expect 409 POST /v1/volumes '{"name": "api-1", "size": 4096}' "${auth[@]}"
expect 400 POST /v1/volumes '{"name": "api-2", "size": 4097}' "${auth[@]}"
grep -q size "$tmp/body" || fail "400 does not name the field"
expect 400 POST /v1/volumes '{"name": "api-2", "size": 1.5}' "${auth[@]}"
expect 400 POST /v1/volumes '{"name": "api-2", "size": -4096}' "${auth[@]}"
expect 400 POST /v1/volumes '{"name": "api-2", "size": 1e400}' "${auth[@]}"
expect 400 POST /v1/volumes '{"name": "api-2", "size": "10G", "extra": 1}' "${auth[@]}"
expect 400 POST /v1/volumes '{"name": "api-2", "name": "x", "size": 4096}' "${auth[@]}"
expect 400 POST /v1/volumes '{"name": "a/b", "size": 4096}' "${auth[@]}"
expect 400 POST /v1/volumes '{"name": "..", "size": 4096}' "${auth[@]}"
expect 400 POST /v1/volumes '{"name": "x\u0000y", "size": 4096}' "${auth[@]}"
expect 400 POST /v1/volumes '{"name": null, "size": 4096}' "${auth[@]}"
expect 400 POST /v1/volumes "{\"name\": \"$(printf 'n%.0s' $(seq 1 256))\", \"size\": 4096}" "${auth[@]}"
expect 400 POST /v1/volumes '{"name": "api-2", "size": 0}' "${auth[@]}"
expect 400 POST /v1/volumes '{"name": "api-2",' "${auth[@]}"
expect 400 POST /v1/volumes "$(printf '[%.0s' $(seq 1 100))" "${auth[@]}"
expect 401 POST /v1/volumes '{"name": "api-3", "size": 4096}' -H "Content-Type: application/json"
expect 401 POST /v1/volumes '{"name": "api-3", "size": 4096}' -H "Authorization: Bearer nope" -H "Content-Type: application/json"
expect 401 POST "/v1/volumes?token=$tok" '{"name": "api-3", "size": 4096}' -H "Content-Type: application/json"
expect 415 POST /v1/volumes '{"name": "api-3", "size": 4096}' -H "Authorization: Bearer $tok" -H "Content-Type: text/plain"
head -c 70000 /dev/zero | tr '\0' ' ' >"$tmp/big"
got=$(curl -s --cacert "$ca" -o /dev/null -w '%{http_code}' -X POST "${auth[@]}" --data-binary @"$tmp/big" "https://$api/v1/volumes")
[ "$got" = 413 ] || fail "oversized body: HTTP $got"
expect 404 GET /v1/volumes/nope "" "${rd[@]}"
expect 404 GET /v1/nothing "" "${rd[@]}"
expect 405 PUT /v1/volumes '{}' "${auth[@]}"
expect 200 PATCH /v1/volumes/api-1 '{"size": "2G"}' "${auth[@]}"
expect 409 PATCH /v1/volumes/api-1 '{"size": 4096}' "${auth[@]}"
expect 201 POST /v1/volumes/api-1/snapshots '{"name": "s1"}' "${auth[@]}"
expect 200 GET /v1/volumes/api-1/snapshots "" "${rd[@]}"
grep -q '"s1"' "$tmp/body" || fail "snapshot not listed"
expect 201 POST /v1/volumes '{"name": "api-clone", "snapshot": {"volume": "api-1", "name": "s1"}}' "${auth[@]}"
expect 204 DELETE /v1/volumes/api-clone "" "${auth[@]}"
expect 204 DELETE /v1/volumes/api-1/snapshots/s1 "" "${auth[@]}"
# Attachments (README "Security"): the agent serves a volume only once it
# is attached to it; attaching it elsewhere is a conflict unless forced;
# an attached volume cannot be deleted.
expect 201 POST /v1/volumes '{"name": "held", "size": "64M"}' "${auth[@]}"
if nbdinfo --size nbd://127.0.0.1:10809/held >/dev/null 2>&1; then
    fail "the agent served a volume attached to no agent"
fi
expect 400 POST /v1/volumes/held/attach '{"agent": "a/b"}' "${auth[@]}"
expect 400 POST /v1/volumes/held/attach '{"agent": "local-agent", "read_only": 1}' "${auth[@]}"
expect 400 POST /v1/volumes/held/attach '{"agent": "local-agent", "extra": 1}' "${auth[@]}"
expect 404 POST /v1/volumes/nope/attach '{"agent": "local-agent"}' "${auth[@]}"
expect 200 POST /v1/volumes/held/attach '{"agent": "local-agent"}' "${auth[@]}"
grep -q '"attached_to":[[:space:]]*"local-agent"' "$tmp/body" || fail "attach body: $(cat "$tmp/body")"
expect 409 POST /v1/volumes/held/attach '{"agent": "elsewhere"}' "${auth[@]}"
grep -q "attached to agent local-agent" "$tmp/body" || fail "409 does not say where: $(cat "$tmp/body")"
nbdsh -u nbd://127.0.0.1:10809/held -c 'import time; time.sleep(20)' &
holder=$!
cleanup_fn kill_pid $holder
wait_for 15 "curl -s --cacert '$ca' -H 'Authorization: Bearer $tok' https://$api/v1/volumes/held | grep -q '\"writer\":[[:space:]]*\"local-agent\"'"
expect 409 DELETE /v1/volumes/held "" "${auth[@]}"
kill $holder; wait $holder 2>/dev/null || true
expect 200 DELETE "/v1/volumes/held/attach?force=1" "" "${auth[@]}"
grep -q '"attached_to":[[:space:]]*""' "$tmp/body" || fail "detach body: $(cat "$tmp/body")"
expect 204 DELETE /v1/volumes/held "" "${auth[@]}"
expect 204 DELETE /v1/volumes/api-1 "" "${auth[@]}"
expect 404 DELETE /v1/volumes/api-1 "" "${auth[@]}"

# No leader: with two of three proxies stopped a mutation is 503.
pid_of() { python3 -c 'import json,sys; print([p["pid"] for p in json.load(open(sys.argv[1]))["processes"] if p["name"]==sys.argv[2]][0])' "$BLOCKD_DATA/cluster.json" "$1"; }
kill -STOP "$(pid_of proxy1)" "$(pid_of proxy3)"
expect 503 POST /v1/volumes '{"name": "api-4", "size": 4096}' "${auth[@]}" --max-time 30
kill -CONT "$(pid_of proxy1)" "$(pid_of proxy3)"

# ---- stop, start again, the data is still there -----------------------------------
pids=$(python3 -c 'import json,sys; print(" ".join(str(p["pid"]) for p in json.load(open(sys.argv[1]))["processes"]))' "$BLOCKD_DATA/cluster.json")
timeout 120 "$qs" stop >/dev/null
for p in $pids; do
    # A process that just exited may linger a moment as a zombie of init.
    wait_for 5 "! kill -0 $p 2>/dev/null || grep -q '^State:.*Z' /proc/$p/status"
done
timeout 180 "$qs" --detach >"$tmp/qs3.log" 2>&1 || { cat "$tmp/qs3.log"; fail "restart failed"; }
sum2=$(nbdcopy "$uri" - | head -c 32M | md5sum | cut -d' ' -f1)
[ "$sum2" = "$sum1" ] || fail "data changed across stop/start"
"$qs" status | grep -q "agent: running" || fail "quickstart status"
echo "quickstart up, API, CLI, stop and up again: all good"
