#!/usr/bin/env bash
# Issue 18 item 3 (CONTRACT C1, C4, C5, C14, C18): the control plane down.
# Every proxy is stopped while an attached volume is in use.
#   A. For less than io_timeout_ms (10 s of 30 s; the proxies SIGKILLed
#      with ships in flight, so the volume is re-attaching): fio randrw with
#      verify=crc32c runs through the outage (reads of what it wrote before
#      stall until the proxies return, within the timeout, and must not
#      fail); a client connected before it
#      (a VM keeps its connection) reads data still in the journal and
#      writes and reads back new data while the proxies are down, a new
#      connection made during the outage is served too, and the first
#      issues a flush that completes when they return; then everything
#      ships (dirty bytes reach 0) and no request got an error.
#   B. For longer than io_timeout_ms: a read of data only the cluster
#      holds and a FLUSH both fail with EIO, not before io_timeout_ms - 1 s
#      and within io_timeout_ms + 5 s; reads of journal data still return
#      the right bytes (never wrong data).  When the proxies return, it all
#      ships and every region reads back right.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/cluster.sh"
set -e
requires fio --version
fio --enghelp 2>/dev/null | grep -qw nbd || skip "fio has no nbd engine"
/usr/bin/python3 -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed"
tmp=$(mktmp)
timeout_ms=30000

cluster_init "$tmp/c" --proxies 3 --blobs 3 --agents 1 \
    --set agent.io_timeout_ms=$timeout_ms --set agent.flush_age_ms=2000 \
    --set agent.cache_bytes='"512M"' --set agent.cache_high_water_pct=90
cluster_start
cluster_wait_ready 30
cluster_create_volume vol0 128M
uri=$(cluster_uri vol0)
proxies=(proxy1 proxy2 proxy3)

# fio_region NAME OFF SIZE [fio args]: sequential 64k writes with a crc32c
# verify header, or (--verify_only) a check of what such a run wrote.
fio_region() {
    local name=$1 off=$2 size=$3
    shift 3
    fio --name="$name" --ioengine=nbd --uri="$uri" --rw=write --bs=64k --offset="$off" \
        --size="$size" --iodepth=4 --verify=crc32c --verify_fatal=1 --randseed=7 "$@" \
        --output="$tmp/$name.out" >/dev/null 2>&1 ||
        { cat "$tmp/$name.out"; fail "fio $name ($*)"; }
}
dirty() { cluster_field agent1 /v1/status '.volumes.dirty_bytes // 0'; }
wait_shipped() {
    local end=$((SECONDS + 60))
    until [ "$(dirty)" = 0 ]; do
        [ $SECONDS -lt $end ] || fail "$1: the agent still holds $(dirty) dirty bytes 60 s after the proxies returned"
        sleep 0.2
    done
}
# wait_file FILE SECS: true once FILE exists, false after SECS.
wait_file() {
    local end=$((SECONDS + $2))
    until [ -e "$1" ]; do
        [ $SECONDS -lt $end ] || return 1
        sleep 0.1
    done
}
nbd_errors() {
    cluster_get agent1 /metrics | awk '/^blockd_nbd_request_errors_total/ {s += $2} END {print s + 0}'
}

# Region C (clean: in the cluster only), then region D (dirty: in the journal).
fio_region clean 0 16M --fsync=64 --end_fsync=1
wait_shipped "region C"
fio_region dirty 16M 16M
[ "$(dirty)" -gt 0 ] || fail "region D is not in the journal (dirty bytes 0)"

# guest.py: one NBD client that connects before the outage and keeps its
# connection, as a VM does: it writes a pattern region and waits for go
# files to act during the outage (journal reads, new writes, a flush).
# "Cached data" is what the agent's journal holds unshipped: nothing may
# flush between the guest's writes and the outage (any flush ships it).
cat >"$tmp/guest.py" <<'PY'
import errno, os, sys, time, nbd
uri, tmp, tmo = sys.argv[1], sys.argv[2], int(sys.argv[3]) / 1000
h = nbd.NBD()
h.connect_uri(uri)
def pat(off, n, tag):
    return b"".join((b"%s:%012d:" % (tag, o)).ljust(4096, b".") for o in range(off, off + n, 4096))
