"""benchlib.jobs: the fio jobs and running them.

Owns the job table (JOBS: name, table title, fio rw, block size, queue
depth, a FLUSH after every write or not), the order they run in, the
pre-fill pass every target gets first (FILL, timed by the wall clock),
running fio against a target (fio's arguments, its time limit, its JSON:
fio's nbd engine may print a line before the JSON), the figures taken from
it (IOPS, MB/s, mean and p99 latency in µs), and run_jobs(): every job
against every target in turn, so machine noise hits them alike, each
target settled after each job, a failed job recorded and the run going on.

Adding a job: a Job in JOBS (table order) and its name in RUN_ORDER; when
fio needs more than rw/bs/iodepth/fsync, job_args() adds it, and when its
figures are not one direction's, metrics() reads them.  The report lays
out whatever jobs ran.  A job that only means something for blockd (the
space, qos and rebuild jobs, benchlib.space, .qos and .rebuild) has blockd_only and a module of its own that
run_jobs() calls instead of one fio run per target; a slow one is left out
of --quick unless named in --jobs.
"""
import json
import os
import subprocess
import time

from benchlib import qos, rebuild, space
from benchlib.common import GiB, MiB, PROCS, Fail, say, tail


class Job:
    """One fio job: NAME on the command line and in file names, TITLE in
    the tables; fio's --rw, --bs (or BSRANGE, "4k-64k") and --iodepth;
    FSYNC: a FLUSH after every FSYNC-th write (fio --fsync=N; with 1 its
    latency is added to the write's); MIX: the read percentage of a randrw
    job (its figures are both directions summed)."""

    def __init__(self, name, title, rw, bs, qd, fsync=0, bsrange=None, mix=None, blockd_only=False,
                 slow=False):
        self.name, self.title, self.rw, self.bs, self.qd = name, title, rw, bs, qd
        self.fsync, self.bsrange, self.mix = int(fsync), bsrange, mix
        self.blockd_only, self.slow = blockd_only, slow

    @property
    def is_read(self):
        return self.rw in ("randread", "read")

    @property
    def big(self):  # throughput in MB/s rather than IOPS
        return self.bs >= MiB


# Table order (the order).
JOBS = [
    Job("w4k-qd1", "4k randwrite QD1", "randwrite", 4096, 1),
    Job("w4k-qd1-fsync", "4k randwrite QD1 fsync=1", "randwrite", 4096, 1, fsync=1),
    Job("r4k-qd1", "4k randread QD1", "randread", 4096, 1),
    Job("r4k-qd32", "4k randread QD32", "randread", 4096, 32),
    Job("w4k-qd32", "4k randwrite QD32", "randwrite", 4096, 32),
    # 512-byte writes: for blockd each a read-modify-write of a 4k block
    # (README "NBD clients"); against w4k-qd32, what that costs.
    Job("w512-qd32", "512 randwrite QD32", "randwrite", 512, 32),
    Job("w1m-qd8", "1M seq write QD8", "write", MiB, 8),
    Job("r1m-qd8", "1M seq read QD8", "read", MiB, 8),
    # A VM's disk: mostly reads, sizes from a block to 64 KiB, a guest
    # filesystem's flush every 32 writes.  IOPS and MB/s of both
    # directions together.
    Job("rw-mix-qd16", "randrw 70/30 4k–64k QD16 fsync=32", "randrw", 4096, 16, fsync=32,
        bsrange="4k-64k", mix=70),
    # benchlib.space: 4k random overwrites of 20x a volume, the blob rewrite
    # bounding the space they leave (blockd only).
    Job("space", "4k randwrite QD32, 20× overwrite (space)", "randwrite", 4096, 32,
        blockd_only=True, slow=True),
    # benchlib.qos: a limit held, a burst spent, a noisy neighbour, the
    # limiter's cost (blockd only); its row is the limited volume's run.
    Job("qos", "4k randwrite QD16 held to 500 IOPS (qos)", "randwrite", 4096, 16,
        blockd_only=True, slow=True),
    # benchlib.rebuild: a fourth blob server, one drained: client p99 during
    # the copy against without (blockd only); its row is the run during it.
    Job("rebuild", "4k randrw QD1 during a drain's rebuild", "randrw", 4096, 1, mix=50,
        blockd_only=True, slow=True),
]
JOB_BY_NAME = {j.name: j for j in JOBS}
# Not a fio job of its own: the pre-fill pass (one sequential pass over the
# region, then FLUSH; for blockd until the agent's cache is clean), timed by
# the wall clock.  Unlike w1m-qd8 on the local disk, which rewrites a file
# that fits in the page cache, it includes getting the data onto the disk.
FILL = Job("fill", "1M seq write QD8, one pass + flush", "write", MiB, 8)
# Run order: reads first, on the pre-filled data; then writes, the 4k ones
# last so the index is at its most fragmented when bytes/extent is read.
RUN_ORDER = ["r4k-qd1", "r4k-qd32", "r1m-qd8", "w1m-qd8", "rw-mix-qd16", "w4k-qd1", "w4k-qd1-fsync",
             "w4k-qd32", "w512-qd32", "space", "qos",
             "rebuild"]  # last: it leaves the cluster with a server drained and one added


