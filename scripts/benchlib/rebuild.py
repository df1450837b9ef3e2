"""benchlib.rebuild: the rebuild job (blockd only): client p99 while a
drain copies replicas, against the same load with no copy under way
(issue 15, README "The cluster's shape").

Owns the job "rebuild".  On the run's blockd cluster it

  1. starts a fourth blob server (EXTRA_ID, a config made from blob3's:
     its own ports, data directory and, with TLS, a certificate from the
     run's CA) and waits until the leader sees four servers up and no move
     under way (a new server may get a replica by rebalancing first);
  2. makes the volume "rebuild" (REBUILD_QUICK bytes with --quick, else
     COPY_S seconds of the leader's rebuild_bytes_per_sec, between
     REBUILD_MIN and REBUILD_MAX: the drain must outlast the window), writes
     it end to end and settles it (agent cache clean);
  3. normal: 4k random read/write 50/50 at QD (QD1) for WINDOW_S (or
     ctx.runtime if longer): the reads go to the blob servers, since the
     agent's cache is clean;
  4. drains a blob server that holds replicas (POST /v1/nodes/ID/drain),
     waits until the leader's /v1/cluster shows the copy running (bytes
     copied growing), then runs the same fio while a thread samples the
     leader's /v1/cluster "rebuild" every SAMPLE_S: the window counts as
     "during" only if every sample from fio's start to its end shows a move
     under way (`covered`); the bytes copied in the window over its length
     is the rebuild's rate under client load;
  5. waits (at most FINISH_S) until the drain is done, the rebuild's
     average rate from drain to done, then the same fio once more (after:
     the drift of the minutes, not the goal's denominator); removes the
     drained server from the cluster (DELETE /v1/nodes/ID; its process
     runs on, with the others, to the end of the run, as does the new one,
     which now holds replicas).

The goal (report.goals_of): the worse of read and write p99 during the
rebuild within 2x of normal.  Figures go into results as ("blockd",
"rebuild"): the during run's IOPS and latency (so the main tables have a
row) and the fields below.
"""
import json
import os
import subprocess
import threading
import time

from benchlib.cluster import http_json
from benchlib.common import MiB, PROCS, Fail, free_port, say, wait_for
from benchlib.space import settle_volume
from benchlib.targets import nbd_close, nbd_open

REBUILD_QUICK = 128 * MiB
REBUILD_MIN, REBUILD_MAX = 1024 * MiB, 4096 * MiB
COPY_S = 60               # volume sized so the drain lasts about this long at the budget
WINDOW_S = 10
QD = 1
SAMPLE_S = 0.5
FINISH_S = 600
EXTRA_ID = 14
VOL = "rebuild"


def leader_admin(t):
    for addr in t.proxy_admins:
        status, st = http_json("GET", addr, "/v1/status", token=t.token, ca=t.ca)
        if status == 200 and ((st or {}).get("raft") or {}).get("state") == "leader":
            return addr
    return None


def cluster(t):
    """The leader's /v1/cluster (the leader runs the moves), or None."""
    addr = leader_admin(t)
    if addr is None:
        return None
    status, c = http_json("GET", addr, "/v1/cluster", token=t.token, ca=t.ca, timeout=10)
    return c if status == 200 and isinstance(c, dict) else None


def rebuild_of(c):
    return (c or {}).get("rebuild") or {}


def start_extra_blob(ctx, t):
    """Blob server EXTRA_ID, configured like blob3 with its own ports,
    directory and certificate; returns (name, Popen)."""
    work = os.path.dirname(os.path.dirname(t.ca)) if t.ca else None
    conf_dir = None
    for name, p in t.procs:
        if name == "blob3":
            conf_dir = os.path.dirname(p.args[-1])
    if conf_dir is None:
        raise Fail("rebuild: the cluster has no blob3 to copy a configuration from")
    with open(f"{conf_dir}/blob3.json") as f:
        cfg = json.load(f)
    b = cfg["blob"]
    base = os.path.dirname(b["data_dir"])
    name = "blob4"
    b["id"] = EXTRA_ID
    b["listen"] = f"127.0.0.1:{free_port()}"
    if "admin" in b:
        b["admin"] = f"127.0.0.1:{free_port()}"
    b["data_dir"] = f"{base}/{name}"
    cfg["log"]["file"] = os.path.join(os.path.dirname(cfg["log"]["file"]), f"{name}.log")
    if t.ca:
        out = os.path.join(os.path.dirname(b["cert_file"]), f"blob-{EXTRA_ID}")
        subprocess.run([ctx.blockd, "cert", "issue", "--ca", os.path.dirname(t.ca), "--role", "blob",
                        "--id", str(EXTRA_ID), "--out", out, "--san", "DNS:localhost",
                        "--san", "IP:127.0.0.1"], check=True, stdout=subprocess.DEVNULL)
        b["cert_file"], b["key_file"] = out + ".pem", out + ".key"
    path = f"{conf_dir}/{name}.json"
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
    logdir = os.path.dirname(cfg["log"]["file"]) if work is None else f"{work}/log"
    os.makedirs(logdir, exist_ok=True)
    p = PROCS.start(name, [ctx.blockd, "--role=blob", "--config", path], f"{logdir}/{name}.stderr",
                    15)
    return name, p