def wait_file(name):
    end = time.monotonic() + 120
    while not os.path.exists(os.path.join(tmp, name)):
        if time.monotonic() > end: sys.exit("guest: no " + name + " in 120 s")
        time.sleep(0.05)
def check_read(off, n, tag, what):
    for o in range(off, off + n, 1 << 20):
        if h.pread(1 << 20, o) != pat(o, 1 << 20, tag): sys.exit(f"guest: {what}: wrong data at {o}")
D, F, C = 48 << 20, 56 << 20, 0
open(os.path.join(tmp, "guest-connected"), "w").close()
wait_file("go-write")
# In 64 KiB writes, so they stay in the journal (writes of 256 KiB and
# more skip it while a proxy is up: README "Large writes"), all in flight
# at once, so none is older than flush_age_ms (and shipped) at the outage.
cookies = []
for o in range(D, D + (8 << 20), 1 << 16):
    b = nbd.Buffer.from_bytearray(bytearray(pat(o, 1 << 16, b"D")))
    cookies.append((b, h.aio_pwrite(b, o)))
pending = {c for _, c in cookies}
while pending:
    h.poll(1000)
    pending = {c for c in pending if not h.aio_command_completed(c)}
open(os.path.join(tmp, "guest-ready"), "w").close()
wait_file("go-a")
t0 = time.monotonic()
def step(what): print(f"guest: {time.monotonic() - t0:.1f} s: {what}", flush=True)
check_read(D, 8 << 20, b"D", "journal data during the outage")
step("journal data read")
# 1 MiB writes with every proxy down: the journal takes them.
for o in range(F, F + (4 << 20), 1 << 20): h.pwrite(pat(o, 1 << 20, b"F"), o)
check_read(F, 4 << 20, b"F", "new writes during the outage")
step("new data written and read")
# A client that connects during the outage (a second queue, a reconnect)
# gets the volume the agent holds and reads its journal data too.
h2 = nbd.NBD()
h2.connect_uri(uri)
if h2.pread(1 << 20, F) != pat(F, 1 << 20, b"F"): sys.exit("guest: new connection during the outage: wrong data")
h2.shutdown()
print(f"A: with every proxy down, 8 MiB of journal data read back right, 4 MiB written and read back, and a new connection served, in {time.monotonic() - t0:.1f} s", flush=True)
open(os.path.join(tmp, "guest-a-done"), "w").close()
t0 = time.monotonic()
h.flush()   # waits for the proxies, which return within io_timeout
print(f"A: a flush issued during the outage completed {time.monotonic() - t0:.1f} s later, when the proxies returned", flush=True)
wait_file("go-b")
for o in range(F, F + (4 << 20), 1 << 20): h.pwrite(pat(o, 1 << 20, b"G"), o)
# Both at once (each waits io_timeout_ms): they must end in EIO, on time.
buf = nbd.Buffer(65536)
t0 = time.monotonic()
cs = {"read of data only the cluster holds": h.aio_pread(buf, C), "flush of journal data": h.aio_flush()}
done = {}
while len(done) < len(cs):
    if time.monotonic() - t0 > tmo + 10: sys.exit(f"guest: no answer within io_timeout + 10 s: {sorted(set(cs) - set(done))}")
    h.poll(1000)
    for what, c in cs.items():
        if what in done: continue
        try:
            if h.aio_command_completed(c): done[what] = (None, time.monotonic() - t0)
        except nbd.Error as e:
            done[what] = (e, time.monotonic() - t0)
for what, (e, dt) in done.items():
    if e is None: sys.exit(f"guest: {what}: succeeded with every proxy down past io_timeout")
    # python3-libnbd gives the errno's name.
    if e.errno not in (errno.EIO, "EIO"): sys.exit(f"guest: {what}: error {e.errno} ({e}), not EIO")
    if not (tmo - 1 <= dt <= tmo + 5): sys.exit(f"guest: {what}: EIO after {dt:.1f} s, io_timeout is {tmo:.0f} s")
    print(f"B: {what}: EIO after {dt:.1f} s (io_timeout {tmo:.0f} s)", flush=True)
