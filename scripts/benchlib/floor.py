"""benchlib.floor: the disk's flush floor for one durable replicated write,
measured in the run, on the disk blockd's data is on.

A durable 4 KiB write in blockd needs, on its critical path, two rounds of
flushes: its three blob copies (three files fdatasynced in parallel), then
the Raft log on a majority of the proxies (three more files in parallel).
On one shared disk the question is what such a round costs; this module
measures it the same way as a separate tool would, so the durable job can
be judged against the floor of the same hour:

  serial-1   one file: a 4 KiB pwrite + fdatasync, back to back
  par-3      three files, one thread each, joined per round
  2x-par-3   a par-3 round on files A, then one on files B: the write path
  6-serial   six files one after another (six flushes in series)

Each is measured for SECONDS; the result is {name: {rate, mean_us, p50_us,
p99_us}}.  Standard library only; the files live in a directory of their
own, removed afterwards.
"""
import os
import shutil
import statistics
import threading
import time

BLOCK = 4096
SLOTS = 256  # each file is overwritten in place, like a preallocated log


def _open(d, name):
    fd = os.open(os.path.join(d, name), os.O_RDWR | os.O_CREAT, 0o600)
    os.pwrite(fd, b"\0" * (BLOCK * SLOTS), 0)
    os.fsync(fd)
    return fd


class _Round:
    """One thread per file: a round releases them together and waits for all."""

    def __init__(self, fds, buf):
        self.fds, self.buf, self.k = fds, buf, 0
        self.go = threading.Barrier(len(fds) + 1)
        self.done = threading.Barrier(len(fds) + 1)
        self.stop = False
        self.threads = [threading.Thread(target=self._worker, args=(fd,), daemon=True) for fd in fds]
        for t in self.threads:
            t.start()

    def _worker(self, fd):
        while True:
            self.go.wait()
            if self.stop:
                return
            os.pwrite(fd, self.buf, (self.k % SLOTS) * BLOCK)
            os.fdatasync(fd)
            self.done.wait()

    def run(self, k):
        self.k = k
        self.go.wait()
        self.done.wait()

    def close(self):
        self.stop = True
        self.go.wait()
        for t in self.threads:
            t.join(timeout=5)


def _measure(seconds, step):
    lat, k, end = [], 0, time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        step(k)
        lat.append(time.monotonic() - t0)
        k += 1
    lat.sort()
    return {"rate": len(lat) / seconds, "mean_us": statistics.mean(lat) * 1e6,
            "p50_us": lat[len(lat) // 2] * 1e6, "p99_us": lat[int(len(lat) * 0.99)] * 1e6}


def measure(directory, seconds):
    """The four figures above, SECONDS each, with files under DIRECTORY."""
    d = os.path.join(directory, "floor")
    os.makedirs(d, exist_ok=True)
    buf = os.urandom(BLOCK)
    fds = []
    try:
        a = [_open(d, f"a{i}") for i in range(3)]
        b = [_open(d, f"b{i}") for i in range(3)]
        fds = a + b

        def one(fd, k):
            os.pwrite(fd, buf, (k % SLOTS) * BLOCK)
            os.fdatasync(fd)
        out = {"serial-1": _measure(seconds, lambda k: one(a[0], k))}
        ra, rb = _Round(a, buf), _Round(b, buf)
        try:
            out["par-3"] = _measure(seconds, ra.run)
            out["2x-par-3"] = _measure(seconds, lambda k: (ra.run(k), rb.run(k)))
        finally:
            ra.close()
            rb.close()
        out["6-serial"] = _measure(seconds, lambda k: [one(fd, k) for fd in fds])
        return out
    finally:
        for fd in fds:
            os.close(fd)
        shutil.rmtree(d, ignore_errors=True)