def quiet(t, n_up):
    """True once the leader sees N_UP servers up and no move under way."""
    c = cluster(t)
    if c is None:
        return False
    up = sum(1 for n in c.get("nodes", []) if n.get("up") and n.get("state") == "active")
    return up >= n_up and rebuild_of(c).get("moves", 1) == 0


def client_p99(ctx, t, run_fio, name, size):
    """4k randrw 50/50 at QD for the window: (read p99, write p99, IOPS) in µs."""
    secs = max(ctx.runtime, WINDOW_S)
    d = run_fio(ctx, t, name, ["--ioengine=nbd", f"--uri=nbd://{t.nbd_addr}/{VOL}",
                               f"--size={size}", "--rw=randrw", "--rwmixread=50", "--bs=4k",
                               f"--iodepth={QD}", "--time_based", f"--runtime={secs}",
                               f"--ramp_time={ctx.ramp}"],
                f"{ctx.out}/fio/blockd-{name}.json", timeout=secs + ctx.ramp + 120)
    j = d["jobs"][0]
    p = lambda s: j[s]["lat_ns"].get("percentile", {}).get("99.000000", 0) / 1e3
    return p("read"), p("write"), j["read"]["iops"] + j["write"]["iops"], d


def run(ctx, t, run_fio):
    """The rebuild job on blockd target T, running fio through RUN_FIO
    (benchlib.jobs', which calls this); returns its figures."""
    name, extra = start_extra_blob(ctx, t)
    t.procs.append((name, extra))  # checked, counted and stopped with the cluster
    procs = t.procs
    wait_for("4 blob servers up and no move under way", lambda: quiet(t, 4), 120, procs,
             interval=1.0)
    budget = rebuild_of(cluster(t)).get("rebuild_bytes_per_sec") or REBUILD_MAX
    size = REBUILD_QUICK if ctx.quick else \
        min(REBUILD_MAX, max(REBUILD_MIN, int(budget * COPY_S) // MiB * MiB))
    t.create(VOL, size)
    uri = f"nbd://{t.nbd_addr}/{VOL}"
    h = nbd_open(uri)
    try:
        t0 = time.monotonic()
        run_fio(ctx, t, "rebuild-fill", ["--ioengine=nbd", f"--uri={uri}", f"--size={size}",
                                         "--rw=write", "--bs=1M", "--iodepth=8"],
                f"{ctx.out}/fio/blockd-rebuild-fill.json", timeout=1200)
        settle_volume(t, h, VOL)
        say(f"rebuild: {size // MiB} MiB written and settled in {time.monotonic() - t0:.0f} s")
        wait_for("no move under way", lambda: quiet(t, 4), 300, procs, interval=1.0)

        r0, w0, iops0, _ = client_p99(ctx, t, run_fio, "rebuild-normal", size)
        settle_volume(t, h, VOL)
        say(f"rebuild: normal, 4k randrw QD{QD}: p99 read {r0:.0f} µs, write {w0:.0f} µs "
            f"({iops0:.0f} IOPS)")

        # The server to drain: the one holding the most replicas (not the new one).
        c = cluster(t)
        load = {}
        for pt in c.get("partitions", []):
            for n in pt.get("nodes", []):
                load[n] = load.get(n, 0) + 1
        victim = max((n for n in load if n != EXTRA_ID), key=lambda n: load[n])
        status, body = http_json("POST", leader_admin(t), f"/v1/nodes/{victim}/drain", {},
                                 token=t.token, ca=t.ca)
        if status != 202:
            raise Fail(f"rebuild: draining blob server {victim}: HTTP {status} {body}")
        t_drain = time.monotonic()
        copied0 = rebuild_of(cluster(t)).get("bytes_copied", 0)

        def copying():
            rb = rebuild_of(cluster(t))
            return rb.get("moves", 0) > 0 and rb.get("bytes_copied", 0) > copied0
        wait_for("the drain's copy to start", copying, 60, procs, interval=0.2)
        rb_start = rebuild_of(cluster(t))
        say(f"rebuild: draining blob server {victim} ({load[victim]} replicas); "
            f"{rb_start.get('bytes_left', 0) / MiB:.0f} MiB left, budget "
            f"{rb_start.get('rebuild_bytes_per_sec', 0) / MiB:.0f} MiB/s")

        samples, stop = [], threading.Event()

        def sample():
            while not stop.is_set():
                rb = rebuild_of(cluster(t))
                samples.append((time.monotonic(), rb.get("moves", 0),
                                rb.get("bytes_copied", 0)))
                stop.wait(SAMPLE_S)
        th = threading.Thread(target=sample, daemon=True)
        th.start()
        try:
            f0 = time.monotonic()
            r1, w1, iops1, d1 = client_p99(ctx, t, run_fio, "rebuild-during", size)
            f1 = time.monotonic()
        finally:
            stop.set()
            th.join()
        # fio's measured part is its last runtime seconds: judge those.
        m0 = f1 - max(ctx.runtime, WINDOW_S)
        win = [s for s in samples if m0 <= s[0] <= f1]
        covered = bool(win) and all(s[1] > 0 for s in win) and \
            any(s[0] >= f1 - 2 * SAMPLE_S - 1 for s in win)
        rate = ((win[-1][2] - win[0][2]) / (win[-1][0] - win[0][0])
                if len(win) >= 2 and win[-1][0] > win[0][0] else 0.0)
        settle_volume(t, h, VOL)
        say(f"rebuild: during the drain, 4k randrw QD{QD}: p99 read {r1:.0f} µs, write "
            f"{w1:.0f} µs ({iops1:.0f} IOPS); copy {rate / MiB:.1f} MiB/s in the window; "
            f"{'a move under way in every sample' if covered else 'NOT under way all through'}"
            f" ({len(win)} samples, fio {f1 - f0:.0f} s)")

        def drained():
            c = cluster(t)
            if c is None:
                return False
            held = any(victim in pt.get("nodes", []) for pt in c.get("partitions", []))
            return not held and rebuild_of(c).get("moves", 1) == 0
        wait_for(f"the drain of blob server {victim} to finish", drained, FINISH_S, procs,
                 interval=1.0)
        t_done = time.monotonic() - t_drain
        copied = rebuild_of(cluster(t)).get("bytes_copied", 0) - copied0
        say(f"rebuild: drain done in {t_done:.0f} s, {copied / MiB:.0f} MiB copied "
            f"({copied / t_done / MiB:.1f} MiB/s on average)")

        r2, w2, iops2, _ = client_p99(ctx, t, run_fio, "rebuild-after", size)
        settle_volume(t, h, VOL)
        say(f"rebuild: after, 4k randrw QD{QD}: p99 read {r2:.0f} µs, write {w2:.0f} µs")
        status, _ = http_json("DELETE", leader_admin(t), f"/v1/nodes/{victim}", token=t.token,
                              ca=t.ca)
        if status != 204:
            raise Fail(f"rebuild: removing drained blob server {victim}: HTTP {status}")

        j = d1["jobs"][0]
        ss = [j["read"], j["write"]]
        ios = sum(s["total_ios"] for s in ss)
        return {"iops": iops1, "mbs": sum(s["bw_bytes"] for s in ss) / 1e6, "ios": ios,
                "mean_us": (sum(s["lat_ns"]["mean"] * s["total_ios"] for s in ss) / ios / 1e3
                            if ios else 0.0),
                "p99_us": max(r1, w1), "volume_bytes": size, "qd": QD,
                "drained_node": victim, "covered": covered, "window_samples": len(win),
                "p99_read_normal_us": r0, "p99_write_normal_us": w0, "iops_normal": iops0,
                "p99_read_during_us": r1, "p99_write_during_us": w1,
                "p99_read_after_us": r2, "p99_write_after_us": w2, "iops_after": iops2,
                "rate_during_bytes_per_s": rate, "drain_s": t_done, "drain_bytes": copied,
                "budget_bytes_per_s": rb_start.get("rebuild_bytes_per_sec", 0)}
    finally:
        nbd_close(h)