check_read(F, 4 << 20, b"G", "journal data past io_timeout")
print("B: journal data still reads right past io_timeout (never wrong data)", flush=True)
open(os.path.join(tmp, "guest-b-done"), "w").close()
wait_file("go-end")
check_read(D, 8 << 20, b"D", "after the proxies returned")
check_read(F, 4 << 20, b"G", "after the proxies returned")
h.flush()
h.shutdown()
print("guest: every region reads back after the outages; final flush ok", flush=True)
PY

/usr/bin/python3 "$tmp/guest.py" "$uri" "$tmp" "$timeout_ms" >"$tmp/guest.out" 2>&1 &
guest=$!
cleanup_fn kill_pid $guest
wait_file "$tmp/guest-connected" 60 || { cat "$tmp/guest.out"; fail "the guest did not start"; }

# ---- A: an outage shorter than io_timeout_ms -----------------------------------
fio --name=through --ioengine=nbd --uri="$uri" --rw=randrw --rwmixread=40 --bs=4k --bsrange=4k-64k \
    --offset=64M --size=32M --iodepth=8 --verify=crc32c --verify_fatal=1 --verify_backlog=256 \
    --serialize_overlap=1 --time_based=1 --runtime=22 \
    --output-format=json --output="$tmp/through.json" >"$tmp/through.out" 2>&1 &
through=$!
cleanup_fn kill_pid $through
sleep 4
# fio's writes age past flush_age_ms (2 s) and ship all the time, so ships
# are in flight when the proxies go (the volume then re-attaches, which
# cannot finish until they return).  The guest writes its region just
# before: the agent's cache is its journal of unshipped writes, and that
# region must still be in it.
touch "$tmp/go-write"
wait_file "$tmp/guest-ready" 20 || { cat "$tmp/guest.out"; fail "the guest's writes did not complete"; }
t_down=$SECONDS
for p in "${proxies[@]}"; do cluster_kill "$p"; done
echo "A: every proxy killed; the agent holds $(dirty) dirty bytes, volume state $(cluster_field agent1 /v1/status '.volumes.volumes[0].state')"
[ "$(dirty)" -ge $((8 << 20)) ] || fail "A: only $(dirty) bytes dirty at the outage"
touch "$tmp/go-a"
wait_file "$tmp/guest-a-done" 7 || { cat "$tmp/guest.out"; fail "A: journal reads and new writes were not served with the proxies down"; }
sleep $((10 - (SECONDS - t_down) > 0 ? 10 - (SECONDS - t_down) : 0))
cluster_start "${proxies[@]}"
echo "A: proxies restarted $((SECONDS - t_down)) s after they stopped"
cluster_wait_ready 30
echo "A: cluster serving again $((SECONDS - t_down)) s after the stop"
wait $through || { cat "$tmp/through.out"; fail "fio through the outage failed"; }
python3 - "$tmp/through.json" <<'PY'
import json, sys
t = open(sys.argv[1]).read()
j = json.loads(t[t.index("{"):])["jobs"][0]
if j["error"]:
    sys.exit(f"fio error {j['error']}")
mx = max(j["read"]["clat_ns"]["max"], j["write"]["clat_ns"]["max"]) / 1e9
print(f"A: fio randrw verify through the outage: 0 errors, "
      f"{(j['read']['io_bytes'] + j['write']['io_bytes']) / 2**20:.0f} MiB, longest request {mx:.1f} s")
PY
wait_shipped "A"
[ "$(nbd_errors)" = 0 ] || fail "A: the agent answered $(nbd_errors) requests with an error"
echo "A: everything shipped, no error reached a client"

# ---- B: an outage past io_timeout_ms -------------------------------------------
cluster_stop "${proxies[@]}" || fail "a proxy did not stop cleanly"
echo "B: every proxy stopped"
touch "$tmp/go-b"
wait_file "$tmp/guest-b-done" $((timeout_ms / 1000 + 30)) || { cat "$tmp/guest.out"; fail "B: the client did not get EIO in time"; }
cluster_start "${proxies[@]}"
cluster_wait_ready 30
touch "$tmp/go-end"
wait $guest || { cat "$tmp/guest.out"; fail "the guest failed"; }
cat "$tmp/guest.out"
wait_shipped "B"
for r in "clean 0 16M" "dirty 16M 16M"; do
    set -- $r
    fio_region "$1" "$2" "$3" --verify_only=1
done
echo "B: after the proxies returned everything shipped and every region verifies"
cluster_stop_all
