#!/usr/bin/env bash
# Incremental backup through `blockd ctl` and the real NBD clients (issue
# 16 item 6, C11, C12): a full export of a snapshot and a week of daily
# diffs, imported into a new volume, compare equal with qemu-img compare
# to the source at every day; and every bad stream is refused with
# nothing partly imported: corrupt (a record's bytes flipped, found after
# earlier records were already sent), truncated, for another volume, or
# for another base.  Also: an export of a missing snapshot is a 404 naming
# it, and a shrinking or unaligned import session is refused.
#
# On the one harness (cluster.sh): 3 proxies, 3 blob servers, one agent.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires qemu-img --version
requires /usr/bin/python3 -c 'import nbd'
requires curl --version
requires jq --version
tmp=$(mktmp)
py=/usr/bin/python3
MIB=$((1024 * 1024))
SIZE=$((32 * MIB))

cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 1
cluster_start
cluster_wait_ready 30
uri() { cluster_uri "$1"; }
ctl() { cluster_ctl "$@"; }

# nbd_apply URI FILE SEED N: functions.sh.
same() { qemu-img compare -q -f raw -F raw "$(uri "$1")" "$2" || fail "$1 does not read as $2"; }
# unheld VOL: wait until no agent holds VOL read-write (an import needs
# that; the agent lets a volume go two seconds after its last client, and
# a read-only client such as qemu-img compare never takes it read-write).
unheld() { wait_for 30 "[ -z \"\$(ctl --json volume info $1 | jq -r '.writer')\" ]"; }
snapshots() { ctl --json snapshot list "$1" | jq -c '[.snapshots[] | [.name, .identity]]'; }

ctl volume create v $SIZE >/dev/null
ctl volume attach v agent1 >/dev/null
truncate -s $SIZE "$tmp/v.img"
nbd_apply "$(uri v)" "$tmp/v.img" 1 200
ctl snapshot create v d0 >/dev/null
cp "$tmp/v.img" "$tmp/d0.img"
ctl volume export v@d0 "$tmp/full.bin" 2>/dev/null || fail "export v@d0"
for day in 1 2 3 4 5 6 7; do
    nbd_apply "$(uri v)" "$tmp/v.img" $((day + 10)) 60
    ctl snapshot create v "d$day" >/dev/null
    cp "$tmp/v.img" "$tmp/d$day.img"
    ctl volume export-diff "v@d$((day - 1))" "v@d$day" "$tmp/diff$day.bin" 2>/dev/null ||
        fail "export-diff d$((day - 1)) d$day"
done
echo "ok: a full export and seven daily diffs ($(du -b "$tmp"/diff*.bin | awk '{s += $1} END {print s}') bytes of diffs)"

# ---- import them into a new volume; compare every day -----------------------------------
# Through a proxy that holds no blob ids yet, if there is one (the leader's
# tick tops up its own lease, the agent's writes the lease of the proxy it
# uses; a third has none and must ask for one on its first import write).
via=$(for n in proxy1 proxy2 proxy3; do
    [ "$(cluster_field $n /v1/status '.blob_ids_leased')" = 0 ] && echo "$n"
done | head -1)
if [ -n "$via" ]; then echo "importing through $via (no blob ids leased there yet)"
else echo "importing through any proxy (every proxy holds blob ids)"; fi
CLUSTER_CTL_VIA=$via ctl volume import "$tmp/full.bin" n 2>"$tmp/import.err" ||
    fail "import full through ${via:-any proxy}: $(tail -5 "$tmp/import.err")"
ctl volume attach n agent1 >/dev/null   # an import makes a volume attached to no agent
same n "$tmp/d0.img"
unheld n
for day in 1 2 3 4 5 6 7; do
    ctl volume import-diff "$tmp/diff$day.bin" n 2>"$tmp/import.err" ||
        fail "import-diff day $day: $(tail -5 "$tmp/import.err")"
    same n "$tmp/d$day.img"
    unheld n
done
[ "$(snapshots n)" = "$(snapshots v)" ] || fail "n's snapshots are not v's: $(snapshots n) vs $(snapshots v)"
echo "ok: the import compares equal with qemu-img every day; n's snapshots carry v's identities"

