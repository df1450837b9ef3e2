#!/usr/bin/env bash
# Defends issue 21's status page: GET / on a proxy serves one
# self-contained page (no external assets, public: it holds no data) that,
# loaded in headless Chromium with the read token in its #token= fragment,
# shows the cluster OK when healthy and degraded, naming the down blob
# server, when one is stopped, and at risk, with the index flagged as
# possibly stale, when no leader is left; without a token, or with a wrong
# one, it says so instead of showing data.  Screenshots go to the test log
# directory (meson-logs/status-page/).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires jq --version
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || skip "chromium is not installed (scripts/deps installs it)"
tmp=$(mktmp)
shots=${BUILDDIR:-$tmp}/meson-logs/status-page
mkdir -p "$shots"

cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 0 \
    --set proxy.node_timeout_ms=1500 --set proxy.replace_after_ms=600000
cluster_start
cluster_wait_ready 30
cluster_create_volume vol0 64M --attach volcli  # written by volcli below
cluster_vol_write vol0 7 4 >/dev/null   # some I/O for the charts (through proxy1)

# The page: HTML, without a token, and no external assets.
page=$(TOKEN= cluster_curl -f "$(cluster_url proxy1 /)") || fail "GET / without a token"
grep -q '<title>blockd status</title>' <<<"$page" || fail "not the status page"
if grep -Eq '(src|href)="(https?:)?//' <<<"$page"; then fail "the page loads external assets"; fi

# browse NAME [FRAGMENT]: load proxy1's page in a fresh headless Chromium,
# let its scripts poll, print the DOM (kept as NAME.html) and save NAME.png.
browse() {
    local name=$1 frag=${2-} profile
    profile=$(mktemp -d "$tmp/chrome-XXXX")
    local flags=(--headless --no-sandbox --disable-gpu --disable-background-networking
                 --disable-component-update --disable-sync --no-first-run
                 --disable-dev-shm-usage --ignore-certificate-errors
                 --user-data-dir="$profile" --window-size=1280,1600 --virtual-time-budget=6000)
    local url
    url=$(cluster_url proxy1 "/$frag")
    timeout 60 "$browser" "${flags[@]}" --screenshot="$shots/$name.png" "$url" \
        >"$tmp/$name.shot.log" 2>&1 || fail "chromium screenshot $name: $(tail -5 "$tmp/$name.shot.log")"
    timeout 60 "$browser" "${flags[@]}" --dump-dom "$url" >"$shots/$name.html" 2>"$tmp/$name.dom.log" ||
        fail "chromium dump-dom $name: $(tail -5 "$tmp/$name.dom.log")"
    cat "$shots/$name.html"
}
# browse_until NAME FRAGMENT PATTERN: browse until the DOM matches PATTERN
# (grep -E), at most 3 loads: a load under a busy machine may end before
# the page's first poll answered; the last DOM is printed either way.
browse_until() {
    local dom i
    for i in 1 2 3; do
        dom=$(browse "$1" "$2")
        grep -Eq "$3" <<<"$dom" && break
    done
    echo "$dom"
}
tok=$(<"$CLUSTER_READ_TOKEN_FILE")

# Healthy.
wait_for 20 '[ "$(cluster_field proxy1 /v1/health .status)" = HEALTH_OK ]'
dom=$(browse_until healthy "#token=$tok" '<td>vol0</td>')
grep -q 'id="health" data-state="ok"' <<<"$dom" || fail "healthy page is not OK: $(grep -o 'id="health"[^<]*' <<<"$dom")"
grep -q 'vol0' <<<"$dom" || fail "the volume is not listed"
grep -q '<svg class="spark"' <<<"$dom" || fail "no I/O charts for vol0"
grep -q 'Every partition has 3 replicas up\|every partition has 3 replicas up' <<<"$dom" ||
    fail "partitions section: $(grep -o 's-parts.\{0,300\}' <<<"$dom")"

# No token, and a wrong one: no data, and the page says why.
dom=$(browse no-token "")
grep -q 'id="health" data-state="unknown"' <<<"$dom" || fail "page without a token shows a state"
grep -q 'paste the read token' <<<"$dom" || fail "page without a token does not ask for it"
dom=$(browse_until wrong-token "#token=wrong-token-0123456789" 'the token was refused')
grep -q 'the token was refused (HTTP 401)' <<<"$dom" || fail "wrong token not reported"
grep -q 'id="health" data-state="unknown"' <<<"$dom" || fail "wrong token shows a state"

# One blob server stopped: degraded, naming it.
cluster_stop blob2
wait_for 20 '[ "$(cluster_field proxy1 /v1/health .state)" = degraded ]'
dom=$(browse_until degraded "#token=$tok" 'id="health" data-state="degraded"')
grep -q 'id="health" data-state="degraded"' <<<"$dom" ||
    fail "degraded state not shown: $(grep -o 'id="health"[^<]*' <<<"$dom")"
grep -q 'BLOB_SERVER_DOWN' <<<"$dom" || fail "BLOB_SERVER_DOWN not shown"
grep -q 'PARTITION_DEGRADED' <<<"$dom" || fail "PARTITION_DEGRADED not shown"
grep -q '<span class="down">down</span>' <<<"$dom" || fail "blob2 not shown down"
grep -q 'of 3</td>' <<<"$dom" || fail "partitions with 2 of 3 replicas not listed"
# No leader: only proxy1 left.  The page still loads at once, says the
# cluster is at risk and that what it shows of the index may be stale.
cluster_kill proxy2
cluster_kill proxy3
wait_for 30 '[ "$(cluster_field proxy1 /v1/health .inputs.index.current)" = false ]'
dom=$(browse_until no-leader "#token=$tok" 'id="health" data-state="at risk"')
grep -q 'id="health" data-state="at risk"' <<<"$dom" || fail "no leader is not at risk"
grep -q 'RAFT_NO_LEADER' <<<"$dom" || fail "RAFT_NO_LEADER not shown"
grep -q 'This proxy knows no leader: index figures are as of Raft index' <<<"$dom" ||
    fail "stale index not flagged"
for f in healthy no-token wrong-token degraded no-leader; do
    [ -s "$shots/$f.png" ] || fail "no screenshot $f.png"
done
echo "screenshots: $shots"
