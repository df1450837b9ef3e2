#!/usr/bin/env bash
# Defends CONTRACT.md §3 "config files": every bad config stops blockd
# before any port is bound, with one line naming the file, the key path and
# what was expected, and exit status 2.
. "$(dirname "$0")/functions.sh"
set -e

tmp=$(mktmp)
port=$(free_port)

good='{
  "cluster_id": "t",
  "blob": {"id": 1, "listen": "127.0.0.1:'$port'", "data_dir": "'$tmp'/b",
           "proxies": ["127.0.0.1:1"]}
}'

# expect_error NAME TEXT NEEDLE: the config TEXT fails with a line containing NEEDLE.
expect_error() {
    local name=$1 text=$2 needle=$3
    printf '%s' "$text" >"$tmp/$name.json"
    set +e
    out=$("$BLOCKD" --role=blob --config "$tmp/$name.json" 2>&1)
    rc=$?
    set -e
    [ $rc -eq 2 ] || fail "$name: exit status $rc, expected 2 (output: $out)"
    [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || fail "$name: expected one line, got: $out"
    case "$out" in
        *"$needle"*) ;;
        *) fail "$name: expected '$needle' in: $out" ;;
    esac
    # Nothing may have been bound.
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then fail "$name: port was bound"; fi
    echo "ok: $name: $out"
}

expect_error unknown-key "${good/\"cluster_id\"/\"replicaton\": 3, \"cluster_id\"}" \
    "$tmp/unknown-key.json:2: replicaton: unknown key"
expect_error duplicate-key "${good/\"id\": 1,/\"id\": 1, \"id\": 2,}" "blob.id: duplicate key"
expect_error wrong-type "${good/\"id\": 1/\"id\": \"one\"}" "blob.id: expected an integer"
expect_error missing-key "${good/\"data_dir\": \"$tmp\/b\",/}" "blob.data_dir: required key is missing"
expect_error out-of-range "${good/127.0.0.1:$port/127.0.0.1:70000}" "blob.listen: expected an address"
expect_error trailing-garbage "$good garbage" "invalid JSON"
expect_error empty "" "empty"
expect_error not-object "[1, 2]" "expected an object"

# Missing file, a directory, and bad flags.
set +e
out=$("$BLOCKD" --role=blob --config "$tmp/nope.json" 2>&1); rc=$?
[ $rc -eq 2 ] && [[ "$out" == *"nope.json: cannot read"* ]] || fail "missing file: $rc $out"
out=$("$BLOCKD" --role=blob --config "$tmp" 2>&1); rc=$?
[ $rc -eq 2 ] && [[ "$out" == *"Is a directory"* ]] || fail "directory: $rc $out"
out=$("$BLOCKD" --role=bogus --config "$tmp/nope.json" 2>&1); rc=$?
[ $rc -eq 2 ] || fail "bad role: $rc $out"
"$BLOCKD" --version | grep -q '^blockd ' || fail "--version"
"$BLOCKD" --help | grep -q -- '--role' || fail "--help"
set -e

# A valid config passes --check.
printf '%s' "$good" >"$tmp/good.json"
"$BLOCKD" --check --config "$tmp/good.json" | grep -q valid || fail "--check on a valid config"
echo "all config error cases passed"
