#!/usr/bin/python3
# nbd_conformance.py: NBD protocol conformance of the server under test,
# with libnbd's Python binding (python3-libnbd; run with /usr/bin/python3).
# Prints TAP.  Defends C8 (multi-conn), C17, and the option and command
# behaviour CONTRACT.md §3 4.1/4.2 expects of a good client's view.
#
# Environment (see nbd-functions.sh): NBD_TEST_HOST, NBD_TEST_PORT,
# NBD_TEST_EXPORT (writable, >= 64 MiB), NBD_TEST_RO_EXPORT (optional),
# NBD_TEST_UNIX (optional socket path), NBD_TEST_ADMIN (optional: the test
# server's status, to see FUA reach the volume layer; over HTTPS when
# NBD_TEST_ADMIN_CA names the CA, with the bearer token read from the file
# NBD_TEST_ADMIN_TOKEN_FILE names: a real agent's admin endpoint).
import errno
import json
import os
import random
import ssl
import sys
import traceback
import urllib.request

import nbd

HOST = os.environ["NBD_TEST_HOST"]
PORT = os.environ["NBD_TEST_PORT"]
EXPORT = os.environ.get("NBD_TEST_EXPORT", "vol0")
RO = os.environ.get("NBD_TEST_RO_EXPORT", "")
UNIX = os.environ.get("NBD_TEST_UNIX", "")
ADMIN = os.environ.get("NBD_TEST_ADMIN", "")
MiB = 1 << 20
tests = []


class Skip(Exception):
    pass


def test(fn):
    tests.append(fn)
    return fn


def connect(export=EXPORT, structured=True, meta=True, opt_mode=False):
    h = nbd.NBD()
    h.set_export_name(export)
    h.set_request_structured_replies(structured)
    if meta:
        h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    if opt_mode:
        h.set_opt_mode(True)
    h.connect_tcp(HOST, PORT)
    return h


def errno_is(e, err):
    """nbd.Error.errno is a name ("ENOENT") in this binding, a number in others."""
    return e.errno in (err, errno.errorcode.get(err))


def expect_errno(fn, err):
    try:
        fn()
    except nbd.Error as e:
        assert errno_is(e, err), "errno %s, expected %s (%s)" % (e.errno, err, e.string)
        return
    raise AssertionError("succeeded; expected errno %d" % err)


def extents(h, off, length, flags=0):
    """[(len, flags)] of base:allocation for [off, off+length)."""
    out = []

    def cb(ctx, o, entries, err):
        assert ctx == nbd.CONTEXT_BASE_ALLOCATION
        assert o == off
        for i in range(0, len(entries), 2):
            out.append((entries[i], entries[i + 1]))
        return 0

    h.block_status(length, off, cb, flags)
    return out


def status_at(h, off):
    return extents(h, off, 4096, nbd.CMD_FLAG_REQ_ONE)[0][1]


def admin_status():
    """The server's /v1/status: over HTTPS with the token when
    NBD_TEST_ADMIN_CA names the cluster CA (a real agent), else plain HTTP
    (the test server)."""
    if not ADMIN:
        return None
    ca = os.environ.get("NBD_TEST_ADMIN_CA")
    req = urllib.request.Request("%s://%s/v1/status" % ("https" if ca else "http", ADMIN))
    tok = os.environ.get("NBD_TEST_ADMIN_TOKEN_FILE")
    if tok:
        with open(tok) as f:
            req.add_header("Authorization", "Bearer " + f.read().strip())
    ctx = ssl.create_default_context(cafile=ca) if ca else None
    with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
        return json.load(r)


# ---- options ---------------------------------------------------------------------------


@test
def list_exports():
    """NBD_OPT_LIST names every export; the handshake goes on after it."""
    h = connect(opt_mode=True)
    names = []
    h.opt_list(lambda name, desc: names.append(name) or 0)
    assert EXPORT in names, names
    if RO:
        assert RO in names, names
    h.opt_go()
    assert h.get_size() > 0
    h.shutdown()


