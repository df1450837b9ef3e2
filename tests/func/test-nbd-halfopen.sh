#!/usr/bin/env bash
# test-nbd-halfopen.sh: CONTRACT.md §3 4.1 "connect and never finish the
# handshake; 1000 such connections": with a 1 s handshake deadline and a cap
# of 100 handshakes, a legitimate client still gets in within a bounded
# time while 1000 stalled connections hammer the server; the stalled ones
# are all closed by the deadline; the server's memory stays bounded
# (qemu CVE-2024-7409).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires /usr/bin/python3 -c 'import nbd'
nbd_requires_knobs
nbd_server_start --export vol0:16M --handshake-timeout-ms 1000 --max-handshakes 100
rss0=$(nbd_server_rss_kb)
/usr/bin/python3 - <<'PY' || fail "half-open scenario failed"
import os, socket, time, json, urllib.request, resource
import nbd
host, port = os.environ["NBD_TEST_HOST"], int(os.environ["NBD_TEST_PORT"])
resource.setrlimit(resource.RLIMIT_NOFILE, (4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
socks = []
for i in range(1000):
    s = socket.create_connection((host, port))
    if i % 2:
        s.sendall(b"\0\0\0\1")            # flags, then nothing
    socks.append(s)
t0 = time.monotonic()
h = nbd.NBD()
h.set_export_name("vol0")
h.connect_tcp(host, str(port))
h.pwrite(b"L" * 4096, 0)
assert h.pread(4096, 0) == b"L" * 4096
dt = time.monotonic() - t0
print("legitimate client in %.0f ms with 1000 stalled connections" % (dt * 1000))
assert dt < 2.0, dt
st = json.load(urllib.request.urlopen("http://%s/v1/status" % os.environ["NBD_TEST_ADMIN"]))
assert st["nbd"]["handshakes"] <= 100, st["nbd"]
print("status:", st["nbd"]["handshakes"], "handshakes,", st["nbd"]["evicted"], "evicted")
# the deadline closes every stalled connection that was not evicted
deadline = time.monotonic() + 5
open_ = list(socks)
while open_ and time.monotonic() < deadline:
    for s in list(open_):
        s.setblocking(False)
        try:
            if s.recv(4096) == b"":
                open_.remove(s)
        except BlockingIOError:
            pass
        except ConnectionResetError:
            open_.remove(s)
    time.sleep(0.05)
assert not open_, "%d stalled connections still open after the deadline" % len(open_)
st = json.load(urllib.request.urlopen("http://%s/v1/status" % os.environ["NBD_TEST_ADMIN"]))
assert st["nbd"]["handshakes"] == 0 and st["nbd"]["connections"] == 1, st["nbd"]
assert st["nbd"]["evicted"] + st["nbd"]["handshake_timeouts"] >= 1000, st["nbd"]
h.pread(4096, 0)          # the legitimate client is still served
h.shutdown()
PY
rss1=$(nbd_server_rss_kb)
echo "server RSS: $rss0 KiB before, $rss1 KiB after"
[ $((rss1 - rss0)) -lt 65536 ] || fail "server RSS grew by $((rss1 - rss0)) KiB"
nbd_server_stop