def run_fio(ctx, t, name, args, out_path, timeout, at_ramp=None):
    """Run fio job NAME with ARGS against target T over ctx.region bytes,
    JSON to OUT_PATH; returns the parsed JSON.  AT_RAMP, if given, is
    called once ctx.ramp seconds after fio started (when fio resets its
    statistics), or at fio's end if that comes first.  Fail when fio runs
    past TIMEOUT seconds, exits non-zero, writes no JSON or reports a job
    error.  Its stderr is kept next to the JSON only when not empty."""
    argv = ["fio", f"--name={name}"] + t.fio_args() + [
        f"--size={ctx.region}", "--lat_percentiles=1", f"--output={out_path}", "--output-format=json"] + args
    err_path = f"{ctx.out}/fio/{t.key}-{name}.stderr"
    with open(err_path, "wb") as err:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                             start_new_session=True, env=t.fio_env())
    PROCS.adopt(f"fio {name}", p, 5)
    try:
        if at_ramp is not None:
            try:
                p.wait(timeout=ctx.ramp)
            except subprocess.TimeoutExpired:
                pass
            at_ramp()
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Fail(f"{t.key} {name}: fio did not finish in {timeout} s")
    finally:
        PROCS.stop(p)
    try:
        with open(out_path) as f:
            text = f.read()
        d = json.loads(text[text.index("{"):])  # fio may print a line before the JSON
    except (OSError, ValueError) as e:
        raise Fail(f"{t.key} {name}: fio exit status {rc}, no JSON ({e}); {tail(err_path, 5)}")
    errs = [j.get("error", 0) for j in d.get("jobs", [])]
    if rc != 0 or any(errs) or not errs:
        raise Fail(f"{t.key} {name}: fio exit status {rc}, job error {errs}: {tail(err_path, 5)}")
    if os.path.getsize(err_path) == 0:
        os.unlink(err_path)
    return d


def metrics(job, d):
    """The figures of JOB from fio's JSON D: IOPS, MB/s, bytes and I/O
    count (one direction's, or both summed for a mixed job), mean, p99 and
    max latency in µs (a mixed job: the mean weighted by I/Os, the larger
    p99 and max), and fio's own CPU seconds over the measured time
    (client_cpu_s: for an rbd target this is librbd's work)."""
    j = d["jobs"][0]
    dirs = ["read", "write"] if job.mix is not None else ["read" if job.is_read else "write"]
    ss = [j[k] for k in dirs]
    ios = sum(s["total_ios"] for s in ss)
    mean = sum(s["lat_ns"]["mean"] * s["total_ios"] for s in ss) / ios if ios else 0.0
    m = {"iops": sum(s["iops"] for s in ss), "mbs": sum(s["bw_bytes"] for s in ss) / 1e6,
         "ios": ios, "bytes": sum(s["io_bytes"] for s in ss), "mean_us": mean / 1e3,
         "p99_us": max(s["lat_ns"].get("percentile", {}).get("99.000000", 0) for s in ss) / 1e3,
         "max_us": max(s["lat_ns"]["max"] for s in ss) / 1e3}
    runtime_s = j.get("job_runtime", 0) / 1e3
    m["runtime_s"] = runtime_s
    m["client_cpu_s"] = (j.get("usr_cpu", 0) + j.get("sys_cpu", 0)) / 100 * runtime_s
    if job.fsync == 1:  # a durable write is the write plus its flush
        sl = j["sync"]["lat_ns"]
        m["mean_us"] += sl["mean"] / 1e3
        m["p99_us"] += sl.get("percentile", {}).get("99.000000", 0) / 1e3
        m["flush_mean_us"] = sl["mean"] / 1e3
    return m


