"""benchlib.report: what a run found, as tables, goals and files.

Owns the layout of results.md (a header naming the commit, machine, build,
fio and targets; one table each for throughput, mean and p99 latency with a
column per target and blockd ÷ each reference; CPU seconds per GiB moved,
of each target's processes and of fio itself; the disk's flush floor;
blockd's processes, index and idle-volume figures; the goals; the
errors), results.json (the same
figures, keyed "target/job"), the bench-results/latest link, number and
ratio formatting, and the goals: each a ratio or figure of this run against
its target, MET, SHORT or n/a.  It reads the results run_jobs() returns and
the figures Blockd.report() returns, and starts nothing.

A new target or job needs nothing here (columns and rows follow the
results); a new goal is one goal() call in goals_of().
"""
import json
import os

from benchlib.common import GiB, MiB, TOP
from benchlib.jobs import FILL

MIN_EXTENTS = 50000  # judge index bytes/extent only on an index at least this big


def fmt_num(v, big=False):
    if v is None:
        return "–"
    if big or v >= 100:
        return f"{v:,.0f}"
    return f"{v:.1f}"


def ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b


def fmt_ratio(r):
    return "–" if r is None else f"{r:.2f}×"


FIO_TOP_BUCKET_US = 17e6  # fio's latency histogram ends near 17.1 s: a percentile there is a floor


def clip(v):
    return "≥ " if isinstance(v, (int, float)) and v >= FIO_TOP_BUCKET_US else ""