# ---- bad streams: refused, nothing partly imported ----------------------------------------
ctl volume import "$tmp/full.bin" m 2>/dev/null || fail "import full into m"
ctl volume import-diff "$tmp/diff1.bin" m 2>/dev/null || fail "import-diff d1 into m"
ctl volume attach m agent1 >/dev/null
before=$(snapshots m)
refused() { # refused WHAT FILE VOL: import-diff must fail, m unchanged
    if ctl volume import-diff "$2" "$3" 2>"$tmp/err"; then fail "$1: accepted"; fi
    grep -q "$4" "$tmp/err" || fail "$1: the error should say '$4': $(cat "$tmp/err")"
    [ "$(snapshots m)" = "$before" ] || fail "$1: m's snapshots changed"
    same m "$tmp/d1.img"
    unheld m
}
# Corrupt: one byte of the last data record (after earlier records went in).
size=$(stat -c %s "$tmp/diff2.bin")
cp "$tmp/diff2.bin" "$tmp/corrupt.bin"
printf '\xff' | dd of="$tmp/corrupt.bin" bs=1 seek=$((size - 100)) conv=notrunc status=none
refused corrupt "$tmp/corrupt.bin" m "checksum mismatch"
head -c $((size / 2)) "$tmp/diff2.bin" >"$tmp/trunc.bin"
refused truncated "$tmp/trunc.bin" m "truncated"
refused "wrong base" "$tmp/diff3.bin" m "wrong base"
# Another volume with a snapshot of the same name: its identity differs.
ctl volume create w $SIZE >/dev/null
ctl snapshot create w d1 >/dev/null
ctl snapshot create w d2 >/dev/null
ctl volume export-diff w@d1 w@d2 "$tmp/w12.bin" 2>/dev/null || fail "export-diff w"
refused "another volume" "$tmp/w12.bin" m "wrong base"
refused "a full stream" "$tmp/full.bin" m "a full stream"
head -c 100 /dev/urandom >"$tmp/noise.bin"
refused "not a stream" "$tmp/noise.bin" m "not a valid stream"
# The good diff still applies after all that.
ctl volume import-diff "$tmp/diff2.bin" m 2>/dev/null || fail "import-diff d2 into m after refusals"
same m "$tmp/d2.img"
unheld m
# A full import whose stream is corrupt leaves no volume behind.
cp "$tmp/full.bin" "$tmp/corrupt-full.bin"
printf '\x00' | dd of="$tmp/corrupt-full.bin" bs=1 seek=$(($(stat -c %s "$tmp/full.bin") - 40)) \
    conv=notrunc status=none
if ctl volume import "$tmp/corrupt-full.bin" x 2>/dev/null; then fail "a corrupt full import was accepted"; fi
if ctl volume info x >/dev/null 2>&1; then fail "a refused full import left volume x"; fi
echo "ok: corrupt, truncated, wrong-base, other-volume and non-streams are refused; nothing partly imported"

# ---- the API's own refusals ------------------------------------------------------------------
if ctl volume export v@nope "$tmp/x.bin" 2>"$tmp/err"; then fail "export of a missing snapshot"; fi
grep -q "HTTP 404" "$tmp/err" && grep -q "nope" "$tmp/err" || fail "export of a missing snapshot: $(cat "$tmp/err")"
[ ! -e "$tmp/x.bin" ] && [ ! -e "$tmp/x.bin.tmp" ] || fail "a failed export left a file"
api() { cluster_curl -o "$tmp/body" -w '%{http_code}' -X "$1" -H 'Content-Type: application/json' \
        "$(cluster_url "$(cluster_leader)" "$2")" ${3:+-d "$3"}; }
[ "$(api POST /v1/volumes/m/import '{"size": 4096}')" = 409 ] || fail "a shrinking import: $(cat "$tmp/body")"
[ "$(api POST /v1/volumes/m/import '{"size": 4097}')" = 400 ] && grep -q size "$tmp/body" ||
    fail "an unaligned import size: $(cat "$tmp/body")"
[ "$(api GET '/v1/volumes/v/diff?from=d9')" = 404 ] && grep -q from "$tmp/body" ||
    fail "diff from a missing snapshot: $(cat "$tmp/body")"
[ "$(api GET '/v1/volumes/v/data?offset=1&length=4096')" = 400 ] || fail "an unaligned read"
same m "$tmp/d2.img"
echo "ok: refusals name their field; m is unchanged"
cluster_stop_all
echo PASS
