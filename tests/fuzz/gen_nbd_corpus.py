#!/usr/bin/python3
# gen_nbd_corpus.py BUILDDIR OUTDIR: (re)generate the seed corpus of
# tests/fuzz/fuzz_nbd.c from real traffic.
#
# Starts the protocol test server, puts a recording TCP relay in front of
# it, and runs through the relay: libnbd sessions (options, every command,
# structured and simple replies, block status), nbdinfo, qemu-img and
# qemu-io, and every tests/func/errors-* program (the bad-input rows of
# CONTRACT.md §3, so the fuzzer starts from them).  Each connection's
# client-to-server bytes become one seed, prefixed with the server-mode
# byte 0x00 and capped at 64 KiB, in OUTDIR/session-HASH.  A few
# codec-mode seeds (prefix 0x01) are added by hand (codec-all-kinds).  The
# session-* files of an earlier run are replaced; other seeds in OUTDIR
# (fuzz-* files a fuzzer found) are kept.  Run it through
# tests/fuzz/gen-corpus when the protocol handling changes.
import glob
import hashlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

import nbd

builddir, outdir = sys.argv[1], sys.argv[2]
CAP = 64 * 1024
captures = []
lock = threading.Lock()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def relay(listen_sock, target_port, stop):
    def pump(src, dst, buf):
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                if buf is not None and len(buf) < CAP:
                    buf.extend(d[: CAP - len(buf)])
                dst.sendall(d)
        except OSError:
            pass
        for s in (dst,):
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    while not stop.is_set():
        try:
            c, _ = listen_sock.accept()
        except socket.timeout:
            continue
        s = socket.create_connection(("127.0.0.1", target_port))
        buf = bytearray()
        with lock:
            captures.append(buf)
        threading.Thread(target=pump, args=(c, s, buf), daemon=True).start()
        threading.Thread(target=pump, args=(s, c, None), daemon=True).start()


sport, aport, rport = free_port(), free_port(), free_port()
server = subprocess.Popen([os.path.join(builddir, "tests/nbd_test_server"),
                           "--listen", "127.0.0.1:%d" % sport, "--admin", "127.0.0.1:%d" % aport,
                           "--export", "vol0:64M", "--export", "ro0:16M:ro",
                           "--export", "err0:16M", "--export", "big0:1T",
                           "--fail", "err0:1:5:0:65536", "--max-io", "4M"])
import atexit
atexit.register(server.kill)  # never leave it behind, whatever fails below
deadline = time.monotonic() + 10  # until the server accepts, at most 10 s
while True:
    try:
        socket.create_connection(("127.0.0.1", sport), timeout=1).close()
        break
    except OSError:
        if time.monotonic() > deadline or server.poll() is not None:
            sys.exit("nbd_test_server did not start")
        time.sleep(0.05)
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", rport))
ls.listen(128)
ls.settimeout(0.2)
stop = threading.Event()
threading.Thread(target=relay, args=(ls, sport, stop), daemon=True).start()
uri = "nbd://127.0.0.1:%d" % rport


def session(structured, meta):
    h = nbd.NBD()
    h.set_export_name("vol0")
    h.set_request_structured_replies(structured)
    if meta:
        h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.connect_tcp("127.0.0.1", str(rport))
    h.pwrite(b"\xab" * 8192, 4096, nbd.CMD_FLAG_FUA)
    h.pread(16384, 0)
    h.trim(4096, 65536)
    h.zero(8192, 131072, nbd.CMD_FLAG_NO_HOLE)
    h.zero(8192, 196608, nbd.CMD_FLAG_FAST_ZERO)
    h.flush()
    # any alignment (minimum block size 1): partial-block writes, zeroes,
    # trims and reads; CACHE; DF with structured replies
    h.pwrite(b"\xcd" * 512, 512)
    h.pwrite(b"\xce", 4095)
    h.zero(1000, 70000)
    h.trim(5000, 8000)
    h.pread(513, 511)
    h.cache(10000, 3)
    if structured:
        h.pread_structured(20000, 1, lambda *a: 0, nbd.CMD_FLAG_DF)
    if meta:
        h.block_status(1 << 20, 0, lambda *a: 0)
        h.block_status(65536, 0, lambda *a: 0, nbd.CMD_FLAG_REQ_ONE)
    h.set_strict_mode(0)
    for fn in (lambda: h.pread(4096, 64 << 20), lambda: h.pwrite(b"x" * 512, 1),
               lambda: h.pread(4096, 0, 1 << 9)):
        try:
            fn()
        except nbd.Error:
            pass
    h.shutdown()


