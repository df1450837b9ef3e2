#!/usr/bin/env bash
# test-proxy-check.sh: the proxy's write and read paths spoken to directly
# over the wire, as an agent would, through volcli's self-checking script:
# fresh ranges read as holes; plain, two-blob and scattered writes read back
# byte for byte and map as data; an overwrite splits an extent; zeroes and
# trims; a wrong checksum (ECSUM), unaligned (EINVAL) and past-the-end
# (ERANGE) writes, plain or scattered, are refused and change nothing; an old
# generation is fenced (C10); VOL_LIST names the volume.  Run against the
# leader, then against a follower (which forwards what it must).  Then the
# attachments (README "Security"): an agent identity attaches, lists and reads
# only the volumes attached to it, read-only ones only read-only, and a
# volume attached a moment ago on the leader is found through a follower.
# Defends C7, C10, C14 and CONTRACT.md §3 (wire codec).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires curl --version
requires python3 --version
requires jq --version

tmp=$(mktmp)
cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 0 \
    --set proxy.node_timeout_ms=1500 --set proxy.election_timeout_ms=1000 \
    --set blob.heartbeat_ms=200 --set blob.segment_bytes='"32M"' --set blob.max_blob_bytes='"4M"'
cluster_start
cluster_wait_ready 30
cluster_create_volume v1 64M --attach volcli
cluster_create_volume v2 64M --attach volcli

lead=$(cluster_leader) || fail "no leader"
follower=proxy$((${lead#proxy} % 3 + 1))

out=$(cluster_volcli "$lead" check v1 2>&1) || fail "volcli check against the leader: $out"
echo "$out" | sed 's/^/leader: /'
out=$(cluster_volcli "$follower" check v2 2>&1) || fail "volcli check against a follower: $out"
echo "$out" | sed 's/^/follower: /'
# The index walk (digest, space) only on request: it runs on the event loop.
cluster_get "$lead" /v1/status | jq -e '.index | has("digest") | not' >/dev/null ||
    fail "/v1/status walks the whole index unasked"
cluster_get "$lead" "/v1/status?scan=1" |
    jq -e '.index.digest and .index.data_bytes > 0 and .index.blob_bytes >= .index.data_bytes
           and .index.space_amplification >= 1' >/dev/null ||
    fail "/v1/status?scan=1: $(cluster_get "$lead" "/v1/status?scan=1" | jq -c .index)"
# The walk ran on the proxy's scan thread, not on its event loop.
grep -qx "index-scan" /proc/"${CLUSTER_PID[$lead]}"/task/*/comm ||
    fail "no index-scan thread in $lead: the walk ran on the reactor"
echo "ok: /v1/status?scan=1 adds the digest and the space figures, walked off the reactor"

# Attachments, as the proxies enforce them for the agent volcli's
# certificate names.
cluster_create_volume other 64M --attach agent9
cluster_create_volume loose 64M --no-attach
cluster_create_volume ro 64M --attach volcli --read-only
for p in "$lead" "$follower"; do
    for v in other loose; do
        for how in rw ro; do
            if out=$(cluster_volcli "$p" attach "$v" "$how" 2>&1); then
                fail "$p let volcli attach $v ($how), which is not attached to it: $out"
            fi
            grep -q "^refused: " <<<"$out" || fail "attach $v $how on $p: $out"
        done
    done
    out=$(cluster_volcli "$p" attach ro rw 2>&1) && fail "$p attached a read-only volume read-write: $out"
    cluster_volcli "$p" attach ro ro | grep -q "^ok: attached ro ro .* read-only" ||
        fail "$p: the read-only attach of ro"
    vlist() { cluster_volcli "$p" list | tr '\n' ' '; }
    # A follower's index may be a moment behind the leader's.
    wait_for 10 '[ "$(vlist)" = "ro ro v1 v2 " ]' || fail "VOL_LIST for volcli on $p: '$(vlist)'"
done
# Reading by id, without an attach: only what is attached to volcli.
for v in other loose; do
    id=$(cluster_field leader "/v1/volumes/$v" .id)
    out=$(cluster_volcli "$p" read "$id" 2>&1) && fail "$p let volcli read $v: $out"
    grep -q "^refused: " <<<"$out" || fail "read $v on $p: $out"
done
cluster_volcli "$p" read "$(cluster_field leader /v1/volumes/v1 .id)" | grep -q "^ok" ||
    fail "volcli could not read its own v1"
grep -q 'refused the read-write VOL_ATTACH of other by agent "volcli"' \
    "$CLUSTER_DIR"/proxy*/blockd.log || fail "no log line for a refused attach"
echo "ok: volcli attaches and lists only what is attached to it, read-only as attached"
# A volume just attached on the leader: a follower finds it (it asks the
# leader when its own index does not yet say so).
cluster_create_volume fresh 64M --attach volcli
cluster_volcli "$follower" attach fresh ro | grep -q "^ok: attached" ||
    fail "a follower did not find a fresh attachment"
cluster_detach fresh
out=$(cluster_volcli "$lead" attach fresh rw 2>&1) && fail "attached a detached volume: $out"
echo "ok: attachments take effect at once through any proxy"
cluster_stop_all
echo "PASS"