@test
def info_then_go():
    """NBD_OPT_INFO describes the export (size, flags, block sizes) as GO does."""
    h = connect(opt_mode=True)
    h.opt_info()
    size, ro, mc = h.get_size(), h.is_read_only(), h.can_multi_conn()
    mn = h.get_block_size(nbd.SIZE_MINIMUM)
    pref = h.get_block_size(nbd.SIZE_PREFERRED)
    mx = h.get_block_size(nbd.SIZE_MAXIMUM)
    # any alignment (partial blocks are read-modify-written), 4 KiB preferred
    assert mn == 1 and pref == 4096, (mn, pref)
    assert mx >= 1 * MiB and mx % pref == 0 and mx <= 32 * MiB, mx
    assert size % pref == 0
    h.opt_go()
    assert (h.get_size(), h.is_read_only(), h.can_multi_conn()) == (size, ro, mc)
    assert h.can_flush() and h.can_fua() and h.can_trim() and h.can_zero()
    assert h.can_fast_zero() and h.can_multi_conn() and h.can_df() and h.can_cache()
    h.shutdown()


@test
def info_unknown_export():
    """INFO/GO of a missing export fail cleanly and the handshake continues."""
    h = connect(export="no-such-export", opt_mode=True)
    expect_errno(h.opt_info, errno.ENOENT)  # NBD_REP_ERR_UNKNOWN in libnbd
    expect_errno(h.opt_go, errno.ENOENT)
    assert h.aio_is_negotiating()
    h.set_export_name(EXPORT)
    h.opt_go()
    h.pread(4096, 0)
    h.shutdown()


@test
def list_meta_contexts():
    """LIST_META_CONTEXT offers base:allocation; GO selects it."""
    h = connect(opt_mode=True)
    seen = []
    h.opt_list_meta_context(lambda name: seen.append(name) or 0)
    assert nbd.CONTEXT_BASE_ALLOCATION in seen, seen
    h.opt_go()
    assert h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.shutdown()


@test
def unix_socket():
    """The server also listens on a Unix socket."""
    if not UNIX:
        raise Skip("NBD_TEST_UNIX not set")
    h = nbd.NBD()
    h.set_export_name(EXPORT)
    h.connect_unix(UNIX)
    h.pwrite(b"u" * 4096, 0)
    assert h.pread(4096, 0) == b"u" * 4096
    h.shutdown()


@test
def oldstyle_clients():
    """Non-fixed newstyle (EXPORT_NAME, 124 zeroes) and no NO_ZEROES work."""
    for flags in (0, nbd.HANDSHAKE_FLAG_FIXED_NEWSTYLE):
        h = nbd.NBD()
        h.set_handshake_flags(flags)
        h.set_export_name(EXPORT)
        h.connect_tcp(HOST, PORT)
        h.pwrite(b"x" * 4096, 8192)
        assert h.pread(4096, 8192) == b"x" * 4096
        h.shutdown()


# ---- commands --------------------------------------------------------------------------


@test
def structured_and_simple_replies():
    """The same data reads back through structured and simple replies; the
    structured reply uses OFFSET_HOLE for unwritten ranges."""
    a = connect(structured=True)
    b = connect(structured=False, meta=False)
    assert a.get_structured_replies_negotiated() and not b.get_structured_replies_negotiated()
    off = 8 * MiB
    a.zero(256 * 1024, off)
    data = os.urandom(64 * 1024)
    a.pwrite(data, off + 64 * 1024)
    want = bytes(64 * 1024) + data + bytes(128 * 1024)
    assert a.pread(256 * 1024, off) == want
    assert b.pread(256 * 1024, off) == want
    chunks = []

    def chunk(buf, o, status, err):
        chunks.append((o, len(buf), status))
        return 0

    a.pread_structured(256 * 1024, off, chunk)
    kinds = {s for _, _, s in chunks}
    assert nbd.READ_HOLE in kinds and nbd.READ_DATA in kinds, chunks
    assert sum(n for _, n, _ in chunks) == 256 * 1024
    a.shutdown()
    b.shutdown()


@test
def block_status_truthful():
    """After writes, trims and zeroes, base:allocation says ZERO only where
    the data reads as zero, and DATA where it was written."""
    h = connect()
    base = 12 * MiB
    h.trim(MiB, base)
    h.pwrite(b"\x01" * 65536, base)
    h.trim(65536, base + 65536)
    h.zero(65536, base + 131072)
    h.zero(65536, base + 196608, nbd.CMD_FLAG_NO_HOLE)
    h.pwrite(bytes(65536), base + 262144)  # written zeroes are still data
    ex = extents(h, base, 512 * 1024)
    pos = base
    for length, flags in ex:
        if flags & nbd.STATE_ZERO:
            assert h.pread(min(length, 65536), pos) == bytes(min(length, 65536)), hex(pos)
        pos += length
    assert pos >= base + 512 * 1024 or len(ex) > 0
    assert status_at(h, base) & nbd.STATE_ZERO == 0
    assert status_at(h, base + 65536) & nbd.STATE_ZERO
    assert status_at(h, base + 131072) & nbd.STATE_ZERO
    assert status_at(h, base + 196608) & nbd.STATE_ZERO
    assert status_at(h, base + 262144) & nbd.STATE_ZERO == 0
    # REQ_ONE: one extent, never longer than asked
    one = extents(h, base, 8192, nbd.CMD_FLAG_REQ_ONE)
    assert len(one) == 1 and one[0][0] <= 8192, one
    h.shutdown()


