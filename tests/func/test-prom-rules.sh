#!/usr/bin/env bash
# Defends issue 21's alert rules: conf/prometheus/blockd-rules.yml passes
# `promtool check rules`, its unit tests (blockd-rules.test.yml) pass
# `promtool test rules`, and every metric it names is exported by a
# running cluster (proxies, blob servers, an agent): a rule on a metric
# nobody exports would never fire.  The name check is shown to fail on a
# rules file naming a metric that does not exist.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires promtool --version
requires jq --version
here=$(cd "$(dirname "$0")" && pwd)
rules=$here/../../conf/prometheus/blockd-rules.yml
tmp=$(mktmp)

promtool check rules "$rules" || fail "promtool check rules"
(cd "$here" && promtool test rules blockd-rules.test.yml) || fail "promtool test rules"

cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 1
cluster_start
cluster_wait_ready 30
# The per-node gauges appear once the proxies heard the blob servers.
wait_for 20 'cluster_curl -f "$(cluster_url proxy1 /metrics)" | grep -q "^blockd_proxy_blob_server_up{"'
for name in "${CLUSTER_NAMES[@]}"; do
    cluster_curl -f "$(cluster_url "$name" /metrics)" >>"$tmp/metrics.txt" ||
        fail "no /metrics from $name"
done
grep -o '^[a-z_:][a-z0-9_:]*' "$tmp/metrics.txt" | sort -u >"$tmp/exported"

# missing RULES: the blockd_* metric names RULES uses that no process exports.
missing() {
    grep -o 'blockd_[a-z0-9_]*' "$1" | sort -u | while read -r m; do
        grep -qx "$m" "$tmp/exported" || echo "$m"
    done
}
gone=$(missing "$rules")
[ -z "$gone" ] || fail "the rules name metrics no role exports: $gone"
sed 's/blockd_blob_bad_blobs/blockd_blob_bad_blobz/' "$rules" >"$tmp/bogus.yml"
[ "$(missing "$tmp/bogus.yml")" = blockd_blob_bad_blobz ] || fail "the name check misses a bogus metric"
echo "ok: $(grep -c 'alert:' "$rules") alerts, $(grep -c 'record:' "$rules") recording rules"
