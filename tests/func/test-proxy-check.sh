#!/usr/bin/env bash
# test-proxy-check.sh: the proxy's write and read paths spoken to directly
# over the wire, as an agent would, through volcli's self-checking script:
# fresh ranges read as holes; plain, two-blob and scattered writes read back
# byte for byte and map as data; an overwrite splits an extent; zeroes and
# trims; a wrong checksum (ECSUM), unaligned (EINVAL) and past-the-end
# (ERANGE) writes, plain or scattered, are refused and change nothing; an old
# generation is fenced (C10); VOL_LIST names the volume.  Run against the
# leader, then against a follower (which forwards what it must).  Defends
# C7, C10, C14 and CONTRACT.md §3 (wire codec).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster-lib.sh"
set -e
requires curl --version
requires python3 --version
requires jq --version

tmp=$(mktmp)
cluster_setup "$tmp" 3
cluster_start
vol_create v1 64M
vol_create v2 64M

la=$(leader_admin) || fail "no leader"
lead=
for i in 1 2 3; do [ "${PROXY_ADMIN[$i]}" = "$la" ] && lead=$i; done
[ -n "$lead" ] || fail "leader $la is not one of ours"
follower=$((lead % 3 + 1))

out=$(VOLCLI_PROXY=$lead vol_cli check v1 2>&1) || fail "volcli check against the leader: $out"
echo "$out" | sed 's/^/leader: /'
out=$(VOLCLI_PROXY=$follower vol_cli check v2 2>&1) || fail "volcli check against a follower: $out"
echo "$out" | sed 's/^/follower: /'
# The index walk (digest, space) only on request: it runs on the event loop.
curl -sf --max-time 5 "http://$la/v1/status" | jq -e '.index | has("digest") | not' >/dev/null ||
    fail "/v1/status walks the whole index unasked"
curl -sf --max-time 5 "http://$la/v1/status?scan=1" |
    jq -e '.index.digest and .index.data_bytes > 0 and .index.blob_bytes >= .index.data_bytes
           and .index.space_amplification >= 1' >/dev/null ||
    fail "/v1/status?scan=1: $(curl -sf "http://$la/v1/status?scan=1" | jq -c .index)"
echo "ok: /v1/status?scan=1 adds the digest and the space figures"
cluster_stop
echo "PASS"
