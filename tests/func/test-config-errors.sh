#!/usr/bin/env bash
# Defends CONTRACT.md §3 "config files": every bad config stops blockd
# before any port is bound, with one line naming the file, the key path and
# what was expected, and exit status 2.  The config's listen port is held
# by this test meanwhile: a blockd that got as far as binding it would fail
# there instead (exit 1, "Address already in use"), as the control at the
# end shows.
. "$(dirname "$0")/functions.sh"
set -e

tmp=$(mktmp)
port=$(free_port)
/usr/bin/python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
time.sleep(600)' "$port" &
holder=$!
cleanup_fn kill_pid $holder
wait_for 10 "(exec 3<>/dev/tcp/127.0.0.1/$port)"

good='{
  "cluster_id": "t",
  "insecure_plaintext": true,
  "blob": {"id": 1, "listen": "127.0.0.1:'$port'", "data_dir": "'$tmp'/b",
           "proxies": ["127.0.0.1:1"]}
}'

# expect_error NAME TEXT NEEDLE: the config TEXT fails with a line containing NEEDLE.
expect_error() {
    local name=$1 text=$2 needle=$3
    printf '%s' "$text" >"$tmp/$name.json"
    set +e
    out=$(timeout 20 "$BLOCKD" --role=blob --config "$tmp/$name.json" 2>&1)
    rc=$?
    set -e
    [ $rc -eq 2 ] || fail "$name: exit status $rc, expected 2 (output: $out)"
    [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || fail "$name: expected one line, got: $out"
    case "$out" in
        *"$needle"*) ;;
        *) fail "$name: expected '$needle' in: $out" ;;
    esac
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
# Without insecure_plaintext, TLS is required: the CA, then the certificate.
expect_error no-ca "${good/\"insecure_plaintext\": true,/}" "tls_ca_file: required"
expect_error no-cert "${good/\"insecure_plaintext\": true,/\"tls_ca_file\": \"$tmp/ca.pem\",}" \
    "blob: cert_file required"
expect_error secret-file "${good/\"insecure_plaintext\": true,/\"secret_file\": \"$tmp/s\",}" \
    "secret_file: no longer used"

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

# Control: started, the valid config gets as far as the held port and fails
# there, so the exit status 2 above was the config's, before any bind.
set +e
out=$(timeout 20 "$BLOCKD" --role=blob --config "$tmp/good.json" 2>&1); rc=$?
set -e
[ $rc -eq 1 ] && [[ $out == *"$port"* ]] || fail "valid config with its port held: exit $rc: $out"
# NBD over TLS needs TLS (the PSK file is checked at start: test_nbd_tls).
agent_conf() { # agent_conf TOP_KEYS AGENT_KEYS: an agent config with those keys added
    printf '{"cluster_id": "t", %s,\n "agent": {"id": "a1", "nbd_listen": "127.0.0.1:1",
  "proxies": ["127.0.0.1:1"], "cache_dir": "%s/c", "cert_file": "%s/a.pem",
  "key_file": "%s/a.key"%s}}' "$1" "$tmp" "$tmp" "$tmp" "$2"
}
tls="\"tls_ca_file\": \"$tmp/ca.pem\""
expect_error nbd-tls-plain "$(agent_conf '"insecure_plaintext": true' ', "nbd_tls": "require"')" \
    'needs TLS, which "insecure_plaintext": true turns off'
expect_error nbd-tls-mode "$(agent_conf "$tls" ', "nbd_tls": "maybe"')" 'agent.nbd_tls: expected'
expect_error nbd-volume-mode \
    "$(agent_conf "$tls" ", \"nbd_volume_dir\": \"$tmp/v\", \"nbd_volume_mode\": \"0999\"")" \
    "agent.nbd_volume_mode: expected an octal mode"
expect_error nbd-volume-owner "$(agent_conf "$tls" ', "nbd_volume_owner": "qemu"')" \
    "need nbd_volume_dir"
# --check warns about an NBD TCP listener off loopback without nbd_tls: require
# (a volume attached without a client would open there in plaintext).
agent_conf '"insecure_plaintext": true' '' | sed 's/127.0.0.1:1",$/0.0.0.0:10809",/' \
    >"$tmp/nbd-exposed.json"
grep -q '"nbd_listen": "0.0.0.0:10809"' "$tmp/nbd-exposed.json" || fail "nbd-exposed: sed"
out=$("$BLOCKD" --check --config "$tmp/nbd-exposed.json" 2>&1) || fail "nbd-exposed: $out"
[[ $out == *'agent[0].nbd_listen = 0.0.0.0:10809 is not on loopback and nbd_tls is not "require"'* ]] ||
    fail "nbd-exposed: no warning: $out"
echo "all config error cases passed"
