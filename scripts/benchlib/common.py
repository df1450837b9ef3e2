"""benchlib.common: what every bench module needs.

Owns the run's two ways of ending early (Fail: exit status 1; Interrupted:
a signal, exit status 130), say() for progress lines, PROCS (every process
the bench starts, stopped by pid in reverse start order), free loopback
ports, wait_for() (every wait has a timeout and notices a dead process),
and a process's peak RSS, RSS and CPU seconds from /proc.  It knows nothing
of targets, jobs or the report.
"""
import os
import random
import signal
import socket
import subprocess
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout
MiB = 1 << 20
GiB = 1 << 30


class Fail(Exception):
    """A failure that ends the run with exit status 1."""


class Interrupted(BaseException):
    """SIGINT/SIGTERM/SIGHUP: stop everything and exit (a BaseException,
    so no `except Exception` on the way swallows it)."""


def say(msg):
    print(f"bench: {msg}", flush=True)


class Procs:
    """Every process the bench starts, stopped by pid in reverse start order."""

    def __init__(self):
        self.items = []  # [name, Popen, stop_timeout_s]

    def start(self, name, argv, log_path, stop_timeout=10.0):
        with open(log_path, "ab") as f:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                 start_new_session=True, cwd=TOP)
        self.items.append([name, p, stop_timeout])
        return p

    def adopt(self, name, p, stop_timeout):
        """Track P, started by the caller, so stop_all() stops it too."""
        self.items.append([name, p, stop_timeout])

    def forget(self, p):
        self.items = [it for it in self.items if it[1] is not p]

    @staticmethod
    def stop_one(name, p, timeout):
        if p.poll() is not None:
            return
        try:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            say(f"{name} (pid {p.pid}) did not stop in {timeout:.0f} s; SIGKILL")
            p.kill()
            p.wait()
        except ProcessLookupError:
            pass

    def stop(self, p):
        for name, q, t in self.items:
            if q is p:
                self.stop_one(name, q, t)
        self.forget(p)

    def stop_all(self):
        for name, p, t in reversed(self.items):
            self.stop_one(name, p, t)
        self.items = []


PROCS = Procs()
_used_ports = set()


def free_port():
    """A free loopback port in 20000-59999 (never one of quickstart's)."""
    for _ in range(1000):
        port = random.randint(20000, 59999)
        if port in _used_ports:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _used_ports.add(port)
        return port
    raise Fail("no free port found")


def wait_for(what, fn, timeout, procs=(), interval=0.1):
    """Call FN until it returns a true value; fail after TIMEOUT seconds or
    when one of PROCS (name, Popen) exits."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        for name, p in procs:
            if p.poll() is not None:
                raise Fail(f"{name} (pid {p.pid}) exited with status {p.returncode} "
                           f"while waiting for {what}")
        if time.monotonic() > deadline:
            raise Fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def proc_status(pid):
    """VmHWM, VmRSS (bytes) and CPU seconds of a live pid, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            st = dict(line.split(":", 1) for line in f if ":" in line)
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    kb = lambda k: int(st[k].split()[0]) * 1024 if k in st else 0
    tck = os.sysconf("SC_CLK_TCK")
    return {"hwm": kb("VmHWM"), "rss": kb("VmRSS"),
            "cpu_s": (int(fields[11]) + int(fields[12])) / tck}


def tail(path, n=15):
    """The last N lines of a log, or "" when it cannot be read."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""
