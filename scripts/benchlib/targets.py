"""benchlib.targets: what a target is, and the reference targets.

A target is one NBD export fio runs against: KEY names its column,
fio_args() says how fio reaches it, PROCS are the processes whose death
fails the run, and settle() runs after every job (and after the pre-fill)
so that nothing is still in flight when the next job starts on any target.
Each target holds one NBD connection for the whole run, as a VM holds its
disk.  Owns the libnbd calls (connect, flush, readiness) and the two
references: `nbdkit memory` (the NBD ceiling) and `nbdkit file` over a file
on the bench's disk.  The blockd cluster is a Target too (benchlib.cluster).

Adding a target: one function here that starts its server and returns a
Target (a subclass when fio reaches it otherwise, or it settles
otherwise), listed in start_references().  Nothing else changes: the jobs
run against every target in the list, and the report has a column and a
blockd ratio for each.

Outside references (--ref NAME=FIO_ARGS): a target the bench neither
starts nor stops, reached by fio with the arguments given (say fio's rbd
engine on a Ceph image), whose processes the bench sees only if told
(--ref-pids, --ref-pgrep): then their CPU is counted and a job settles
once they are quiet.  Nothing of such a reference lives in the project.
"""
import os
import re
import subprocess
import sys
import time

from benchlib.common import PROCS, Fail, free_port, proc_status, say, wait_for


def nbd_module():
    try:
        import nbd  # python3-libnbd
    except ImportError:
        sys.path.append("/usr/lib/python3/dist-packages")
        import nbd
    return nbd


def nbd_wait(h, done, timeout, what):
    """Drive H's state machine until DONE() is true.  Polls in slices of
    at most a second so signal handlers run (a blocking libnbd call would
    keep Ctrl-C waiting on a server that hangs)."""
    deadline = time.monotonic() + timeout
    while not done():
        if h.aio_is_dead() or h.aio_is_closed():
            raise Fail(f"{what}: the NBD connection died")
        left = deadline - time.monotonic()
        if left <= 0:
            raise Fail(f"{what}: no answer in {timeout:.0f} s")
        h.poll(int(min(left, 1.0) * 1000))


def nbd_open(uri, timeout=30.0):
    nbd = nbd_module()
    h = nbd.NBD()
    h.aio_connect_uri(uri)
    nbd_wait(h, h.aio_is_ready, timeout, f"connect {uri}")
    return h


def nbd_flush(h, timeout):
    cookie = h.aio_flush()
    nbd_wait(h, lambda: h.aio_command_completed(cookie), timeout, "NBD FLUSH")


def nbd_close(h):
    try:
        h.shutdown()
    except Exception:  # the server may already be gone; the handle is freed anyway
        pass


def nbd_ready(uri):
    try:
        h = nbd_open(uri, timeout=5)
    except Exception:  # nbd.Error or Fail: not serving yet
        return False
    size = h.get_size()
    nbd_close(h)
    return size


TARGETS = []  # every Target made, so their connections close before the servers stop


def cpu_of(pids):
    """CPU seconds (user + system) of PIDS together, or None if any is gone."""
    total = 0.0
    for pid in pids:
        st = proc_status(pid)
        if st is None:
            return None
        total += st["cpu_s"]
    return total


class Target:
    """One NBD export under test.  KEY is its column; PROCS the processes
    whose death fails the run (and whose CPU the report counts); settle()
    runs after every job."""

    def __init__(self, key, label, uri, procs):
        self.key, self.label, self.uri, self.procs = key, label, uri, procs
        self.dead = None
        # One connection held for the whole run, as a VM holds its disk:
        # the volume stays attached between jobs; settle() flushes on it.
        self.keeper = nbd_open(uri)
        TARGETS.append(self)

    def check_alive(self):
        for name, p in self.procs:
            if p.poll() is not None:
                self.dead = f"{name} (pid {p.pid}) exited with status {p.returncode}"
                raise Fail(f"{self.key}: {self.dead}")

    def settle(self):
        nbd_flush(self.keeper, 300)

    def fio_args(self):
        """How fio reaches this target (the job's own arguments follow)."""
        return ["--ioengine=nbd", f"--uri={self.uri}"]

    def fio_env(self):
        """fio's environment (None: the bench's own)."""
        return None

    def pids(self):
        return [p.pid for _, p in self.procs]

    def cpu_seconds(self):
        """CPU seconds of the target's processes so far, or None when it
        has none the bench can see (or one is gone)."""
        pids = self.pids()
        return cpu_of(pids) if pids else None

    def close(self):
        if self.keeper is not None:
            nbd_close(self.keeper)
            self.keeper = None


def start_nbdkit(ctx, key, label, plugin_args):
    port = free_port()
    argv = ["nbdkit", "-f", "--exit-with-parent", "-i", "127.0.0.1", "-p", str(port)] + plugin_args
    p = PROCS.start(f"nbdkit-{key}", argv, f"{ctx.work}/nbdkit-{key}.log", stop_timeout=5)
    uri = f"nbd://127.0.0.1:{port}/"
    wait_for(f"{key} to serve {uri}", lambda: nbd_ready(uri), 15, [(f"nbdkit-{key}", p)])
    say(f"{key}: {' '.join(argv)} (pid {p.pid})")
    return Target(key, label, uri, [(f"nbdkit-{key}", p)])