def render(ctx, targets, results, blockd, goals):
    """The text of results.md."""
    keys = [t.key for t in targets]
    labels = {t.key: t.label for t in targets}
    refs = [k for k in keys if k != "blockd"]
    L = []
    L.append(f"# blockd benchmark {ctx.stamp}")
    L.append("")
    L.append(f"commit {ctx.commit}; {ctx.machine}; build {ctx.buildinfo}; fio {ctx.fio_version}")
    L.append(f"mode {'quick' if ctx.quick else 'full'}: region {ctx.region // MiB} MiB per target, "
             f"{ctx.runtime} s per job after {ctx.ramp} s ramp; targets: "
             + ", ".join(f"{t.key} = {t.label} {t.uri}" for t in targets))
    if ctx.blockd_skipped:
        L.append(f"blockd: SKIPPED ({ctx.blockd_skipped})")
    L.append("")
    sections = [("Throughput: IOPS (4k) or MB/s (1M); ratio > 1 is faster", "thr", False),
                ("Mean latency, µs (fsync=1: write + flush); ratio > 1 is slower", "mean_us", True),
                ("p99 latency, µs (fsync=1: p99 write + p99 flush); ratio > 1 is slower", "p99_us", True)]
    for title, field, _ in sections:
        L.append(f"## {title}")
        L.append("")
        if field == "p99_us":
            L.append("(≥: past the top of fio's histogram, about 17.1 s)")
            L.append("")
        hdr = ["job"] + [labels[k] for k in keys]
        if "blockd" in keys:
            hdr += [f"blockd ÷ {k}" for k in refs]
        L.append("| " + " | ".join(hdr) + " |")
        L.append("|---" + "|--:" * (len(hdr) - 1) + "|")
        for job in ctx.jobs + ([FILL] if field == "thr" else []):
            def val(k):
                r = results.get((k, job.name))
                if r is None:
                    return None
                if isinstance(r, str):
                    return r
                if field == "thr":
                    return r["mbs"] if job.big else r["iops"]
                return r.get(field)
            row = [job.title + (" MB/s" if field == "thr" and job.big else "")]
            for k in keys:
                v = val(k)
                row.append(v if isinstance(v, str) else clip(v) + fmt_num(v, field == "thr"))
            if "blockd" in keys:
                b = val("blockd")
                for k in refs:
                    v = val(k)
                    ok = not isinstance(b, str) and not isinstance(v, str)
                    r = ratio(b, v) if ok else None
                    row.append((clip(b) if r is not None else "") + fmt_ratio(r))
            L.append("| " + " | ".join(row) + " |")
        L.append("")
    render_cpu(L, ctx, keys, labels, refs, results)
    if getattr(ctx, "floor", None):
        L.append("## The disk's flush floor (4 KiB pwrite + fdatasync, measured before the durable job)")
        L.append("")
        L.append("| pattern | per second | mean µs | p50 µs | p99 µs |")
        L.append("|---|--:|--:|--:|--:|")
        for name, f in ctx.floor.items():
            L.append(f"| {name} | {fmt_num(f['rate'], True)} | {fmt_num(f['mean_us'], True)} "
                     f"| {fmt_num(f['p50_us'], True)} | {fmt_num(f['p99_us'], True)} |")
        L.append("")
        L.append("2x-par-3 is the disk's part of a durable replicated write: three blob copies "
                 "flushed in parallel, then three Raft log appends in parallel.")
        L.append("")
    sc = getattr(ctx, "syscount", None)
    if sc:
        L.append("## System calls per durable 4k write (QD1, a FLUSH after each; perf stat, "
                 "per process, idle background subtracted)")
        L.append("")
        cats = ["flush", "file_write", "net_write", "net_read", "epoll_wait"]
        L.append("| processes | " + " | ".join(cats) + " |")
        L.append("|---|" + "--:|" * len(cats))
        for role, r in sc.items():
            if role == "stages":
                continue
            who = f"{role} ×{r['processes']}" if "processes" in r else role
            L.append(f"| {who} | " + " | ".join(f"{r[c]:.2f}" for c in cats) + " |")
        L.append("")
        L.append("flush: fdatasync, fsync, msync, sync_file_range; file_write: pwrite64, pwritev; "
                 "net_write/net_read: write, writev, sendmsg / read, readv, recvmsg (TLS records, "
                 "NBD, eventfd wake-ups).  A count, not the critical path: the README says "
                 "which of these a write waits for.")
        L.append("")
        if sc.get("stages"):
            L.append("Stages of the same writes, from the roles' latency histograms (mean over "
                     "the run; a stage inside another overlaps it):")
            L.append("")
            L.append("| process | histogram | per write | mean µs |")
            L.append("|---|---|--:|--:|")
            for proc, series, per, mean in sc["stages"]:
                L.append(f"| {proc} | {series} | {per:.2f} | {mean:,.0f} |")
            L.append("")
    if blockd is not None:
        rep = blockd.report_data
        L.append("## blockd processes (at the end of the run)")
        L.append("")
        L.append("| process | pid | peak RSS (VmHWM) MiB | RSS MiB | CPU s |")
        L.append("|---|--:|--:|--:|--:|")
        for p in rep["processes"]:
            if "hwm" in p:
                L.append(f"| {p['name']} | {p['pid']} | {p['hwm'] / MiB:.1f} | {p['rss'] / MiB:.1f} "
                         f"| {p['cpu_s']:.1f} |")
            else:
                L.append(f"| {p['name']} | {p['pid']} | exited | | |")
        L.append("")
        L.append("LMDB index: " + "; ".join(
            f"{i['proxy']} ({i['state']}): {i['extents']} extents, {i['bytes']} bytes, "
            f"{fmt_num(i['bytes_per_extent'])} bytes/extent" for i in rep["index"]))
        sp = next((i for i in rep["index"] if i.get("state") == "leader"
                   and isinstance(i.get("space_amplification"), (int, float))), None)
        if sp:
            L.append(f"Blob space: {sp['blob_bytes'] / MiB:.0f} MiB of live blobs (per copy) for "
                     f"{sp['data_bytes'] / MiB:.0f} MiB addressed by volumes: "
                     f"{sp['space_amplification']:.2f}× (partly overwritten blobs)")
        if rep["idle_volumes"]:
            iv = rep["idle_volumes"]
            L.append(f"Agent RSS with {iv['volumes']} idle volumes attached: "
                     f"{iv['rss_before'] / MiB:.1f} → {iv['rss_after'] / MiB:.1f} MiB, "
                     f"{iv['per_volume'] / 1024:.0f} KiB per volume")
        sj = blockd_space(results)
        if sj:
            L.append(f"Space job: {sj['volume_bytes'] // MiB} MiB volume overwritten "
                     f"{sj['overwritten_bytes'] // sj['volume_bytes']}× with 4k random writes in "
                     f"{sj['overwrite_s']:.0f} s; space amplification {sj['amp_before']:.2f}× before, "
                     f"{sj['amp_after']:.2f}× right after, {sj['amp_settled']:.2f}× once the blob "
                     f"rewrite settled ({sj['settle_s']:.0f} s later, "
                     f"{sj['rewritten_bytes'] / MiB:.0f} MiB re-pointed); client 4k QD1 p99 read "
                     f"{sj['p99_read_before_us']:.0f} → {sj['p99_read_during_us']:.0f} µs, write "
                     f"{sj['p99_write_before_us']:.0f} → {sj['p99_write_during_us']:.0f} µs during "
                     f"the rewrite ({sj['moved_during_bytes'] / MiB:.0f} MiB re-pointed in that "
                     f"window)")
        qj = blockd_qos(results)
        if qj:
            L.append(f"QoS job: {qj['iops']:.0f} IOPS under a {qj['limit']} IOPS limit at QD16; "
                     f"with a {qj['burst']} burst for {qj['burst_seconds']} s, per second "
                     f"{', '.join(str(x) for x in qj['burst_series'])}; a quiet 4k QD1 volume's "
                     f"p99 read/write {qj['p99_quiet_alone_us'][0]:.0f}/"
                     f"{qj['p99_quiet_alone_us'][1]:.0f} µs alone, "
                     f"{qj['p99_quiet_beside_us'][0]:.0f}/{qj['p99_quiet_beside_us'][1]:.0f} µs "
                     f"beside a neighbour at {qj['noisy_iops']:.0f} IOPS; limiter engaged vs none "
                     f"{', '.join(f'{a:.0f}/{b:.0f}' for a, b in zip(qj['cost_iops_on'], qj['cost_iops_off']))}"
                     f" IOPS")
            far = qj.get("quiet_far")
            if far:
                L.append(f"QoS, a neighbour on another agent (1 MiB QD8 at {far['noisy_mbs']:.0f} MB/s): "
                         f"the quiet volume's durable 4k QD1 p99 write/flush "
                         f"{far['alone'][0]:.0f}/{far['alone'][1]:.0f} µs alone, "
                         f"{far['beside'][0]:.0f}/{far['beside'][1]:.0f} µs beside it")
        rj = blockd_rebuild(results)
        if rj:
            L.append(f"Rebuild job: {rj['volume_bytes'] // MiB} MiB volume, blob server "
                     f"{rj['drained_node']} of 4 drained; client 4k randrw QD{rj['qd']} p99 read "
                     f"{rj['p99_read_normal_us']:.0f} → {rj['p99_read_during_us']:.0f} µs, write "
                     f"{rj['p99_write_normal_us']:.0f} → {rj['p99_write_during_us']:.0f} µs "
                     f"(after: {rj['p99_read_after_us']:.0f}/{rj['p99_write_after_us']:.0f} µs); "
                     f"copy {rj['rate_during_bytes_per_s'] / MiB:.1f} MiB/s during the window "
                     f"({'under way all through' if rj['covered'] else 'NOT under way all through'}), "
                     f"{rj['drain_bytes'] / MiB:.0f} MiB in {rj['drain_s']:.0f} s in all "
                     f"(budget {rj['budget_bytes_per_s'] / MiB:.0f} MiB/s)")
        L.append(f"Agent cache clean before every read job: NBD FLUSH, then /v1/status "
                 f"dirty_bytes = dirty_extents = ships_in_flight = 0 (longest wait "
                 f"{rep['max_clean_wait_s']} s)")
        L.append("")
    L.append("## Goals (ratios in this run)")
    L.append("")
    L.append("| goal | measured | target | |")
    L.append("|---|--:|--:|---|")
    for g in goals:
        L.append(f"| {g['goal']} | {g['measured']} | {g['target']} | {g['status']} |")
    L.append("")
    if ctx.errors:
        L.append("## Errors")
        L.append("")
        for e in ctx.errors:
            L.append(f"- {e}")
        L.append("")
    return "\n".join(L)


