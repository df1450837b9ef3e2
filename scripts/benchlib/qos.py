"""benchlib.qos: the QoS job (blockd only): limits held, bursts spent, a
noisy neighbour, and what the limiter costs (issue 13, README "QoS").

Owns the job "qos".  On volumes of its own, attached to the run's agent:

  1. limit: "qos-lim" held to LIMIT IOPS; fio 4k randwrite QD16 for
     WINDOW_S: the IOPS fio saw against LIMIT (goal: within 5 %);
  2. burst: the same volume at LIMIT with a burst of BURST for
     BURST_SECONDS, left idle long enough to save its credit, then the same
     load: fio's per-second IOPS log, the seconds at the burst rate and the
     rate after (expected: about BURST for BURST_SECONDS, then LIMIT);
  3. neighbour: "qos-quiet" (no limits) runs 4k randrw 50/50 at QD1 for
     WINDOW_S alone, then again while "qos-noisy" (no limits, the same
     agent) runs 4k randwrite at QD32 with a FLUSH every 64 writes: the
     quiet volume's p99 with the neighbour against without (goal: within
     2x); the quiet volume's reads go to the cluster (written and settled
     first);
  4. cost: "qos-cost" with no limits against the same volume held to
     QOS_MAX-style limits it never reaches (every request goes through the
     buckets), 4k randwrite QD32, COST_ROUNDS interleaved pairs of
     COST_S seconds: IOPS with the limiter engaged over IOPS without
     (goal: at least 0.98; this bounds the cost on an unlimited volume,
     which pays less: one test per request).  The pairs alternate which
     runs first (ABBA): the second run of a pair finds the cluster warmer.

BLOCKD_QOS_STEPS (comma-separated: limit, burst, neighbour, cost; default
all) runs only those steps, for quicker measurements of one of them.
"big" (never by default) runs it beside a neighbour writing 1 MiB blocks
at QD8 without flushes (a deep ship queue); "agents" (never by default:
scripts/bench then starts a second agent) runs it alone and then beside
the same 1 MiB neighbour on a volume of the second agent (the quiet load
here is durable 4k writes at QD1, a FLUSH after each), so the two
meet only in the proxies and blob servers (the proxy's turns between
volumes, turnq.h; A/B with --set proxy.write_turn_cap_bytes=0); "hog" (never by default) runs the quiet volume's load once more beside
BLOCKD_QOS_HOGS (default 2) busy loops that do no I/O at all: what plain
CPU contention on this machine does to its p99, which no scheduling of
I/O can remove (neighbour and hog together tell the two apart).
Around the neighbour step the run keeps every role's /metrics and each
process's CPU seconds (fio/qos-metrics-{alone,beside}-{before,after}/),
so where the quiet volume's latency goes can be read afterwards.

A change of limits reaches the agent with its next VOL_QOS poll (every
500 ms): each step waits APPLY_S after the PATCH.  Figures go into results
as ("blockd", "qos"): the limited run's IOPS and latency (so the main
tables have a row) and the fields below; report.goals_of judges them.
"""
import glob
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import ssl

from benchlib.cluster import http_json
from benchlib.common import MiB, Fail, say
from benchlib.space import settle_volume
from benchlib.targets import nbd_close, nbd_open

LIMIT = 500
BURST = 1500
BURST_SECONDS = 2
APPLY_S = 2.0             # a PATCH reaches the agent within a second (VOL_QOS every 500 ms)
WINDOW_S = 10
BURST_RUN_S = 8
COST_S = 5
COST_ROUNDS = 4
HIGH = {"iops": 10_000_000, "bps": "1T"}  # engaged on every request, never reached
SIZE = 64 * MiB
VOLS = ("qos-lim", "qos-quiet", "qos-noisy", "qos-cost")


def set_limits(t, vol, limits):
    """PATCH VOL's own limits (None: unset every field), through any proxy."""
    body = {"limits": limits if limits is not None else
            {k: None for k in ("iops", "iops_burst", "burst_seconds", "bps")}}
    for addr in t.proxy_admins:
        status, _ = http_json("PATCH", addr, f"/v1/volumes/{vol}", body, token=t.token, ca=t.ca)
        if status == 200:
            time.sleep(APPLY_S)
            return
    raise Fail(f"qos: no proxy took the limits of {vol}: {limits}")