def opt_session():
    h = nbd.NBD()
    h.set_opt_mode(True)
    h.connect_tcp("127.0.0.1", str(rport))
    h.opt_list(lambda n, d: 0)
    h.set_export_name("ro0")
    h.opt_info()
    h.opt_list_meta_context(lambda n: 0)
    h.set_export_name("vol0")
    h.opt_go()
    h.pread(4096, 0)
    h.shutdown()


print("sessions", flush=True)
for s, m in ((True, True), (False, False), (True, False)):
    session(s, m)
opt_session()
print("tools", flush=True)
env = dict(os.environ, LIBNBD_DEBUG="0")
for cmd in (["nbdinfo", uri + "/vol0"], ["nbdinfo", "--list", uri], ["nbdinfo", "--map", uri + "/vol0"],
            ["qemu-img", "info", uri + "/vol0"],
            ["qemu-io", "-f", "raw", uri + "/vol0", "-c", "write -P 1 0 64k", "-c", "read 0 64k",
             "-c", "discard 0 4k", "-c", "write -z 64k 64k"]):
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, timeout=60)
penv = dict(os.environ, NBD_TEST_HOST="127.0.0.1", NBD_TEST_PORT=str(rport),
            NBD_TEST_EXPORT="vol0", NBD_TEST_RO_EXPORT="ro0", NBD_TEST_ERR_EXPORT="err0",
            NBD_TEST_BIG_EXPORT="big0")
for prog in sorted(glob.glob(os.path.join(builddir, "tests/errors-*"))):
    if prog.endswith(("half-open-connections", "pipeline-no-read")) or not os.path.isfile(prog):
        continue
    print(prog, flush=True)
    subprocess.run([prog], env=penv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
time.sleep(0.5)
stop.set()
server.terminate()
server.wait()

os.makedirs(outdir, exist_ok=True)
for f in glob.glob(os.path.join(outdir, "session-*")):
    os.unlink(f)
seen = set()
for buf in captures:
    data = b"\x00" + bytes(buf)
    h = hashlib.sha1(data).hexdigest()[:16]
    if len(buf) == 0 or h in seen:
        continue
    seen.add(h)
    open(os.path.join(outdir, "session-" + h), "wb").write(data)


def rec(kind, payload):
    return struct.pack(">BH", kind, len(payload)) + payload


go = struct.pack(">I", 4) + b"vol0" + struct.pack(">HH", 1, 3)
meta = struct.pack(">I", 4) + b"vol0" + struct.pack(">II", 1, 15) + b"base:allocation"
req = struct.pack(">IHHQQI", 0x25609513, 1, 1, 7, 4096, 4096) + struct.pack(">QH", 1 << 20, 0x1ed)
hs = [struct.pack(">II", 8, 0), struct.pack(">II", 10, len(meta)) + meta,
      struct.pack(">II", 7, len(go)) + go, struct.pack(">II", 3, 4) + b"abcd",
      struct.pack(">II", 0xffffffff, 0)]
codec = b"\x01" + rec(0, go) + rec(1, meta) + rec(2, b"x" * 100) + rec(3, struct.pack(">HQH", 0, 1 << 30, 3)) \
    + rec(4, struct.pack(">IIIII", 1, 4096, 3, 8192, 0)) + rec(5, req) + b"".join(rec(6, x) for x in hs)
open(os.path.join(outdir, "codec-all-kinds"), "wb").write(codec)
print("%d session seeds and 1 codec seed written to %s" % (len(seen), outdir))