def cpu_per_gib(r, field):
    """FIELD (server_cpu_s or client_cpu_s) of result R per GiB it moved."""
    if not isinstance(r, dict) or r.get(field) is None or not r.get("bytes"):
        return None
    return r[field] / (r["bytes"] / GiB)


def render_cpu(L, ctx, keys, labels, refs, results):
    """The CPU tables: seconds per GiB moved, of the target's own
    processes (the server side: for blockd all seven, agent included) and
    of fio (the client: libnbd, or librbd for an rbd reference)."""
    for field, title, note in (
            ("server_cpu_s", "CPU seconds per GiB moved: the target's processes; ratio < 1 is cheaper",
             "From the end of fio's ramp to the end of settling (a buffered job's shipping "
             "included), over the bytes fio moved after its ramp.  blockd: its three blob "
             "servers, three proxies and the agent; nbdkit: its one process; an outside "
             "reference: the processes given (--ref-pids, --ref-pgrep), else –."),
            ("client_cpu_s", "CPU seconds per GiB moved: fio itself (the client side)",
             "fio's own user + system CPU after its ramp: the NBD engine (libnbd) for NBD "
             "targets, librbd for an rbd reference, so a reference whose client does the "
             "protocol work shows it here, not above.")):
        if not any(cpu_per_gib(results.get((k, j.name)), field) is not None
                   for k in keys for j in ctx.jobs + [FILL]):
            continue
        L.append(f"## {title}")
        L.append("")
        L.append(note)
        L.append("")
        hdr = ["job"] + [labels[k] for k in keys]
        if "blockd" in keys:
            hdr += [f"blockd ÷ {k}" for k in refs]
        L.append("| " + " | ".join(hdr) + " |")
        L.append("|---" + "|--:" * (len(hdr) - 1) + "|")
        for job in ctx.jobs + ([FILL] if field == "server_cpu_s" else []):
            vals = {k: cpu_per_gib(results.get((k, job.name)), field) for k in keys}
            row = [job.title] + [fmt_num(vals[k]) for k in keys]
            if "blockd" in keys:
                row += [fmt_ratio(ratio(vals["blockd"], vals[k])) for k in refs]
            L.append("| " + " | ".join(row) + " |")
        L.append("")


