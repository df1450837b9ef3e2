"""benchlib.space: the space job (blockd only): bounded space amplification.

Owns the job "space": on a volume of its own ("space", SPACE_QUICK or
SPACE_FULL bytes) it

  1. writes the volume end to end, flushes, settles (agent cache clean);
  2. measures client latency before any rewrite: 4k random read/write 50/50
     at QD1 for WINDOW_S seconds (ctx.runtime if longer) (the reads go to the cluster: the
     agent's cache is clean);
  3. overwrites it with 4k random writes at QD32 totalling OVERWRITES times
     its size, a FLUSH after every FLUSH_EVERY of them, then settles.  The
     flushes make the agent ship what is dirty, as it does when a guest's
     working set exceeds its cache: each ship is one blob of scattered
     blocks, which later overwrites leave partly live (without them the
     agent's cache, larger than the volume, would absorb the overwrites
     and ship whole volumes, and no blob would ever be sparse).  The
     offsets are uniform with repetition (fio --norandommap
     --randrepeat=0): fio's default random map writes every block once per
     pass in the same order each pass, so blocks shipped together would be
     overwritten together and every blob would die whole;
  4. reads the space amplification of the job's volume: the index's live
     blob bytes and data bytes (/v1/cluster "space", kept as it applies)
     less what they were before the volume was made (the run's other
     volume, idle meanwhile, would otherwise dilute the figure);
  5. measures the same client latency again while the leader's blob
     rewrite works through the backlog (its re-pointed bytes during the
     window are recorded: a window in which it did nothing is not a
     measurement "during the rewrite");
  6. waits (at most SETTLE_S) until the amplification stops falling, and
     reads it again.

The goals (report.goals_of): amplification after step 6 at most 1.3×, and
the p99 of step 5 within 2× of step 2's.  The figures go into results as
("blockd", "space"): the overwrite pass's IOPS and latency (so the main
tables have a row), and the space fields below.
"""
import time

from benchlib.cluster import http_json
from benchlib.common import MiB, Fail, say
from benchlib.targets import nbd_close, nbd_flush, nbd_open

SPACE_QUICK = 32 * MiB
SPACE_FULL = 128 * MiB
OVERWRITES = 20
FLUSH_EVERY = 64
SETTLE_S = 600
SETTLE_QUIET_S = 15       # no fall in the amplification for this long: settled
WINDOW_S = 10             # the shortest latency window: a p99 needs samples, even in --quick
VOL = "space"


def cluster_space(t, base=None):
    """The leader's (or any proxy's) /v1/cluster "space" object; with BASE
    (an earlier one), blob and data bytes and their ratio since BASE."""
    for addr in t.proxy_admins:
        status, c = http_json("GET", addr, "/v1/cluster", token=t.token, ca=t.ca)
        if status == 200 and isinstance((c or {}).get("space"), dict):
            sp = dict(c["space"])
            if base:
                sp["blob_bytes"] -= base["blob_bytes"]
                sp["data_bytes"] -= base["data_bytes"]
                sp["rewritten_bytes"] -= base["rewritten_bytes"]
                sp["space_amplification"] = (sp["blob_bytes"] / sp["data_bytes"]
                                             if sp["data_bytes"] > 0 else 0)
            return sp
    raise Fail("no proxy answered /v1/cluster with a space figure")


def rewrite_status(t):
    """The leader's /v1/status "rewrite" object (None if no leader answered)."""
    for addr in t.proxy_admins:
        status, st = http_json("GET", addr, "/v1/status", token=t.token, ca=t.ca)
        if status == 200 and ((st or {}).get("raft") or {}).get("state") == "leader":
            return st.get("rewrite")
    return None


def settle_volume(t, h, vol=VOL):
    """FLUSH on H (a handle on VOL), then wait until the agent holds
    nothing dirty for VOL."""
    nbd_flush(h, 300)
    deadline = time.monotonic() + 300
    while True:
        status, st = http_json("GET", t.agent_admin, "/v1/status", token=t.token, ca=t.ca)
        vols = ((st or {}).get("volumes") or {}).get("volumes") or []
        v = next((v for v in vols if v.get("name") == vol), None)
        if v is not None and v.get("dirty_bytes", 0) + v.get("dirty_extents", 0) == 0 \
                and v.get("ships_in_flight", 0) == 0:
            return
        if time.monotonic() > deadline:
            raise Fail(f"the agent's cache for {vol} is not clean after 300 s")
        t.check_alive()
        time.sleep(0.1)