def start_memory(ctx):
    return start_nbdkit(ctx, "memory", "nbdkit memory", ["memory", str(ctx.region)])


def start_disk(ctx):
    path = f"{ctx.work}/disk.img"
    with open(path, "wb") as f:
        f.truncate(ctx.region)
    t = start_nbdkit(ctx, "disk", "local disk (nbdkit file)", ["file", path])
    return t


class FioRef(Target):
    """An outside reference (--ref NAME=FIO_ARGS): fio reaches it with
    FIO_ARGS; PIDS (possibly none) are its processes.  No NBD connection:
    the bench cannot flush it, so settle() waits for its processes to go
    quiet (below QUIET of one core over a second, at most SETTLE_MAX
    seconds) and otherwise for a fixed pause."""

    QUIET = 0.10
    SETTLE_MAX = 60.0

    def __init__(self, key, args, pids):
        self.key, self.args, self._pids = key, args, list(pids)
        self.label = key  # its fio options are in the header line
        self.uri = " ".join(args)
        self.procs = []
        self.dead = None
        self.keeper = None
        self.max_settle = 0.0
        TARGETS.append(self)

    def pids(self):
        return self._pids

    def check_alive(self):
        for pid in self._pids:
            if proc_status(pid) is None:
                self.dead = f"process {pid} is gone"
                raise Fail(f"{self.key}: {self.dead}")

    def settle(self):
        t0 = time.monotonic()
        if not self._pids:
            time.sleep(2.0)
            return
        last = self.cpu_seconds()
        while time.monotonic() - t0 < self.SETTLE_MAX and last is not None:
            time.sleep(1.0)
            now = self.cpu_seconds()
            if now is None or now - last < self.QUIET:
                break
            last = now
        self.max_settle = max(self.max_settle, time.monotonic() - t0)

    def fio_args(self):
        return list(self.args)


def ancestors():
    """This process and every process above it."""
    out, pid = set(), os.getpid()
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return out


REF_NAME = re.compile(r"[a-z][a-z0-9_-]{0,15}")
RESERVED = {"blockd", "plaintext", "memory", "disk", "fill"}


def parse_refs(refs, pid_specs, pgrep_specs):
    """The --ref, --ref-pids and --ref-pgrep options: [(name, fio args,
    pids)] in the order given.  FIO_ARGS is split at commas (fio's own
    option values may not contain one here); PIDS comma-separated; a pgrep
    pattern is matched against full command lines (pgrep -f), now.
    Raises ValueError with a message for a bad option."""
    out, pids = [], {}
    for spec in refs:
        name, eq, args = spec.partition("=")
        if not eq or not REF_NAME.fullmatch(name) or name in RESERVED:
            raise ValueError(f"--ref {spec!r}: want NAME=FIO_ARGS with NAME in [a-z0-9_-] "
                             f"and not one of {', '.join(sorted(RESERVED))}")
        if any(n == name for n, _, _ in out):
            raise ValueError(f"--ref {name} given twice")
        argv = [a for a in args.split(",") if a]
        if not argv or any(not a.startswith("--") for a in argv):
            raise ValueError(f"--ref {spec!r}: FIO_ARGS are fio options (--name=value), "
                             "separated by commas")
        out.append((name, argv, []))
    names = {n for n, _, _ in out}
    for spec in pid_specs:
        name, eq, lst = spec.partition("=")
        if not eq or name not in names:
            raise ValueError(f"--ref-pids {spec!r}: want NAME=PID[,PID...] for a --ref NAME")
        try:
            pids.setdefault(name, []).extend(int(x) for x in lst.split(",") if x)
        except ValueError:
            raise ValueError(f"--ref-pids {spec!r}: pids are numbers")
    for spec in pgrep_specs:
        name, eq, pat = spec.partition("=")
        if not eq or name not in names or not pat:
            raise ValueError(f"--ref-pgrep {spec!r}: want NAME=PATTERN for a --ref NAME")
        r = subprocess.run(["pgrep", "-f", pat], capture_output=True, text=True)
        mine = ancestors()  # the bench's own command line names the pattern
        found = [int(x) for x in r.stdout.split() if int(x) not in mine]
        if not found:
            raise ValueError(f"--ref-pgrep {spec!r}: no process matches")
        pids.setdefault(name, []).extend(found)
    for pid in (p for lst in pids.values() for p in lst):
        if proc_status(pid) is None:
            raise ValueError(f"process {pid} (for a --ref) does not exist")
    return [(n, a, sorted(set(pids.get(n, [])))) for n, a, _ in out]


def start_outside(ctx):
    """The --ref targets (ctx.refs from parse_refs), in the order given."""
    out = []
    for name, args, pids in ctx.refs:
        t = FioRef(name, args, pids)
        say(f"{name}: fio {' '.join(args)}; "
            + (f"processes {', '.join(map(str, pids))}" if pids else "no processes seen: no CPU figures"))
        out.append(t)
    return out


def start_references(ctx):
    """The targets blockd is compared with, in column order: the outside
    references first (the comparison the run is for), then the ceiling
    and the local disk."""
    return start_outside(ctx) + [start_memory(ctx), start_disk(ctx)]


def close_all():
    """Close every target's connection (before the servers are stopped)."""
    for t in TARGETS:
        t.close()
