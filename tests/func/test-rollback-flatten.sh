#!/usr/bin/env bash
# Rollback, flatten and resize through `blockd ctl`, read back through the
# agent with qemu-img compare (issue 16 items 5 and 7, C11, C12, C13):
#   - rollback is refused while the volume is attached (409), and on a
#     detached volume makes it read as the snapshot, later snapshots kept;
#   - a clone's parent snapshot cannot be deleted while the clone reads
#     through it (409 naming the clone); flatten copies what the clone
#     inherits into it at flatten_bytes_per_sec, with progress in the API,
#     while the clone is being written; afterwards the snapshot, then the
#     source volume, go (GC runs) and the clone reads the same;
#   - growing an attached volume is seen by its agent's next attach;
#   - bad input (an attached rollback, a missing snapshot, a bad name, an
#     unknown key, a flatten of a non-clone) gets 400/404/409 naming what
#     is wrong, and changes nothing.
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

cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 1 --set 'proxy.flatten_bytes_per_sec="2M"' --set proxy.gc_grace_ms=1500 --set proxy.read_timeout_ms=1000
cluster_start
cluster_wait_ready 30
uri() { cluster_uri "$1"; }
ctl() { cluster_ctl "$@"; }

# nbd_apply URI FILE SEED N: functions.sh.
same() { qemu-img compare -q -f raw -F raw "$(uri "$1")" "$2" || fail "$1 does not read as $2"; }
# writer VOL: the agent holding VOL read-write right now ("" if none).
# (Asked of the leader: a follower a heartbeat behind may not show an
# attach that has already committed, and rollback asks the leader.)
writer() { cluster_get leader "/v1/volumes/$1" | jq -r '.writer'; }
# unheld VOL: wait until no agent holds VOL read-write (the agent lets a
# volume go two seconds after its last client, once it shipped what it
# holds; VOL stays attached to it).
unheld() { wait_for 30 "[ -z \"\$(writer $1)\" ]"; }
api() { cluster_curl -o "$tmp/body" -w '%{http_code}' -X "$1" -H 'Content-Type: application/json' \
        "$(cluster_url "$(cluster_leader)" "$2")" ${3:+-d "$3"}; }
state() { ctl --json volume info "$1" | jq -c '{size, generation, usage}'; ctl --json snapshot list "$1" | jq -c '[.snapshots[].name]'; }

ctl volume create v $SIZE >/dev/null
ctl volume attach v agent1 >/dev/null
truncate -s $SIZE "$tmp/v.img"
nbd_apply "$(uri v)" "$tmp/v.img" 1 200
ctl snapshot create v s1 >/dev/null && cp "$tmp/v.img" "$tmp/s1.img"
nbd_apply "$(uri v)" "$tmp/v.img" 2 60
ctl snapshot create v s2 >/dev/null && cp "$tmp/v.img" "$tmp/s2.img"
nbd_apply "$(uri v)" "$tmp/v.img" 3 60

# ---- rollback ---------------------------------------------------------------------------
# A client holds v open: the agent keeps holding it read-write (it lets a
# volume go two seconds after its last client goes).
"$py" -c 'import nbd, sys, time; h = nbd.NBD(); h.connect_uri(sys.argv[1]); time.sleep(300)' \
    "$(uri v)" &
holder=$!
cleanup_fn kill_pid "$holder"
wait_for 20 '[ -n "$(writer v)" ]'
# The agent ships what it still caches in the background: wait until it
# holds nothing unshipped, so that only the rollback could change v below.
wait_for 60 '[ "$(cluster_field agent1 /v1/status ".volumes.dirty_bytes + .volumes.ships_in_flight")" = 0 ]'
# ... and until every proxy applied those writes: ctl reads the first
# proxy's index, which may be a follower a heartbeat behind.
cluster_wait_applied 30
before=$(state v)
if ctl volume rollback v s1 2>"$tmp/err"; then fail "rollback of an attached volume succeeded"; fi
grep -q "HTTP 409" "$tmp/err" && grep -q attached "$tmp/err" || fail "attached rollback: $(cat "$tmp/err")"
[ "$(api POST /v1/volumes/v/rollback '{"snapshot": "nope"}')" = 404 ] && grep -q nope "$tmp/body" ||
    fail "rollback to a missing snapshot: $(cat "$tmp/body")"
