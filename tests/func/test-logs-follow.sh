#!/usr/bin/env bash
# Defends issue 21's "logs you can follow": with log.format json and
# debug level, one NBD write with a flush can be followed by its ids from
# the agent (ship id, the raft index of its ack) to a proxy (the same ship
# id, the blob ids it put, the raft index that committed it) to the blob
# servers (each blob id, durable), and every line of every log is one JSON
# object.  Bad --log-format values are refused before anything starts.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires jq --version
requires nbdsh --version
tmp=$(mktmp)

out=$("$BLOCKD" --log-format=yaml --role=blob --config /nonexistent 2>&1) && fail "accepted --log-format=yaml"
grep -q "log-format must be text or json" <<<"$out" || fail "bad --log-format: $out"

cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 1 --log-level debug
for name in "${CLUSTER_NAMES[@]}"; do
    f=$CLUSTER_DIR/$name/$name.json
    jq '.log.format = "json"' "$f" >"$f.new" && mv "$f.new" "$f"
done
cluster_start
cluster_wait_ready 30
cluster_create_volume vol0 64M
nbdsh -u "$(cluster_uri vol0)" -c 'h.pwrite(b"\x5a" * 65536, 1048576); h.flush()' ||
    fail "NBD write"

logs=()
for name in "${CLUSTER_NAMES[@]}"; do logs+=("$CLUSTER_DIR/$name/blockd.log"); done
# Every line is one JSON object with time, tag, level and msg.
for f in "${logs[@]}"; do
    jq -c 'select((.time and .tag and .level and .msg) | not)' "$f" >"$tmp/bad" 2>&1 || true
    [ ! -s "$tmp/bad" ] || fail "$f: lines that are not log objects: $(head -3 "$tmp/bad")"
    jq -c . "$f" >/dev/null || fail "$f is not one JSON object per line"
done

# The agent: the ship acked, with its raft index.
alog=$CLUSTER_DIR/agent1/blockd.log
wait_for 10 'jq -c "select(.vol == \"vol0\" and .ship and .raft_index and (.msg | startswith(\"acked\")))" "$alog" | grep -q ship'
read -r ship index < <(jq -r 'select(.vol == "vol0" and .ship and .raft_index and (.msg | startswith("acked")))
    | "\(.ship) \(.raft_index)"' "$alog" | tail -1)
[ -n "$ship" ] && [ "$index" -gt 0 ] || fail "no acked ship in the agent log"
# (jq -e judges only the last input line: test for any output instead.)
jq -c --arg s "$ship" 'select(.ship == $s and (.msg | startswith("ship data")))' "$alog" | grep -q . ||
    fail "the agent did not log sending ship $ship"

# A proxy: the same ship, committed at that raft index, and its blob puts.
plogs=("$CLUSTER_DIR"/proxy*/blockd.log)
jq -c --arg s "$ship" --argjson i "$index" \
    'select(.ship == $s and .raft_index == $i and .vol == "vol0" and (.msg | startswith("write committed")))' \
    "${plogs[@]}" | grep -q . || fail "no proxy line commits ship $ship at raft index $index"
blobs=$(jq -r --arg s "$ship" 'select(.ship == $s and .blob and (.msg | startswith("put "))) | .blob' \
    "${plogs[@]}" | sort -u)
[ -n "$blobs" ] || fail "no proxy line puts a blob for ship $ship"

# The blob servers: each blob durable on three of them.
blogs=("$CLUSTER_DIR"/blob*/blockd.log)
for b in $blobs; do
    n=$(jq -r --arg b "$b" 'select(.blob == $b and (.msg | endswith("durable"))) | .tag' "${blogs[@]}" |
        sort -u | wc -l)
    [ "$n" = 3 ] || fail "blob $b durable on $n blob servers, not 3"
done
echo "ok: ship $ship -> raft index $index -> blobs $(echo $blobs)"