def goals_vs_refs(G, goal, get, refs):
    """The goals against each outside reference (issue 17): throughput
    ratios per job, and CPU per GiB both ways at most half."""
    for k in refs:
        for job, f, target, what in (("w1m-qd8", "mbs", 2.0, "1M seq write QD8"),
                                     ("r1m-qd8", "mbs", 1.5, "1M seq read QD8"),
                                     ("r4k-qd1", "iops", 2.0, "4k randread QD1"),
                                     ("w4k-qd1-fsync", "iops", 1.5, "durable 4k QD1"),
                                     ("rw-mix-qd16", "iops", 2.0, "randrw 70/30 QD16 fsync=32")):
            b, r = get("blockd", job, f), get(k, job, f)
            unit = "MB/s" if f == "mbs" else "IOPS"
            goal(f"{what} vs {k}", ratio(b, r), target,
                 f"{fmt_num(b, True)} vs {fmt_num(r, True)} {unit}")
        for job, what in (("w1m-qd8", "1M write"), ("r1m-qd8", "1M read")):
            b = cpu_per_gib(get("blockd", job, None), "server_cpu_s")
            r = cpu_per_gib(get(k, job, None), "server_cpu_s")
            goal(f"CPU s/GiB, {what}, vs {k}'s processes", ratio(b, r), 0.5,
                 f"{fmt_num(b)} vs {fmt_num(r)} s/GiB", cmp=lambda v, t: v <= t, tfmt="≤ 0.5×")


