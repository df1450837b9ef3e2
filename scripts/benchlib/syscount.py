"""benchlib.syscount: what one durable 4 KiB write costs in system calls,
counted per blockd process (issue 17, item 3; README "Benchmarks").

After the durable job (w4k-qd1-fsync), N more writes at QD1 with a FLUSH
after each run on blockd's volume while `perf stat` counts, per process,
the syscall tracepoints below.  Each count is divided by N: flushes per
durable write (fdatasync, fsync, msync, sync_file_range), file writes (pwrite64 + pwritev), the
writes and reads that carry wire frames and NBD (write, writev, sendmsg,
read, readv, recvfrom, recvmsg: TLS records go out by write(); eventfd
wake-ups between threads are writes too) and reactor wake-ups
(epoll_wait).  Heartbeats and ticks run meanwhile; at a few hundred
writes a second they are a small part of the figure, and the same run
without I/O (IDLE_S seconds, scaled to the counted run's length) is
subtracted.

This counts what happens, not what is in series.  What is in series
comes from the roles' own latency histograms, read from every process's
/metrics before and after the same run (STAGES): the mean of each stage
per write (the agent's FLUSH, its ship to the proxy's ack, the proxy's
write, its Raft commit, the blob servers' group-commit flush), so the
time of one durable write can be laid out stage by stage.  Needs perf and tracefs (root); when perf
cannot attach, the figures are None and the run goes on.
"""
import os
import re
import signal
import subprocess
import time

from benchlib.cluster import http_raw
from benchlib.common import say

EVENTS = {
    "flush": ("fdatasync", "fsync", "msync", "sync_file_range"),
    "file_write": ("pwrite64", "pwritev", "pwritev2"),
    "net_write": ("write", "writev", "sendmsg", "sendto"),
    "net_read": ("read", "readv", "recvfrom", "recvmsg"),
    "epoll_wait": ("epoll_wait",),
}
WRITES = 2000      # durable writes counted
IDLE_S = 3.0       # the same processes with no I/O: the background to subtract


# Histograms (name prefixes) whose mean per write lays out a durable write.
STAGES = ("blockd_agent_flush_seconds", "blockd_agent_ship_seconds", "blockd_proxy_write_seconds",
          "blockd_proxy_commit_seconds", "blockd_blob_flush_seconds", "blockd_blob_request_seconds")


def _scrape(t):
    """{(process, series): (count, sum seconds)} of the STAGES histograms."""
    out = {}
    for name, addr in getattr(t, "admins", {}).items():
        if not addr:
            continue
        status, raw = http_raw("GET", addr, "/metrics", token=t.token, ca=t.ca)
        if status != 200 or not raw:
            continue
        for line in raw.decode(errors="replace").splitlines():
            m = re.match(r"(blockd_\w+?)_(sum|count)(\{[^}]*\})? ([0-9.eE+-]+)$", line)
            if not m or m.group(1) not in STAGES:
                continue
            key = (name, m.group(1) + (m.group(3) or ""))
            c, sm = out.get(key, (0.0, 0.0))
            if m.group(2) == "count":
                c = float(m.group(4))
            else:
                sm = float(m.group(4))
            out[key] = (c, sm)
    return out


def _stages(before, after):
    """[(process, series, count per write, mean µs)] for series that moved."""
    rows = []
    for key, (c1, s1) in sorted(after.items()):
        c0, s0 = before.get(key, (0.0, 0.0))
        if c1 - c0 >= WRITES / 10:
            rows.append((key[0], key[1], (c1 - c0) / WRITES, (s1 - s0) / (c1 - c0) * 1e6))
    return rows


def _role(name):
    m = re.match(r"[a-z]+", name)
    return m.group(0) if m else name


def _perf(pids, out):
    ev = ",".join(f"syscalls:sys_enter_{s}" for ss in EVENTS.values() for s in ss)
    argv = ["perf", "stat", "-x", ",", "--no-big-num", "-e", ev, "-p", ",".join(map(str, pids)),
            "--per-thread", "-o", out]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _parse(path, tid_to_name):
    """perf's CSV per thread: 'comm-tid,count,,event,...' -> {name: {event: n}}."""
    per = {}
    with open(path) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) < 4 or not parts[0] or parts[0].startswith("#"):
                continue
            m = re.search(r"-(\d+)$", parts[0])
            try:
                n = int(parts[1])
            except ValueError:
                continue  # "<not counted>"
            if not m:
                continue
            name = tid_to_name.get(int(m.group(1)))
            ev = parts[3].split(":")[-1].replace("sys_enter_", "")
            if name is not None:
                per.setdefault(name, {}).setdefault(ev, 0)
                per[name][ev] += n
    return per


def _threads(procs):
    tids = {}
    for name, p in procs:
        try:
            for tid in os.listdir(f"/proc/{p.pid}/task"):
                tids[int(tid)] = name
        except OSError:
            pass
    return tids


def _count(procs, seconds=None, work=None, out=None):
    pids = [p.pid for _, p in procs]
    perf = _perf(pids, out)
    time.sleep(0.5)  # perf attached
    t0 = time.monotonic()
    if work is not None:
        work()
    else:
        time.sleep(seconds)
    secs = time.monotonic() - t0
    perf.send_signal(signal.SIGINT)
    try:
        perf.wait(timeout=10)
    except subprocess.TimeoutExpired:
        perf.kill()
        perf.wait()
    return _parse(out, _threads(procs)), secs


def measure(ctx, t, run_fio):
    """Count on blockd target T; returns {role: {category: per write}},
    plus "total", or None when perf could not count."""
    if subprocess.run(["perf", "--version"], capture_output=True).returncode != 0:
        say("syscount: no perf; not counted")
        return None
    out = f"{ctx.out}/syscount"
    os.makedirs(out, exist_ok=True)
    fio_args = [f"--rw=randwrite", "--bs=4k", "--iodepth=1", "--fsync=1", f"--number_ios={WRITES}"]
    try:
        idle, idle_s = _count(t.procs, seconds=IDLE_S, out=f"{out}/idle.csv")
        m0 = _scrape(t)
        busy, busy_s = _count(t.procs, work=lambda: run_fio(
            ctx, t, "syscount", fio_args, f"{out}/fio.json", timeout=300), out=f"{out}/busy.csv")
        stages = _stages(m0, _scrape(t))
    except OSError as e:
        say(f"syscount: perf failed ({e}); not counted")
        return None
    if not busy:
        say("syscount: perf counted nothing (no tracefs, or not root); not counted")
        return None
    scale = busy_s / idle_s
    res = {}
    for name in busy:
        role = _role(name)
        r = res.setdefault(role, {c: 0.0 for c in EVENTS} | {"processes": 0})
        r["processes"] += 1
        for cat, evs in EVENTS.items():
            b = sum(busy[name].get(e, 0) for e in evs)
            i = sum(idle.get(name, {}).get(e, 0) for e in evs) * scale
            r[cat] += max(0.0, b - i) / WRITES
    tot = {c: sum(r[c] for r in res.values()) for c in EVENTS}
    res["total"] = tot
    res["stages"] = stages
    say("syscount: per durable 4k write: " + "; ".join(
        f"{role} " + " ".join(f"{c}={v:.2f}" for c, v in r.items() if c != "processes")
        for role, r in res.items() if role != "stages"))
    for proc, series, per, mean in stages:
        say(f"syscount: {proc} {series}: {per:.2f} per write, mean {mean:,.0f} µs")
    return res