[ "$(api POST /v1/volumes/v/rollback '{"snapshot": "a/b"}')" = 400 ] && grep -q snapshot "$tmp/body" ||
    fail "rollback to a bad name: $(cat "$tmp/body")"
[ "$(api POST /v1/volumes/v/rollback '{"snap": "s1"}')" = 400 ] && grep -q snap "$tmp/body" ||
    fail "rollback with an unknown key: $(cat "$tmp/body")"
[ "$(state v)" = "$before" ] || fail "a refused rollback changed v: $before -> $(state v)"
same v "$tmp/v.img"
kill_pid "$holder"
unheld v
ctl volume rollback v s1 >/dev/null || fail "rollback v s1"
same v "$tmp/s1.img"
unheld v
ctl volume rollback v s2 >/dev/null || fail "rollback v s2 (a newer snapshot stays)"
same v "$tmp/s2.img"
echo "ok: rollback refused while attached; detached, v reads as s1, then as s2"

# ---- flatten ------------------------------------------------------------------------------
ctl volume clone v s2 c >/dev/null
ctl volume attach c agent1 >/dev/null
cp "$tmp/s2.img" "$tmp/c.img"
nbd_apply "$(uri c)" "$tmp/c.img" 4 30
if ctl snapshot rm v s2 2>"$tmp/err"; then fail "deleting a snapshot a clone reads through succeeded"; fi
grep -q "HTTP 409" "$tmp/err" && grep -q "clones not yet flattened: c " "$tmp/err" ||
    fail "the refusal should name clone c: $(cat "$tmp/err")"
[ "$(api POST /v1/volumes/v/flatten)" = 409 ] && grep -q "not a clone" "$tmp/body" ||
    fail "flatten of a non-clone: $(cat "$tmp/body")"
[ "$(api POST /v1/volumes/nope/flatten)" = 404 ] || fail "flatten of a missing volume"
[ "$(ctl --json volume info c | jq -r '.clone_of.snapshot')" = s2 ] || fail "c's clone_of"
ctl volume flatten c >/dev/null || fail "flatten c"
# Progress shows while the clone is written to (2 MiB/s over ~10 MiB).
seen=$(ctl --json volume info c | jq '.flatten.percent')
[ "$seen" != null ] && [ "$seen" -lt 100 ] || fail "no flatten progress in the API: $seen"
nbd_apply "$(uri c)" "$tmp/c.img" 5 30
flat() { [ "$(ctl --json volume info c | jq -c '.flatten')" = null ]; }
wait_for 120 flat
[ "$(ctl --json volume info c | jq -c '.clone_of')" = null ] || fail "c still a clone after flatten"
same c "$tmp/c.img"
ctl snapshot rm v s2 >/dev/null || fail "snapshot rm v s2 after the flatten"
same c "$tmp/c.img"
unheld v
ctl volume detach v >/dev/null
ctl volume rm v >/dev/null || fail "volume rm v"
gc_done() { [ "$(cluster_field leader /v1/status .index.gc_pending)" = 0 ]; }
wait_for 60 gc_done
same c "$tmp/c.img"
echo "ok: flatten (progress $seen% seen, racing writes) frees the snapshot; c reads the same after it, its source and GC go"

# ---- resize ------------------------------------------------------------------------------
"$py" -c 'import nbd, sys, time; h = nbd.NBD(); h.connect_uri(sys.argv[1]); time.sleep(300)' \
    "$(uri c)" &
holder=$!
cleanup_fn kill_pid "$holder"
wait_for 20 '[ -n "$(writer c)" ]'
ctl volume resize c $((2 * SIZE)) >/dev/null || fail "resize of an attached volume"
[ "$(ctl --json volume info c | jq '.size')" = $((2 * SIZE)) ] || fail "the index's size"
# The agent picking the size up live is the agent's part (README); its
# next attach, once the client is gone and it detached, must see it.
kill_pid "$holder"
unheld c
got=$("$py" -c 'import nbd, sys; h = nbd.NBD(); h.connect_uri(sys.argv[1]); print(h.get_size())' "$(uri c)")
[ "$got" = $((2 * SIZE)) ] || fail "the agent's next attach sees $got bytes"
truncate -s $((2 * SIZE)) "$tmp/c.img"
same c "$tmp/c.img"
echo "ok: a grown volume's size reaches the agent's next attach"
cluster_stop_all
echo PASS