def blockd_qos(results):
    """The qos job's figures (benchlib.qos), or None if it did not run."""
    r = results.get(("blockd", "qos"))
    return r if isinstance(r, dict) else None


def blockd_rebuild(results):
    """The rebuild job's figures (benchlib.rebuild), or None if it did not run."""
    r = results.get(("blockd", "rebuild"))
    return r if isinstance(r, dict) and "p99_read_normal_us" in r else None


def blockd_space(results):
    """The space job's figures (benchlib.space), or None if it did not run."""
    r = results.get(("blockd", "space"))
    return r if isinstance(r, dict) and "amp_settled" in r else None


def goals_of(results, blockd_rep, refs=(), floor=None):
    """Each goal as {goal, measured, target, status[, value]}, from the
    results and blockd's figures (BLOCKD_REP, None without blockd)."""
    def get(k, job, f):
        r = results.get((k, job))
        if r is None or isinstance(r, str):
            return None
        return r if f is None else r[f]

    G = []

    def goal(name, value, target, detail, fmt=fmt_ratio, cmp=lambda v, t: v >= t, tfmt=None):
        if value is None:
            G.append({"goal": name, "measured": "–", "target": tfmt or f"≥ {target}×", "status": "n/a"})
            return
        G.append({"goal": name, "measured": f"{fmt(value)} ({detail})", "target": tfmt or f"≥ {target}×",
                  "status": "MET" if cmp(value, target) else "SHORT", "value": value})

    b, d = get("blockd", "w4k-qd1-fsync", "iops"), get("disk", "w4k-qd1-fsync", "iops")
    goal("durable 4k QD1 vs local disk, fsync=1", ratio(b, d), 0.5,
         f"{fmt_num(b, True)} vs {fmt_num(d, True)} IOPS")
    f2 = (floor or {}).get("2x-par-3", {}).get("rate")
    b = get("blockd", "w4k-qd1-fsync", "iops")
    goal("durable 4k QD1 vs the disk's floor (2x-par-3)", ratio(b, f2), 0.85,
         f"{fmt_num(b, True)} vs {fmt_num(f2, True)} rounds/s")
    b, d = get("blockd", "r4k-qd1", "iops"), get("disk", "r4k-qd1", "iops")
    goal("4k randread QD1 vs local disk", ratio(b, d), 0.5, f"{fmt_num(b, True)} vs {fmt_num(d, True)} IOPS")
    b, d = get("blockd", "r4k-qd32", "iops"), get("disk", "r4k-qd32", "iops")
    goal("4k randread QD32 vs local disk", ratio(b, d), 0.5, f"{fmt_num(b, True)} vs {fmt_num(d, True)} IOPS")
    goals_vs_refs(G, goal, get, refs)
    b, m = get("blockd", "w4k-qd32", "iops"), get("memory", "w4k-qd32", "iops")
    goal("buffered 4k randwrite QD32 vs nbdkit memory", ratio(b, m), 0.8,
         f"{fmt_num(b, True)} vs {fmt_num(m, True)} IOPS")
    b5, b4 = get("blockd", "w512-qd32", "iops"), get("blockd", "w4k-qd32", "iops")
    if b5 is not None and b4:
        # No goal: what a partial-block write (a read-modify-write) costs.
        G.append({"goal": "(context) 512 B vs 4k randwrite QD32 IOPS, blockd", "target": "–",
                  "measured": f"{fmt_ratio(ratio(b5, b4))} ({fmt_num(b5, True)} vs {fmt_num(b4, True)} IOPS)",
                  "status": "context", "value": ratio(b5, b4)})
    b, m = get("blockd", "r4k-qd32", "iops"), get("memory", "r4k-qd32", "iops")
    goal("4k randread QD32 uncached vs nbdkit memory", ratio(b, m), 0.5,
         f"{fmt_num(b, True)} vs {fmt_num(m, True)} IOPS")
    b, d = get("blockd", "w1m-qd8", "mbs"), get("disk", "w1m-qd8", "mbs")
    goal("1M seq write QD8 vs ⅓ of the local disk's", ratio(b, d / 3 if d else None), 0.8,
         f"{fmt_num(b, True)} vs {fmt_num(d / 3 if d else None, True)} MB/s")
    b, d = get("blockd", "fill", "mbs"), get("disk", "fill", "mbs")
    goal("(context) the same, durable: one pass + flush", ratio(b, d / 3 if d else None), 0.8,
         f"{fmt_num(b, True)} vs {fmt_num(d / 3 if d else None, True)} MB/s")
    sj = blockd_space(results)
    goal("space amplification after 20× random 4k overwrites", sj and sj["amp_settled"], 1.3,
         f"{sj['amp_after']:.2f}× right after" if sj else "", fmt=lambda v: f"{v:.2f}×",
         cmp=lambda v, t: v <= t, tfmt="≤ 1.3×")
    # The worse of reads and writes.
    rd = ratio(sj["p99_read_during_us"], sj["p99_read_before_us"]) if sj else None
    wr = ratio(sj["p99_write_during_us"], sj["p99_write_before_us"]) if sj else None
    during = max(rd, wr) if rd is not None and wr is not None else None
    if sj and not sj["moved_during_bytes"]:
        G.append({"goal": "client p99 during the blob rewrite vs before", "target": "≤ 2×",
                  "measured": "– (the rewrite had nothing to do in the window)", "status": "n/a"})
    else:
        goal("client p99 during the blob rewrite vs before", during, 2.0,
             f"4k QD1 read {sj['p99_read_during_us']:.0f} vs {sj['p99_read_before_us']:.0f} µs, "
             f"write {sj['p99_write_during_us']:.0f} vs {sj['p99_write_before_us']:.0f} µs"
             if sj else "", cmp=lambda v, t: v <= t, tfmt="≤ 2×")
    qj = blockd_qos(results)
    goal("QoS: 4k randwrite QD16 held to a 500 IOPS limit", qj and qj["limit_ratio"], 0.05,
         f"{qj['iops']:.0f} IOPS" if qj else "", fmt=lambda v: f"{v:.3f}×",
         cmp=lambda v, t: abs(v - 1) <= t, tfmt="1 ± 0.05×")
    # None (n/a) when the neighbour step was left out (BLOCKD_QOS_STEPS):
    # its figures are zeros then, not a measurement.
    quiet = (max(ratio(qj["p99_quiet_beside_us"][0], qj["p99_quiet_alone_us"][0]) or 0,
                 ratio(qj["p99_quiet_beside_us"][1], qj["p99_quiet_alone_us"][1]) or 0)
             if qj and any(qj["p99_quiet_beside_us"]) else None)
    goal("QoS: a quiet QD1 volume's p99 beside a noisy neighbour vs alone", quiet, 2.0,
         f"worse of read and write; neighbour at {qj['noisy_iops']:.0f} IOPS" if qj else "",
         cmp=lambda v, t: v <= t, tfmt="≤ 2×")
    goal("QoS: limiter engaged (never reached) vs no limits, 4k randwrite QD32",
         qj and qj["cost_ratio"], 0.98, f"{len(qj['cost_iops_on'])} interleaved pairs" if qj else "")
    rj = blockd_rebuild(results)
    if rj and not rj["covered"]:
        G.append({"goal": "client p99 during a rebuild vs normal", "target": "≤ 2×",
                  "measured": "– (the rebuild was not under way for the whole window)",
                  "status": "n/a"})
    else:
        rd = ratio(rj["p99_read_during_us"], rj["p99_read_normal_us"]) if rj else None
        wr = ratio(rj["p99_write_during_us"], rj["p99_write_normal_us"]) if rj else None
        goal("client p99 during a rebuild vs normal", max(rd, wr) if rj and rd and wr else None,
             2.0, f"4k QD{rj['qd']} read {rj['p99_read_during_us']:.0f} vs "
             f"{rj['p99_read_normal_us']:.0f} µs, write {rj['p99_write_during_us']:.0f} vs "
             f"{rj['p99_write_normal_us']:.0f} µs; copy at "
             f"{rj['rate_during_bytes_per_s'] / MiB:.0f} MiB/s" if rj else "",
             cmp=lambda v, t: v <= t, tfmt="≤ 2×")
    iv = (blockd_rep or {}).get("idle_volumes")
    per = iv["per_volume"] / MiB if iv else None
    goal("agent RSS per attached idle volume", per, 4.0, f"{iv['volumes']} volumes" if iv else "",
         fmt=lambda v: f"{v:.2f} MiB", cmp=lambda v, t: v <= t, tfmt="≤ 4 MiB")
    ix = [i for i in (blockd_rep or {}).get("index", [])
          if isinstance(i.get("bytes_per_extent"), (int, float)) and i["bytes_per_extent"] > 0]
    worst = max(ix, key=lambda i: i["bytes_per_extent"]) if ix else None
    name = "LMDB index bytes per extent (largest proxy)"
    if worst and worst["extents"] < MIN_EXTENTS:
        # A small index is mostly LMDB's fixed pages: the figure says nothing per extent.
        G.append({"goal": name, "measured": f"{worst['bytes_per_extent']:.0f} B ({worst['extents']} "
                  f"extents: too few to judge, needs {MIN_EXTENTS})", "target": "≤ 128 B", "status": "n/a"})
    else:
        goal(name, worst["bytes_per_extent"] if worst else None, 128,
             f"{worst['extents']} extents" if worst else "", fmt=lambda v: f"{v:.0f} B",
             cmp=lambda v, t: v <= t, tfmt="≤ 128 B")
    return G