def steps():
    """The steps to run (BLOCKD_QOS_STEPS, default all)."""
    env = os.environ.get("BLOCKD_QOS_STEPS", "")
    want = {x.strip() for x in env.split(",") if x.strip()} or {"limit", "burst", "neighbour", "cost"}
    bad = want - {"limit", "burst", "neighbour", "cost", "hog", "big", "agents"}
    if bad:
        raise Fail(f"BLOCKD_QOS_STEPS: unknown step(s) {', '.join(sorted(bad))}")
    return want


def snapshot(t, work, path):
    """Every role's /metrics (as cluster.json under WORK names them) and
    the target's CPU seconds, into PATH/."""
    os.makedirs(path, exist_ok=True)
    ctx = ssl.create_default_context(cafile=t.ca) if t.ca else None
    scheme = "https" if t.ca else "http"
    admins = {"agent": t.agent_admin}
    for f in glob.glob(f"{work}/**/cluster.json", recursive=True):
        with open(f) as fh:
            procs = json.load(fh).get("processes", [])
        if any(p.get("admin") == t.agent_admin for p in procs):  # this target's cluster
            admins.update({p["name"]: p["admin"] for p in procs
                           if p.get("role") == "blob" and p.get("admin")})
    for i, a in enumerate(t.proxy_admins):
        admins[f"proxy{i + 1}"] = a
    for name, addr in admins.items():
        try:
            with urllib.request.urlopen(f"{scheme}://{addr}/metrics", timeout=5,
                                        context=ctx) as r:
                text = r.read().decode()
        except OSError as e:
            text = f"# unreachable: {e}\n"
        with open(f"{path}/{name}.prom", "w") as f:
            f.write(text)
    cpu = {}
    for name, p in t.procs:
        try:
            with open(f"/proc/{p.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu[f"{name}:{p.pid}"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            pass
    with open("/proc/stat") as f:  # the whole machine: user nice system idle iowait ...
        ticks = [int(x) for x in f.readline().split()[1:]]
    with open(f"{path}/cpu.json", "w") as f:
        json.dump({"t": time.monotonic(), "cpu_s": cpu, "machine_ticks": ticks,
                   "clk_tck": os.sysconf("SC_CLK_TCK")}, f)


def fio_base(t, vol, size, nbd_addr=None):
    return ["--ioengine=nbd", f"--uri=nbd://{nbd_addr or t.nbd_addr}/{vol}", f"--size={size}",
            "--bs=4k"]


def write_iops(d):
    return d["jobs"][0]["write"]["iops"]


def p99s(d):
    j = d["jobs"][0]
    p = lambda s: j[s]["lat_ns"].get("percentile", {}).get("99.000000", 0) / 1e3
    return p("read"), p("write")


def durable_p99s(d):
    """p99 of the writes and of the flushes after them (fio's sync) of a
    --fsync=1 job."""
    j = d["jobs"][0]
    p = lambda x: (x or {}).get("lat_ns", {}).get("percentile", {}).get("99.000000", 0) / 1e3
    return p(j.get("write")), p(j.get("sync"))


def per_second(path):
    """fio's IOPS log (log_avg_msec=1000): the I/Os of each second, in order."""
    out = []
    with open(path) as f:
        for line in f:
            parts = [x.strip() for x in line.split(",")]
            if len(parts) >= 2 and parts[1].isdigit():
                out.append(int(parts[1]))
    return out


def run(ctx, t, run_fio):
    """The QoS job on blockd target T, running fio through RUN_FIO
    (benchlib.jobs', which calls this); returns its figures."""
    want = steps()
    size = SIZE // 2 if ctx.quick else SIZE
    window = max(ctx.runtime, WINDOW_S) if not ctx.quick else 5
    for v in VOLS:
        t.create(v, size)
    handles = {v: nbd_open(f"nbd://{t.nbd_addr}/{v}") for v in VOLS}
    out = f"{ctx.out}/fio"
    try:
        # Written end to end and settled, so reads go to the cluster.
        need = {"limit": ["qos-lim"], "burst": ["qos-lim"], "neighbour": ["qos-quiet", "qos-noisy"],
                "cost": ["qos-cost"], "hog": ["qos-quiet"],
                "big": ["qos-quiet", "qos-noisy"], "agents": ["qos-quiet"]}
        for v in [v for v in VOLS if any(v in need[s] for s in want)]:
            run_fio(ctx, t, f"qos-fill-{v}", fio_base(t, v, size) + ["--rw=write", "--bs=1M",
                                                                       "--iodepth=8"],
                    f"{out}/blockd-qos-fill-{v}.json", timeout=600)
            settle_volume(t, handles[v], v)

        # A step left out (BLOCKD_QOS_STEPS) reports zeros and no ratio.
        got, lim, series, noisy_iops, cost, on, off = 0.0, None, [], 0.0, None, [], []
        alone = beside = (0.0, 0.0)
        if "limit" in want:
            # 1. The limit held under a queue deeper than it needs.
            set_limits(t, "qos-lim", {"iops": LIMIT})
            d = run_fio(ctx, t, "qos-limit", fio_base(t, "qos-lim", size) + [
                "--rw=randwrite", "--iodepth=16", "--time_based", f"--runtime={window}",
                f"--ramp_time={ctx.ramp}"], f"{out}/blockd-qos-limit.json", timeout=window + 120)
            got = write_iops(d)
            lim = d["jobs"][0]["write"]
            settle_volume(t, handles["qos-lim"], "qos-lim")
            say(f"qos: limit {LIMIT} IOPS, QD16: {got:.0f} IOPS ({got / LIMIT:.3f}×)")

        if "burst" in want:
            # 2. A burst: saved while idle, spent first, then the limit.
            set_limits(t, "qos-lim", {"iops": LIMIT, "iops_burst": BURST,
                                      "burst_seconds": BURST_SECONDS})
            time.sleep(BURST_SECONDS + 1)  # idle: the bucket fills
            log = f"{out}/blockd-qos-burst"
            run_fio(ctx, t, "qos-burst", fio_base(t, "qos-lim", size) + [
                "--rw=randwrite", "--iodepth=16", "--time_based", f"--runtime={BURST_RUN_S}",
                f"--write_iops_log={log}", "--log_avg_msec=1000"],
                f"{out}/blockd-qos-burst.json", timeout=BURST_RUN_S + 120)
            series = per_second(f"{log}_iops.1.log")
            settle_volume(t, handles["qos-lim"], "qos-lim")
            set_limits(t, "qos-lim", None)
            say(f"qos: limit {LIMIT} with a {BURST} burst for {BURST_SECONDS} s, per second: "
                f"{', '.join(str(x) for x in series)}")

        if "neighbour" in want:
            # 3. The quiet volume's p99, alone and beside a noisy neighbour.
            quiet_args = fio_base(t, "qos-quiet", size) + [
                "--rw=randrw", "--rwmixread=50", "--iodepth=1", "--time_based",
                f"--runtime={window}", f"--ramp_time={ctx.ramp}"]
            snapshot(t, ctx.work, f"{out}/qos-metrics-alone-before")
            alone = p99s(run_fio(ctx, t, "qos-quiet-alone", quiet_args,
                                 f"{out}/blockd-qos-quiet-alone.json", timeout=window + 120))
            snapshot(t, ctx.work, f"{out}/qos-metrics-alone-after")
            settle_volume(t, handles["qos-quiet"], "qos-quiet")
            noisy_err = []

            def noisy():
                try:
                    run_fio(ctx, t, "qos-noisy", fio_base(t, "qos-noisy", size) + [
                        "--rw=randwrite", "--iodepth=32", "--fsync=64", "--time_based",
                        f"--runtime={window + ctx.ramp + 4}"],
                        f"{out}/blockd-qos-noisy.json", timeout=window + ctx.ramp + 180)
                except Fail as e:
                    noisy_err.append(str(e))
            th = threading.Thread(target=noisy)
            th.start()
            time.sleep(2)  # the neighbour at full speed first
            snapshot(t, ctx.work, f"{out}/qos-metrics-beside-before")
            beside = p99s(run_fio(ctx, t, "qos-quiet-beside", quiet_args,
                                  f"{out}/blockd-qos-quiet-beside.json", timeout=window + 120))
            snapshot(t, ctx.work, f"{out}/qos-metrics-beside-after")
            th.join()
            if noisy_err:
                raise Fail(noisy_err[0])
            noisy_iops = write_iops(_load(f"{out}/blockd-qos-noisy.json"))
            settle_volume(t, handles["qos-quiet"], "qos-quiet")
            settle_volume(t, handles["qos-noisy"], "qos-noisy")
            say(f"qos: quiet volume 4k QD1 p99 read {alone[0]:.0f} -> {beside[0]:.0f} µs, write "
                f"{alone[1]:.0f} -> {beside[1]:.0f} µs beside a neighbour at {noisy_iops:.0f} IOPS")

        big = None
        if "big" in want:
            # 3c. The quiet load beside a neighbour with a deep ship queue:
            # 1 MiB random writes at QD8, no flush, so the agent ships on
            # pressure, up to 32 ships of a MiB at once (what the
            # neighbour step's 4k writes never build: ~200 KiB in flight).
            quiet_args = fio_base(t, "qos-quiet", size) + [
                "--rw=randrw", "--rwmixread=50", "--iodepth=1", "--time_based",
                f"--runtime={window}", f"--ramp_time={ctx.ramp}"]
            big_err = []

            def big_noisy():
                try:
                    run_fio(ctx, t, "qos-noisy-big", fio_base(t, "qos-noisy", size)[:-1] + [
                        "--bs=1M", "--rw=randwrite", "--iodepth=8", "--time_based",
                        f"--runtime={window + ctx.ramp + 4}"],
                        f"{out}/blockd-qos-noisy-big.json", timeout=window + ctx.ramp + 180)
                except Fail as e:
                    big_err.append(str(e))
            th = threading.Thread(target=big_noisy)
            th.start()
            time.sleep(2)
            snapshot(t, ctx.work, f"{out}/qos-metrics-big-before")
            big = p99s(run_fio(ctx, t, "qos-quiet-big", quiet_args,
                               f"{out}/blockd-qos-quiet-big.json", timeout=window + 120))
            snapshot(t, ctx.work, f"{out}/qos-metrics-big-after")
            th.join()
            if big_err:
                raise Fail(big_err[0])
            big_mbs = _load(f"{out}/blockd-qos-noisy-big.json")["jobs"][0]["write"]["bw_bytes"] / 1e6
            settle_volume(t, handles["qos-quiet"], "qos-quiet")
            settle_volume(t, handles["qos-noisy"], "qos-noisy")
            say(f"qos: quiet volume 4k QD1 p99 read {big[0]:.0f} µs, write {big[1]:.0f} µs beside "
                f"a neighbour writing 1 MiB at QD8 ({big_mbs:.0f} MB/s)")

        far = None
        if "agents" in want:
            # 3d. The quiet load alone, then beside the 1 MiB neighbour on
            # ANOTHER agent: the agent's own turns cannot help; what is
            # shared is the proxies (the leader takes every write) and the
            # blob servers.
            if not t.agent2:
                raise Fail("qos: the agents step needs the second agent (BLOCKD_QOS_STEPS=agents)")
            t.create("qos-far", size, agent_id=t.agent2["id"])
            # Durable writes (a FLUSH after each): what reaches the proxy
            # at once, so what its turns between volumes can protect (an
            # unflushed write waits only for the agent's journal, and reads
            # never queue behind writes at the proxy).
            quiet_args = fio_base(t, "qos-quiet", size) + [
                "--rw=randwrite", "--fsync=1", "--iodepth=1", "--time_based",
                f"--runtime={window}", f"--ramp_time={ctx.ramp}"]
            far_alone = durable_p99s(run_fio(ctx, t, "qos-quiet-far-alone", quiet_args,
                                             f"{out}/blockd-qos-quiet-far-alone.json",
                                             timeout=window + 120))
            settle_volume(t, handles["qos-quiet"], "qos-quiet")
            far_err = []

            def far_noisy():
                try:
                    run_fio(ctx, t, "qos-noisy-far", fio_base(t, "qos-far", size, t.agent2["nbd_addr"])[:-1] + [
                        "--bs=1M", "--rw=randwrite", "--iodepth=8", "--time_based",
                        f"--runtime={window + ctx.ramp + 4}"],
                        f"{out}/blockd-qos-noisy-far.json", timeout=window + ctx.ramp + 180)
                except Fail as e:
                    far_err.append(str(e))
            th = threading.Thread(target=far_noisy)
            th.start()
            time.sleep(2)
            snapshot(t, ctx.work, f"{out}/qos-metrics-far-before")
            far_beside = durable_p99s(run_fio(ctx, t, "qos-quiet-far", quiet_args,
                                              f"{out}/blockd-qos-quiet-far.json",
                                              timeout=window + 120))
            snapshot(t, ctx.work, f"{out}/qos-metrics-far-after")
            th.join()
            if far_err:
                raise Fail(far_err[0])
            far_mbs = _load(f"{out}/blockd-qos-noisy-far.json")["jobs"][0]["write"]["bw_bytes"] / 1e6
            settle_volume(t, handles["qos-quiet"], "qos-quiet")
            far = {"alone": list(far_alone), "beside": list(far_beside), "noisy_mbs": far_mbs}
            say(f"qos: quiet volume durable 4k QD1 p99 write {far_alone[0]:.0f} -> {far_beside[0]:.0f} "
                f"µs, flush {far_alone[1]:.0f} -> {far_beside[1]:.0f} µs beside a neighbour on "
                f"another agent writing 1 MiB at QD8 ({far_mbs:.0f} MB/s)")

        hog = None
        if "hog" in want:
            # 3b. The same quiet load beside busy loops that do no I/O.
            n = int(os.environ.get("BLOCKD_QOS_HOGS", "2"))
            quiet_args = fio_base(t, "qos-quiet", size) + [
                "--rw=randrw", "--rwmixread=50", "--iodepth=1", "--time_based",
                f"--runtime={window}", f"--ramp_time={ctx.ramp}"]
            hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
            try:
                time.sleep(1)
                hog = p99s(run_fio(ctx, t, "qos-quiet-hog", quiet_args,
                                   f"{out}/blockd-qos-quiet-hog.json", timeout=window + 120))
            finally:
                for h in hogs:
                    h.kill()
                    h.wait()
            settle_volume(t, handles["qos-quiet"], "qos-quiet")
            say(f"qos: quiet volume 4k QD1 p99 read {hog[0]:.0f} µs, write {hog[1]:.0f} µs "
                f"beside {n} busy loops (no I/O)")

        if "cost" in want:
            # 4. The limiter's cost: the same volume and load, buckets engaged
            # but never empty, against no limits, in interleaved rounds.
            off, on = [], []
            for r in range(COST_ROUNDS):
                # ABBA: the second run of a pair finds the cluster warmer.
                for engaged in ((False, True) if r % 2 == 0 else (True, False)):
                    set_limits(t, "qos-cost", HIGH if engaged else None)
                    d = run_fio(ctx, t, f"qos-cost-{r}-{int(engaged)}", fio_base(t, "qos-cost", size) + [
                        "--rw=randwrite", "--iodepth=32", "--time_based",
                        f"--runtime={COST_S if not ctx.quick else 2}", f"--ramp_time={ctx.ramp}"],
                        f"{out}/blockd-qos-cost-{r}-{int(engaged)}.json", timeout=COST_S + 120)
                    (on if engaged else off).append(write_iops(d))
                    settle_volume(t, handles["qos-cost"], "qos-cost")
            set_limits(t, "qos-cost", None)
            cost = sum(on) / sum(off) if sum(off) else None
            say(f"qos: limiter engaged vs none, 4k randwrite QD32: {sum(on) / len(on):,.0f} vs "
                f"{sum(off) / len(off):,.0f} IOPS ({cost:.3f}×)" if cost else "qos: no cost figure")

        lat = lim["lat_ns"] if lim else {}
        return {"iops": got, "mbs": lim["bw_bytes"] / 1e6 if lim else 0.0,
                "ios": lim["total_ios"] if lim else 0,
                "mean_us": lat["mean"] / 1e3 if lim else 0.0,
                "p99_us": lat.get("percentile", {}).get("99.000000", 0) / 1e3 if lim else 0.0,
                "limit": LIMIT, "limit_ratio": got / LIMIT if got else None,
                "burst": BURST, "burst_seconds": BURST_SECONDS, "burst_series": series,
                "p99_quiet_alone_us": list(alone), "p99_quiet_beside_us": list(beside),
                "p99_quiet_hog_us": list(hog) if hog else None,
                "p99_quiet_big_us": list(big) if big else None,
                "quiet_far": far,
                "noisy_iops": noisy_iops, "cost_ratio": cost,
                "cost_iops_on": on, "cost_iops_off": off}
    finally:
        for h in handles.values():
            nbd_close(h)


def _load(path):
    """fio's JSON at PATH (fio's nbd engine may print a line before it)."""
    with open(path) as f:
        text = f.read()
    return json.loads(text[text.index("{"):])