@test
def fua_and_flush():
    """FUA on WRITE, TRIM and WRITE_ZEROES and FLUSH succeed; with the test
    server's status, FUA is seen to reach the volume layer."""
    before = admin_status()
    h = connect()
    h.pwrite(b"f" * 4096, 16 * MiB, nbd.CMD_FLAG_FUA)
    h.zero(4096, 16 * MiB + 4096, nbd.CMD_FLAG_FUA)
    h.trim(4096, 16 * MiB + 8192, nbd.CMD_FLAG_FUA)
    h.flush()
    assert h.pread(4096, 16 * MiB) == b"f" * 4096
    after = admin_status()
    if before and "mem" in before:
        assert after["mem"]["fua"] - before["mem"]["fua"] == 3, (before["mem"], after["mem"])
        assert after["mem"]["flush"] > before["mem"]["flush"]
    h.shutdown()


@test
def fast_zero():
    """WRITE_ZEROES with FAST_ZERO succeeds or fails fast with ENOTSUP."""
    h = connect()
    try:
        h.zero(MiB, 20 * MiB, nbd.CMD_FLAG_FAST_ZERO)
        assert h.pread(4096, 20 * MiB) == bytes(4096)
    except nbd.Error as e:
        assert errno_is(e, errno.ENOTSUP), e.string
    h.shutdown()


@test
def multi_conn():
    """C8: write on A, flush on B, read on C, under CAN_MULTI_CONN."""
    a, b, c = connect(), connect(structured=False, meta=False), connect()
    assert a.can_multi_conn()
    for i in range(32):
        off = 24 * MiB + (i % 8) * 65536
        data = os.urandom(65536)
        a.pwrite(data, off)
        b.flush()
        assert c.pread(65536, off) == data, i
    for x in (a, b, c):
        x.shutdown()


@test
def read_only_export():
    """A read-only export says so and refuses writes with EPERM."""
    if not RO:
        raise Skip("NBD_TEST_RO_EXPORT not set")
    h = connect(export=RO)
    assert h.is_read_only() and not h.can_trim() and not h.can_zero()
    h.set_strict_mode(0)
    expect_errno(lambda: h.pwrite(b"x" * 4096, 0), errno.EPERM)
    h.pread(4096, 0)
    h.shutdown()


@test
def max_payload_and_split_trim():
    """The maximum payload round-trips; TRIM/ZERO far above it are split."""
    h = connect()
    mx = h.get_block_size(nbd.SIZE_MAXIMUM)
    size = h.get_size()
    if size < 32 * MiB + 2 * mx:
        raise Skip("export too small")
    data = os.urandom(mx)
    h.pwrite(data, 32 * MiB)
    assert h.pread(mx, 32 * MiB) == data
    span = min(size - 32 * MiB, 4 * mx) // 4096 * 4096
    h.zero(span, 32 * MiB)
    assert h.pread(4096, 32 * MiB + span - 4096) == bytes(4096)
    h.trim(span, 32 * MiB)
    h.shutdown()


