#!/usr/bin/env bash
# A volume is served only where it is attached (issue 12 item 3; README
# "Security"), on two real agents:
#   - an agent lists and opens only the volumes attached to it (TCP, its
#     shared Unix socket), and each attached volume gets its own socket,
#     with the owner, group and mode the config names, serving that volume
#     alone (as the default export too); another user cannot connect;
#   - `blockd ctl volume attach VOL AGENT` moves nothing that is attached
#     elsewhere (409) unless --force, which fences the old agent: its
#     connections close, its socket goes, the new agent's appears within
#     about a second, and the flushed data is there;
#   - a read-only attachment is served read-only (a write gets EPERM) and
#     VOLUME says read_only; `volume detach` removes the socket and the
#     agent lets go of the volume.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires nbdinfo --version
requires qemu-io --version
requires setpriv --version
requires /usr/bin/python3 -c 'import nbd'
tmp=$(mktmp)
chmod 755 "$tmp" # other users must reach the sockets for their modes to be what decides

cluster_init "$tmp/c" --proxies 1 --blobs 3 --agents 2 \
    --set 'agent1.nbd_volume_mode="0660"' --set 'agent1.nbd_volume_group="nogroup"'
cluster_start
cluster_wait_ready 30
cluster_create_volume a 64M
cluster_create_volume b 64M --no-attach
cluster_create_volume c 64M --read-only
p1=${CLUSTER_NBD[agent1]##*:} p2=${CLUSTER_NBD[agent2]##*:}

# ---- what an agent serves ------------------------------------------------------------
sock=$(cluster_vol_socket a)
[ "$(stat -c '%a %G %F' "$sock")" = "660 nogroup socket" ] ||
    fail "a's socket: $(stat -c '%a %G %F' "$sock")"
[ ! -e "$CLUSTER_DIR/agent1/vols/b.sock" ] || fail "b has a socket, attached to nobody"
[ ! -e "$CLUSTER_DIR/agent2/vols/a.sock" ] || fail "agent2 has a socket for agent1's volume"
nbdinfo --list "nbd://127.0.0.1:$p1" >"$tmp/list1"
grep -q '^export="a"' "$tmp/list1" && grep -q '^export="c"' "$tmp/list1" &&
    ! grep -q '^export="b"' "$tmp/list1" || fail "agent1 lists: $(grep export= "$tmp/list1")"
nbdinfo --list "nbd://127.0.0.1:$p2" >"$tmp/list2"
! grep -q '^export=' "$tmp/list2" || fail "agent2 lists: $(grep export= "$tmp/list2")"
for u in "nbd://127.0.0.1:$p1/b" "nbd://127.0.0.1:$p2/a"; do
    if nbdinfo --size "$u" 2>"$tmp/err"; then fail "$u was served"; fi
    grep -qi "unknown\|not attached\|no such" "$tmp/err" || fail "$u: $(cat "$tmp/err")"
done
echo "ok: each agent lists and opens only its own volumes"

# The volume's socket: that volume, as the default export or by name.
nbdinfo --size "nbd+unix:///?socket=$sock" | grep -qx 67108864 || fail "default export on a.sock"
nbdinfo --size "nbd+unix:///a?socket=$sock" >/dev/null || fail "a by name on a.sock"
if nbdinfo --size "nbd+unix:///c?socket=$sock" 2>/dev/null; then fail "a.sock served c"; fi
nbdinfo --list "nbd+unix:///?socket=$sock" >"$tmp/lsock"
[ "$(grep -c '^export=' "$tmp/lsock")" = 1 ] || fail "a.sock lists: $(grep export= "$tmp/lsock")"
# Its group may connect; another user may not.
setpriv --reuid=nobody --regid=nogroup --clear-groups nbdinfo --size "nbd+unix:///?socket=$sock" \
    >/dev/null || fail "a user of the socket's group could not connect"
if setpriv --reuid=daemon --regid=daemon --clear-groups \
    nbdinfo --size "nbd+unix:///?socket=$sock" 2>"$tmp/err"; then
    fail "another user connected to a.sock"
fi
grep -qi "permission denied" "$tmp/err" || fail "another user: $(cat "$tmp/err")"
echo "ok: a.sock serves a alone, to its group and no one else"

# ---- read-only ------------------------------------------------------------------------
csock=$(cluster_vol_socket c)
nbdinfo "nbd+unix:///?socket=$csock" | grep -q "is_read_only: true" || fail "c is not read-only"
if qemu-io -f raw -c "write 0 4096" "nbd+unix:///?socket=$csock" >"$tmp/qio" 2>&1 &&
    ! grep -qi "error\|denied\|read-only" "$tmp/qio"; then
    fail "a write to a read-only attachment: $(cat "$tmp/qio")"
fi
/usr/bin/python3 - "$csock" <<'PY' || fail "a raw write to c was not EPERM"
import errno, nbd, sys
h = nbd.NBD()
h.set_strict_mode(0)  # send it: the server, not libnbd, must refuse
h.connect_uri("nbd+unix:///?socket=" + sys.argv[1])
try:
    h.pwrite(b"x" * 4096, 0)
except nbd.Error as e:
    sys.exit(0 if e.errno in (errno.EPERM, "EPERM") else "errno %s" % e.errno)
sys.exit("accepted")
PY
cluster_field leader /v1/volumes/c '"\(.attached_to) \(.read_only)"' | grep -qx "agent1 true" ||
    fail "VOLUME c: $(cluster_get leader /v1/volumes/c)"
echo "ok: a read-only attachment is served read-only (EPERM) and says so"

# ---- moving a volume ------------------------------------------------------------------
# A client on agent1 writes and flushes, and keeps the connection.
/usr/bin/python3 - "$sock" >"$tmp/holder.out" 2>&1 <<'PY' &
import nbd, sys, time
h = nbd.NBD(); h.connect_uri("nbd+unix:///?socket=" + sys.argv[1])
h.pwrite(b"M" * 65536, 0); h.flush()
print("written", flush=True)
for i in range(300):
    time.sleep(0.1)
    try:
        h.pread(4096, 0)
    except nbd.Error as e:
        print("connection closed:", e, flush=True)
        sys.exit(0)
print("never closed", flush=True)
PY
holder=$!
cleanup_fn kill_pid $holder
wait_for 20 "grep -q written $tmp/holder.out"
code=$(cluster_admin POST /v1/volumes/a/attach '{"agent": "agent2"}')
[ "$code" = 409 ] || fail "attach elsewhere without force: HTTP $code"
grep -q "attached to agent agent1" "$CLUSTER_DIR/last-response" ||
    fail "409 says: $(cat "$CLUSTER_DIR/last-response")"
cluster_ctl volume attach a agent2 --force | grep -q "^a .* agent2 " || fail "forced attach"
t0=$SECONDS
sock2=$(cluster_vol_socket a agent2)
wait_for 10 "[ ! -e '$sock' ]"
wait_for 10 "grep -q 'connection closed' $tmp/holder.out"
echo "ok: moved to agent2 in $((SECONDS - t0)) s: agent1's socket and connection are gone"
wait $holder || true
/usr/bin/python3 - "$sock2" <<'PY' || fail "agent2 does not read the flushed data"
import nbd, sys
h = nbd.NBD(); h.connect_uri("nbd+unix:///?socket=" + sys.argv[1])
assert h.pread(65536, 0) == b"M" * 65536
PY
nbdinfo --size "nbd://127.0.0.1:$p1/a" 2>/dev/null && fail "agent1 still serves a"
grep -q "vol a: detached from this agent" "$CLUSTER_DIR/agent1/blockd.log" ||
    fail "agent1 did not log the detach"
echo "ok: agent2 serves the flushed data; agent1 serves a no more"

# ---- detaching --------------------------------------------------------------------------
cluster_attach b agent1
bsock=$(cluster_vol_socket b)
qemu-io -f raw -c "write -P 0x42 0 1M" "nbd+unix:///?socket=$bsock" | grep -q "^wrote" ||
    fail "qemu-io write through b.sock"
cluster_ctl volume detach b | grep -q "^b .* - " || fail "volume detach"
wait_for 10 "[ ! -e '$bsock' ]"
wait_for 20 "[ \"\$(cluster_field leader /v1/volumes/b .writer)\" = '' ]"
nbdinfo --size "nbd://127.0.0.1:$p1/b" 2>/dev/null && fail "agent1 serves a detached volume"
echo "ok: a detached volume loses its socket, and its agent lets it go"
cluster_field agent2 /v1/status '.nbd.volume_sockets | keys | join(" ")' | grep -qx "a" ||
    fail "agent2's status: $(cluster_field agent2 /v1/status .nbd.volume_sockets)"
cluster_stop_all
echo PASS
