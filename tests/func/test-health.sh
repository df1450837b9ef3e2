#!/usr/bin/env bash
# Defends issue 21's "health as data" and C17 (bounded answers): GET
# /v1/health names what is wrong, since when, and what to do, and answers
# quickly with what is known: healthy; with a blob server down (degraded);
# with half the blob servers gone (at risk); during a leader election;
# with no leader at all (the index marked not current); and a missing or
# wrong token is 401 at once.  `blockd ctl health` prints it (exit 0) and
# --json gives the server's JSON.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires jq --version
tmp=$(mktmp)

cluster_init "$tmp/c" --proxies 3 --blobs 4 --agents 0 \
    --set proxy.node_timeout_ms=1500 --set proxy.replace_after_ms=600000
cluster_start
cluster_wait_ready 30

# health NAME: /v1/health of NAME, which must answer within 2 s.
health() {
    local t0=$SECONDS out
    out=$(CLUSTER_HTTP_TIMEOUT=2 cluster_get "$1" /v1/health) ||
        fail "/v1/health of $1 did not answer in time"
    [ $((SECONDS - t0)) -le 2 ] || fail "/v1/health of $1 took $((SECONDS - t0)) s"
    echo "$out"
}
# codes JSON: the failing codes, space-separated.
codes() { jq -r '[.checks[].code] | join(" ")' <<<"$1"; }

# Healthy: every check passes, and every input says where it came from.
# (The answer that said HEALTH_OK is the one checked: right after start a
# loaded machine can delay a Raft round past what counts as reachable, and
# a second call may briefly say so.)
js=
wait_for 20 'js=$(health leader); [ "$(jq -r .status <<<"$js")" = HEALTH_OK ]' ||
    fail "not HEALTH_OK: $(health leader)"
[ "$(jq -r .state <<<"$js")" = ok ] || fail "state: $js"
[ "$(jq -r '.inputs.partitions.current' <<<"$js")" = true ] || fail "partitions not current: $js"
[ "$(jq -r '.inputs.partitions.by_replicas_up[3] > 0' <<<"$js")" = true ] || fail "no partitions: $js"
[ "$(jq -r '.inputs.agent_journals.available' <<<"$js")" = false ] || fail "journals: $js"
for name in proxy1 proxy2 proxy3; do
    wait_for 20 "[ \"\$(health $name | jq -r .status)\" = HEALTH_OK ]"
done

# Tokens: none or a wrong one is 401, quickly; the read token may read.
code=$(TOKEN= cluster_curl -o /dev/null -w '%{http_code}' "$(cluster_url proxy1 /v1/health)")
[ "$code" = 401 ] || fail "no token: $code"
echo wrong-token-0123456789 >"$tmp/wrong"
code=$(TOKEN=$tmp/wrong cluster_curl -o /dev/null -w '%{http_code}' "$(cluster_url proxy1 /v1/health)")
[ "$code" = 401 ] || fail "wrong token: $code"
code=$(TOKEN=$CLUSTER_READ_TOKEN_FILE cluster_curl -o /dev/null -w '%{http_code}' \
    "$(cluster_url proxy1 /v1/health)")
[ "$code" = 200 ] || fail "read token: $code"

# The ctl prints it for people and passes the JSON on for scripts.
out=$(cluster_ctl health) || fail "ctl health: $out"
grep -q "HEALTH_OK" <<<"$out" || fail "ctl health: $out"
cluster_ctl health --json | jq -e '.status == "HEALTH_OK"' >/dev/null || fail "ctl health --json"

# A quick command prints no progress: its error is still one line.
cluster_ctl volume create hv 64M >/dev/null || fail "ctl volume create"
if cluster_ctl volume resize hv 16M 2>"$tmp/err"; then fail "shrink accepted"; fi
[ "$(wc -l <"$tmp/err")" = 1 ] && grep -q "HTTP 409" "$tmp/err" || fail "shrink error: $(cat "$tmp/err")"