def job_args(ctx, job):
    """fio's arguments for JOB: time based, ctx.runtime after ctx.ramp."""
    a = [f"--rw={job.rw}", f"--iodepth={job.qd}", "--time_based",
         f"--runtime={ctx.runtime}", f"--ramp_time={ctx.ramp}"]
    a.append(f"--bsrange={job.bsrange}" if job.bsrange else f"--bs={job.bs}")
    if job.mix is not None:
        a.append(f"--rwmixread={job.mix}")
    if job.fsync:
        a.append(f"--fsync={job.fsync}")
    return a


def prefill(ctx, t):
    """FILL on target T: one sequential pass over the region, flushed and
    settled; its MB/s by the wall clock, and the CPU seconds T's processes
    spent on it (settling included).  A failure here ends the run."""
    t0 = time.monotonic()
    c0 = t.cpu_seconds()
    run_fio(ctx, t, "prefill", ["--rw=write", "--bs=1M", "--iodepth=8", "--end_fsync=1"],
            f"{ctx.out}/fio/{t.key}-prefill.json", timeout=600)
    t.settle()
    t.check_alive()
    c1 = t.cpu_seconds()
    secs = time.monotonic() - t0
    say(f"{t.key}: pre-filled {ctx.region // MiB} MiB in {secs:.1f} s")
    mbs = ctx.region / secs / 1e6
    return {"mbs": mbs, "iops": mbs, "mean_us": None, "p99_us": None, "seconds": secs,
            "bytes": ctx.region, "server_cpu_s": None if c0 is None or c1 is None else c1 - c0}


def run_one(ctx, t, job):
    """JOB against target T, then T settled: its figures (metrics()), plus
    server_cpu_s, the CPU seconds T's processes spent from the end of the
    ramp to the end of settling (the shipping a buffered job leaves behind
    is part of what its bytes cost), or None when T shows no processes."""
    out = f"{ctx.out}/fio/{t.key}-{job.name}.json"
    cpu = {}

    def at_ramp():
        cpu["start"] = t.cpu_seconds()
    d = run_fio(ctx, t, job.name, job_args(ctx, job), out, timeout=ctx.runtime + ctx.ramp + 120,
                at_ramp=at_ramp)
    m = metrics(job, d)
    t.settle()
    end = t.cpu_seconds()
    m["server_cpu_s"] = None if end is None or cpu.get("start") is None else end - cpu["start"]
    return m


def run_jobs(ctx, targets, before_job=None):
    """Pre-fill every target, then run ctx.jobs in RUN_ORDER, each against
    every target in turn.  BEFORE_JOB(job), if given, runs before each job
    (the disk's floor is measured next to the durable job).  Returns
    {(target key, job name): figures}, where a job that failed is "error"
    and one on a dead target "dead"; a failed job is appended to
    ctx.errors and the run goes on (a failed pre-fill raises Fail)."""
    results = {}
    for t in targets:
        results[(t.key, FILL.name)] = prefill(ctx, t)

    for name in RUN_ORDER:
        job = JOB_BY_NAME[name]
        if job not in ctx.jobs:
            continue
        if before_job is not None:
            before_job(job)
        for t in targets:
            if job.blockd_only and t.key != "blockd":
                continue
            if t.dead:
                results[(t.key, name)] = "dead"
                continue
            try:
                if job.blockd_only:
                    m = {"space": space, "qos": qos, "rebuild": rebuild}[job.name].run(ctx, t, run_fio)
                    t.settle()
                else:
                    m = run_one(ctx, t, job)
                results[(t.key, name)] = m
                t.check_alive()
            except Fail as e:
                ctx.errors.append(str(e))
                say(f"ERROR {e}")
                results.setdefault((t.key, name), "error")
                try:
                    t.check_alive()
                except Fail:
                    pass
                continue
            thr = f"{m['mbs']:,.0f} MB/s" if job.big else f"{m['iops']:,.0f} IOPS"
            cpu = m.get("server_cpu_s")  # a blockd-only job's module may not measure it
            cpu_txt = (f"  cpu {cpu / (m['bytes'] / GiB):6.1f} s/GiB"
                       if cpu is not None and m.get("bytes") else "")
            say(f"{name:14} {t.key:9} {thr:>14}  mean {m['mean_us']:8.1f} µs  p99 {m['p99_us']:8.1f} µs"
                + cpu_txt)
    return results