@test
def unaligned_512_and_1_byte():
    """512- and 1-byte aligned reads and writes, zeroes and trims match a
    model; sectors of one 4 KiB block written in flight together (each a
    read-modify-write of the same block) all land."""
    h = connect()
    h.set_strict_mode(0)
    rnd = random.Random(int(os.environ.get("TEST_SEED", "1")))
    base, span = 48 * MiB, 256 * 1024
    h.pwrite(bytes(span), base)
    model = bytearray(span)
    for i in range(300):
        align = 512 if i % 2 == 0 else 1
        off = rnd.randrange(0, span // align) * align
        n = min(span - off, rnd.choice([1, 2, 7, 511, 512, 1024, 3000, 4096, 9000]))
        n = max(align, n - n % align)
        if off + n > span:
            continue
        op = rnd.random()
        if op < 0.6:
            data = os.urandom(n)
            h.pwrite(data, base + off, nbd.CMD_FLAG_FUA if rnd.random() < 0.1 else 0)
            model[off:off + n] = data
        elif op < 0.7:
            h.zero(n, base + off)
            model[off:off + n] = bytes(n)
        elif op < 0.75:
            h.trim(n, base + off)  # advisory: trims only whole blocks; reread below
            a0, a1 = -(-(base + off) // 4096) * 4096, (base + off + n) // 4096 * 4096
            if a1 > a0:
                model[a0 - base:a1 - base] = h.pread(a1 - a0, a0)
        else:
            assert h.pread(n, base + off) == bytes(model[off:off + n]), (off, n)
    assert h.pread(span, base) == bytes(model)
    # eight 512-byte sectors of each of 16 blocks, all in flight at once
    cookies = []
    for blk in range(16):
        for sec in rnd.sample(range(8), 8):
            off = blk * 4096 + sec * 512
            data = os.urandom(512)
            model[off:off + 512] = data
            cookies.append(h.aio_pwrite(data, base + off))
    while h.aio_in_flight() > 0:
        h.poll(-1)
    for c in cookies:
        assert h.aio_command_completed(c)
    h.flush()
    assert h.pread(span, base) == bytes(model)
    # unaligned past the end: the clear errors aligned requests get
    size = h.get_size()
    expect_errno(lambda: h.pread(512, size - 100), errno.EINVAL)
    expect_errno(lambda: h.pwrite(bytes(512), size - 100), errno.ENOSPC)
    h.shutdown()


@test
def df_and_cache():
    """A READ with DF comes in one chunk even over holes; CACHE of a range
    succeeds, CACHE longer than the maximum payload is EINVAL."""
    h = connect()
    h.set_strict_mode(0)
    off = 56 * MiB
    h.zero(256 * 1024, off)
    data = os.urandom(5000)
    h.pwrite(data, off + 64 * 1024 + 3)
    want = bytes(64 * 1024 + 3) + data + bytes(256 * 1024 - 64 * 1024 - 3 - 5000)
    chunks = []

    def chunk(buf, o, status, err):
        chunks.append((o, bytes(buf), status))
        return 0

    h.pread_structured(256 * 1024 - 1, off + 1, chunk, nbd.CMD_FLAG_DF)
    assert len(chunks) == 1 and chunks[0][2] == nbd.READ_DATA, [(o, s) for o, _, s in chunks]
    assert chunks[0][0] == off + 1 and chunks[0][1] == want[1:], chunks[0][0]
    h.cache(1 * MiB + 17, off - 5)
    mx = h.get_block_size(nbd.SIZE_MAXIMUM)
    expect_errno(lambda: h.cache(mx + 4096, 0), errno.EINVAL)
    h.pread(4096, 0)
    h.shutdown()


@test
def many_in_flight():
    """64 asynchronous requests in flight at once, out-of-order replies and all,
    leave exactly the data a model says."""
    h = connect()
    rnd = random.Random(int(os.environ.get("TEST_SEED", "1")))
    model = {}
    blocks = 256
    base = 40 * MiB
    cookies = []
    for i in range(512):
        blk = rnd.randrange(blocks)
        if blk in model and rnd.random() < 0.5:
            continue
        data = bytes([rnd.randrange(256)]) * 4096
        model[blk] = data
        cookies.append(h.aio_pwrite(data, base + blk * 4096))
        while h.aio_in_flight() >= 64:
            h.poll(-1)
            for c in list(cookies):
                if h.aio_command_completed(c):
                    cookies.remove(c)
    while h.aio_in_flight() > 0:
        h.poll(-1)
    for c in cookies:
        h.aio_command_completed(c)
    for blk, data in model.items():
        assert h.pread(4096, base + blk * 4096) == data, blk
    h.shutdown()


def main():
    print("1..%d" % len(tests))
    failed = 0
    for i, fn in enumerate(tests, 1):
        name = fn.__name__
        try:
            fn()
            print("ok %d - %s" % (i, name))
        except Skip as s:
            print("ok %d - %s # SKIP %s" % (i, name, s))
        except Exception:
            failed += 1
            print("not ok %d - %s" % (i, name))
            for line in traceback.format_exc().splitlines():
                print("# " + line)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