def client_p99(ctx, t, run_fio, uri, name, size):
    """4k randrw 50/50 QD1 for WINDOW_S (or ctx.runtime if longer): (read
    p99, write p99) in µs."""
    secs = max(ctx.runtime, WINDOW_S)
    d = run_fio(ctx, t, name, ["--ioengine=nbd", f"--uri={uri}", f"--size={size}",
                               "--rw=randrw", "--rwmixread=50", "--bs=4k", "--iodepth=1",
                               "--time_based", f"--runtime={secs}", f"--ramp_time={ctx.ramp}"],
                f"{ctx.out}/fio/blockd-{name}.json", timeout=secs + ctx.ramp + 120)
    j = d["jobs"][0]
    p = lambda s: j[s]["lat_ns"].get("percentile", {}).get("99.000000", 0) / 1e3
    return p("read"), p("write")


def run(ctx, t, run_fio):
    """The space job on blockd target T, running fio through RUN_FIO
    (benchlib.jobs', which calls this); returns its figures."""
    size = SPACE_QUICK if ctx.quick else SPACE_FULL
    b0 = cluster_space(t)
    t.create(VOL, size)
    uri = f"nbd://{t.nbd_addr}/{VOL}"
    h = nbd_open(uri)
    try:
        base = ["--ioengine=nbd", f"--uri={uri}", f"--size={size}"]
        run_fio(ctx, t, "space-fill", base + ["--rw=write", "--bs=1M", "--iodepth=8"],
                f"{ctx.out}/fio/blockd-space-fill.json", timeout=600)
        settle_volume(t, h)
        r_base, w_base = client_p99(ctx, t, run_fio, uri, "space-before", size)
        settle_volume(t, h)
        amp_before = cluster_space(t, b0)["space_amplification"]
        say(f"space: {size // MiB} MiB written; amplification {amp_before:.2f}×; client p99 "
            f"read {r_base:.0f} µs, write {w_base:.0f} µs")

        t0 = time.monotonic()
        d = run_fio(ctx, t, "space-overwrite",
                    base + ["--rw=randwrite", "--bs=4k", "--iodepth=32", "--norandommap",
                            "--randrepeat=0", f"--fsync={FLUSH_EVERY}",
                            f"--io_size={OVERWRITES * size}"],
                    f"{ctx.out}/fio/blockd-space-overwrite.json", timeout=3600)
        settle_volume(t, h)
        secs = time.monotonic() - t0
        s = d["jobs"][0]["write"]
        lat = s["lat_ns"]
        sp = cluster_space(t, b0)
        amp_after = sp["space_amplification"]
        say(f"space: {OVERWRITES}× overwritten ({s['total_ios']:,} 4k writes) in {secs:.0f} s; "
            f"amplification {amp_after:.2f}× ({sp['blob_bytes'] // MiB} MiB of blobs for "
            f"{sp['data_bytes'] // MiB} MiB of data)")

        rw0 = rewrite_status(t) or {}
        r_dur, w_dur = client_p99(ctx, t, run_fio, uri, "space-during", size)
        rw1 = rewrite_status(t) or {}
        moved = rw1.get("moved_bytes", 0) - rw0.get("moved_bytes", 0)
        settle_volume(t, h)
        say(f"space: during the rewrite ({moved // MiB} MiB re-pointed in the window) client p99 "
            f"read {r_dur:.0f} µs, write {w_dur:.0f} µs")

        t1 = time.monotonic()
        best, best_at = cluster_space(t, b0)["space_amplification"], time.monotonic()
        while time.monotonic() - t1 < SETTLE_S and time.monotonic() - best_at < SETTLE_QUIET_S:
            time.sleep(1)
            t.check_alive()
            a = cluster_space(t, b0)["space_amplification"]
            if a < best - 0.001:
                best, best_at = a, time.monotonic()
        sp = cluster_space(t, b0)
        say(f"space: settled at {sp['space_amplification']:.2f}× after "
            f"{time.monotonic() - t1:.0f} s more ({sp['rewritten_bytes'] // MiB} MiB re-pointed "
            f"in all)")
        return {"iops": s["iops"], "mbs": s["bw_bytes"] / 1e6, "ios": s["total_ios"],
                "mean_us": lat["mean"] / 1e3,
                "p99_us": lat.get("percentile", {}).get("99.000000", 0) / 1e3,
                "volume_bytes": size, "overwritten_bytes": OVERWRITES * size,
                "overwrite_s": secs, "amp_before": amp_before, "amp_after": amp_after,
                "amp_settled": sp["space_amplification"], "settle_s": time.monotonic() - t1,
                "rewritten_bytes": sp["rewritten_bytes"],
                "p99_read_before_us": r_base, "p99_write_before_us": w_base,
                "p99_read_during_us": r_dur, "p99_write_during_us": w_dur,
                "moved_during_bytes": moved}
    finally:
        nbd_close(h)
