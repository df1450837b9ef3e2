#!/usr/bin/python3
# nbd_differential.py URI_A URI_B SEED N_OPS: run one seeded random sequence
# of NBD operations against two servers (an oracle, `nbdkit memory`, and
# the server under test) and compare every outcome (success or errno) and
# every byte read.  CONTRACT.md §2 row 1 "Differential".
#
# Operations: WRITE (some with FUA), WRITE_ZEROES (some NO_HOLE), TRIM,
# FLUSH, READ, and requests the spec says fail the same way everywhere:
# past the end (ENOSPC for writes, EINVAL otherwise) and length 0 (an error
# from both, EINVAL from ours: see both()).
# Both advertise a minimum block size of 1: a third of the writes, zeroes
# and reads are 512- or 1-byte aligned (for ours a read-modify-write of
# the 4 KiB blocks they touch).  TRIM stays aligned: ours trims only the
# whole blocks inside an unaligned range (advisory; nbdkit memory zeroes
# the bytes), so what reads back after one differs by design.
# On a mismatch the seed and the last 40 operations are printed.
import os
import random
import sys

import nbd

uri_a, uri_b, seed, n_ops = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rnd = random.Random(seed)
B = 4096


def connect(uri):
    h = nbd.NBD()
    h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.connect_uri(uri)
    h.set_strict_mode(0)
    return h


a, b = connect(uri_a), connect(uri_b)
size = min(a.get_size(), b.get_size())
assert size % B == 0
log = []


def outcome(fn):
    try:
        r = fn()
        return ("ok", r)
    except nbd.Error as e:
        return ("err", e.errno)


def both(desc, fa, fb, zero_len=False):
    log.append(desc)
    ra, rb = outcome(fa), outcome(fb)
    if zero_len:
        # Length 0 is "unspecified" (proto.md): nbdkit answers EINVAL for
        # READ/TRIM and ENOSPC for WRITE/WRITE_ZEROES, we answer EINVAL to
        # all; both must be errors, ours EINVAL, and neither disconnects.
        ok = ra[0] == "err" and rb == ("err", "EINVAL") and a.aio_is_ready() and b.aio_is_ready()
        if ok:
            return
    if zero_len or ra != rb:
        print("MISMATCH at op %d (seed %d): %s" % (len(log), seed, desc))
        print("  oracle: %r" % (ra if ra[0] == "err" else ("ok", "%d bytes" % len(ra[1] or b"")),))
        print("  server: %r" % (rb if rb[0] == "err" else ("ok", "%d bytes" % len(rb[1] or b"")),))
        for d in log[-40:]:
            print("  " + d)
        sys.exit(1)


def rand_range(max_blocks=64, unaligned=False):
    if unaligned and rnd.random() < 1 / 3:
        u = rnd.choice([1, 512])
        n = max(u, rnd.randint(1, max_blocks * B) // u * u)
        return rnd.randrange(0, (size - n) // u + 1) * u, n
    n = rnd.randint(1, max_blocks)
    off = rnd.randrange(0, size // B - n + 1) * B
    return off, n * B


for i in range(n_ops):
    op = rnd.random()
    if op < 0.30:
        off, n = rand_range(unaligned=True)
        data = os.urandom(n)
        fl = nbd.CMD_FLAG_FUA if rnd.random() < 0.2 else 0
        both("write %d+%d fua=%d" % (off, n, fl), lambda: a.pwrite(data, off, fl),
             lambda: b.pwrite(data, off, fl))
    elif op < 0.40:
        off, n = rand_range(256, unaligned=True)
        fl = nbd.CMD_FLAG_NO_HOLE if rnd.random() < 0.5 else 0
        both("zero %d+%d flags=%d" % (off, n, fl), lambda: a.zero(n, off, fl),
             lambda: b.zero(n, off, fl))
    elif op < 0.48:
        off, n = rand_range(256)
        both("trim %d+%d" % (off, n), lambda: a.trim(n, off), lambda: b.trim(n, off))
    elif op < 0.52:
        both("flush", a.flush, b.flush)
    elif op < 0.88:
        off, n = rand_range(unaligned=True)
        both("read %d+%d" % (off, n), lambda: a.pread(n, off), lambda: b.pread(n, off))
    else:
        kind = rnd.randrange(8)
        off = [size, size - B, 2**64 - 512, 2**64 - B, size - 100][rnd.randrange(5)]
        n = [B, 2 * B][rnd.randrange(2)]
        if off >= size or off + n > size:
            pass
        data = bytes(n)
        if kind == 0:
            both("write past end %d+%d" % (off, n), lambda: a.pwrite(data, off), lambda: b.pwrite(data, off))
        elif kind == 1:
            both("zero past end %d+%d" % (off, n), lambda: a.zero(n, off), lambda: b.zero(n, off))
        elif kind == 2:
            both("read past end %d+%d" % (off, n), lambda: a.pread(n, off), lambda: b.pread(n, off))
        elif kind == 3:
            both("trim past end %d+%d" % (off, n), lambda: a.trim(n, off), lambda: b.trim(n, off))
        elif kind == 4:
            o = rnd.randrange(size // B) * B
            both("read len 0 at %d" % o, lambda: a.pread(0, o), lambda: b.pread(0, o), True)
        elif kind == 5:
            # (a WRITE of length 0 is left out: libnbd corks its header
            # waiting for a payload, and every one costs 200 ms)
            o = rnd.randrange(size // B) * B
            cb = lambda ctx, off, e, err: 0
            both("block status len 0 at %d" % o, lambda: a.block_status(0, o, cb),
                 lambda: b.block_status(0, o, cb), True)
        elif kind == 6:
            o = rnd.randrange(size // B) * B
            both("zero len 0 at %d" % o, lambda: a.zero(0, o), lambda: b.zero(0, o), True)
        else:
            o = rnd.randrange(size // B) * B
            both("trim len 0 at %d" % o, lambda: a.trim(0, o), lambda: b.trim(0, o), True)

# the whole image, and block status of the server under test is truthful
chunk = 4 << 20
for off in range(0, size, chunk):
    both("final read %d+%d" % (off, chunk), lambda: a.pread(chunk, off), lambda: b.pread(chunk, off))


def check_extents(h, off, n):
    ex = []
    h.block_status(n, off, lambda ctx, o, e, err: ex.extend(zip(e[::2], e[1::2])) or 0)
    pos = off
    for length, flags in ex:
        if flags & nbd.STATE_ZERO:
            ln = min(length, off + n - pos)
            assert h.pread(ln, pos) == bytes(ln), "ZERO claimed at %d+%d but data is there" % (pos, ln)
        pos += length


for _ in range(50):
    off, n = rand_range(512)
    check_extents(b, off, n)
print("%d operations, identical outcomes and data (seed %d)" % (n_ops, seed))
a.shutdown()
b.shutdown()