# One blob server down: degraded, with since when and what to do.
t_stop=$(date +%s)
cluster_stop blob1
wait_for 20 '[[ " $(codes "$(health leader)") " == *" BLOB_SERVER_DOWN "* ]]' ||
    fail "blob1 down not reported: $(health leader)"
js=$(health leader)
[ "$(jq -r .state <<<"$js")" = degraded ] || fail "one blob down is not degraded: $js"
[[ " $(codes "$js") " == *" PARTITION_DEGRADED "* ]] || fail "no PARTITION_DEGRADED: $js"
since=$(jq -r '.checks[] | select(.code=="BLOB_SERVER_DOWN") | .since_unix_ms' <<<"$js")
[ $((since / 1000)) -ge $((t_stop - 2)) ] && [ $((since / 1000)) -le $(date +%s) ] ||
    fail "since $since is not when blob1 stopped ($t_stop)"
jq -e '.checks[] | select(.code=="BLOB_SERVER_DOWN") | .action | length > 10' <<<"$js" >/dev/null ||
    fail "no action: $js"
# Down, with the age of the last heartbeat (a closed link marks a server
# down before node_timeout_ms runs out, so the age may be below it).
jq -e '.inputs.blob_servers.nodes[] | select(.id==11) | .up == false and .age_ms > 0' \
    <<<"$js" >/dev/null || fail "blob1's input is not marked down with its age: $js"
out=$(cluster_ctl health)
grep -q "BLOB_SERVER_DOWN" <<<"$out" || fail "ctl health: $out"

# Half the blob servers gone: at risk, and still a quick answer.
cluster_stop blob2
wait_for 20 '[[ " $(codes "$(health leader)") " == *" PARTITION_AT_RISK "* ]]' ||
    fail "partitions at risk not reported: $(health leader)"
js=$(health leader)
[ "$(jq -r .state <<<"$js")" = "at risk" ] || fail "state with half the blobs down: $js"
jq -e '.checks[] | select(.code=="BLOB_SERVER_DOWN") | .severity == "error"' <<<"$js" >/dev/null ||
    fail "half the blob servers down is not an error: $js"

# During an election: kill the leader, and ask the others at once and
# while they elect; every answer is quick and says what it knows.
leader=$(cluster_leader)
cluster_kill "$leader"
for i in 1 2 3 4 5 6 7 8 9 10; do
    for name in proxy1 proxy2 proxy3; do
        [ "$name" = "$leader" ] && continue
        health $name | jq -e '.status | startswith("HEALTH_")' >/dev/null || fail "$name during election"
    done
    sleep 0.3
done

# No leader at all: one proxy left; it says so and marks the index stale.
others=()
for name in proxy1 proxy2 proxy3; do [ "$name" = "$leader" ] || others+=("$name"); done
other=${others[0]}
cluster_kill "${others[1]}"
wait_for 20 '[[ " $(codes "$(health '"$other"')") " == *" RAFT_NO_LEADER "* ]]' ||
    fail "no leader not reported: $(health $other)"
js=$(health "$other")
[ "$(jq -r '.inputs.partitions.current' <<<"$js")" = false ] || fail "stale index shown as current: $js"
[ "$(jq -r '.inputs.index.current' <<<"$js")" = false ] || fail "stale index shown as current: $js"
jq -e '.checks[] | select(.code=="RAFT_QUORUM_AT_RISK")' <<<"$js" >/dev/null ||
    fail "quorum loss not reported: $js"
cluster_ctl health >/dev/null || fail "ctl health with no leader"
# A command that waits on the cluster shows its progress (off a terminal:
# a line every 5 s), then the error, and never hangs.
t0=$SECONDS
if cluster_ctl snapshot create hv s1 2>"$tmp/err"; then fail "snapshot without a leader"; fi
grep -q "snapshot create hv/s1: still waiting after" "$tmp/err" || fail "no progress: $(cat "$tmp/err")"
grep -q "HTTP 503" "$tmp/err" || fail "no leader is not 503: $(cat "$tmp/err")"
[ $((SECONDS - t0)) -lt 40 ] || fail "ctl waited $((SECONDS - t0)) s"
echo "ok"