def write_results(ctx, targets, results, blockd, goals):
    """Write results.md and results.json to ctx.out, point
    bench-results/latest at it when it is a bench-results/ run, and return
    the text of results.md."""
    text = render(ctx, targets, results, blockd, goals)
    rep = blockd.report_data if blockd is not None else None
    with open(f"{ctx.out}/results.md", "w") as f:
        f.write(text + "\n")
    with open(f"{ctx.out}/results.json", "w") as f:
        json.dump({"stamp": ctx.stamp, "commit": ctx.commit, "machine": ctx.machine,
                   "quick": ctx.quick, "region": ctx.region, "runtime": ctx.runtime,
                   "targets": {t.key: {"label": t.label, "uri": t.uri} for t in targets},
                   "results": {f"{k}/{j}": v for (k, j), v in results.items()},
                   "blockd": rep, "floor": getattr(ctx, "floor", None), "goals": goals,
                   "syscalls_per_durable_write": getattr(ctx, "syscount", None),
                   "errors": ctx.errors}, f, indent=2)
    latest = f"{TOP}/bench-results/latest"
    if os.path.dirname(ctx.out) == os.path.dirname(latest) and \
            (os.path.islink(latest) or not os.path.exists(latest)):
        if os.path.islink(latest):
            os.unlink(latest)
        os.symlink(os.path.basename(ctx.out), latest)  # bench-results/latest: the last run
    return text
