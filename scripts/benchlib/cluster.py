"""benchlib.cluster: the blockd target, a local cluster of our own.

Owns starting it (3 blob servers, 3 proxies and 1 agent as separate
processes, configs made from conf/local/*.json with every port replaced by
a free one and every data path moved under the work directory, never the
quickstart ports or ./data; a cluster.json as quickstart writes it),
creating the volume, settling (an NBD FLUSH, then waiting until the
agent's /v1/status shows no dirty bytes and no ship in flight), the agent's
RSS per attached idle volume, and the figures read at the end of the run
(each process's peak RSS and CPU time, each proxy's LMDB index bytes per
extent and blob space).  The processes are stopped with every other one, by
common.PROCS.  A binary without the agent role gives no target (None).
"""
import json
import os
import re
import subprocess
import time
import urllib.error
import ssl
import urllib.request

from benchlib.common import MiB, PROCS, TOP, Fail, free_port, proc_status, say, tail, wait_for
from benchlib.targets import Target, nbd_close, nbd_flush, nbd_open, nbd_ready


_ssl_contexts = {}


def http_json(method, addr, path, body=None, token=None, timeout=5.0, ca=None):
    """(status, parsed JSON or None); status 0 when nothing answered.  With
    CA (the cluster CA's file) over HTTPS, verifying the server against it."""
    data = json.dumps(body).encode() if body is not None else None
    status, raw = http_raw(method, addr, path, data, token, timeout, ca)
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None


def http_raw(method, addr, path, data=None, token=None, timeout=5.0, ca=None):
    """(status, body bytes or None), as http_json without the JSON."""
    scheme = "https" if ca else "http"
    req = urllib.request.Request(f"{scheme}://{addr}{path}", data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    ctx = None
    if ca:
        ctx = _ssl_contexts.get(ca)
        if ctx is None:
            ctx = _ssl_contexts[ca] = ssl.create_default_context(cafile=ca)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    except (OSError, urllib.error.URLError):
        return 0, None
    return status, raw


class Blockd(Target):
    """The local cluster: one process per blob server, proxy and agent."""

    def __init__(self, key, label, uri, procs, agent_admin, proxy_admins, token, vol, ca):
        super().__init__(key, label, uri, procs)
        self.agent_admin, self.proxy_admins, self.token, self.vol = agent_admin, proxy_admins, token, vol
        self.ca = ca
        self.max_clean_wait = 0.0
        self.idle = None

    def agent_dirty(self):
        """(dirty_bytes, ships_in_flight) of our volume from the agent's status."""
        status, st = http_json("GET", self.agent_admin, "/v1/status", token=self.token, ca=self.ca)
        if status != 200 or not isinstance(st, dict):
            return None
        vols = st.get("volumes")
        if not isinstance(vols, dict) or "dirty_bytes" not in vols:
            raise Fail("the agent's /v1/status has no volumes.dirty_bytes: "
                       "cannot tell whether its cache is clean")
        for v in vols.get("volumes") or []:
            if v.get("name") == self.vol:
                return v.get("dirty_bytes", 0) + v.get("dirty_extents", 0), v.get("ships_in_flight", 0)
        return vols.get("dirty_bytes", 0), vols.get("ships_in_flight", 0)

    def settle(self):
        t0 = time.monotonic()
        nbd_flush(self.keeper, 300)  # answered once everything written before it is shipped
        def clean():
            d = self.agent_dirty()
            return d is not None and d == (0, 0)
        wait_for("the agent's cache to be clean", clean, 300, self.procs)
        self.max_clean_wait = max(self.max_clean_wait, time.monotonic() - t0)

    def report(self):
        out = {"processes": [], "index": []}
        for name, p in self.procs:
            st = proc_status(p.pid) if p.poll() is None else None
            out["processes"].append({"name": name, "pid": p.pid, **(st or {})})
        for addr in self.proxy_admins:
            status, st = http_json("GET", addr, "/v1/status?scan=1", token=self.token,
                                   ca=self.ca)  # with the space figures
            ix = (st or {}).get("index") or {}
            out["index"].append({"proxy": addr, "state": ((st or {}).get("raft") or {}).get("state"),
                                 "bytes_per_extent": ix.get("bytes_per_extent"),
                                 "extents": ix.get("extents"), "bytes": ix.get("bytes"),
                                 "blob_bytes": ix.get("blob_bytes"),
                                 "data_bytes": ix.get("data_bytes"),
                                 "space_amplification": ix.get("space_amplification")})
        out["idle_volumes"] = self.idle
        out["max_clean_wait_s"] = round(self.max_clean_wait, 2)
        return out


def cluster_configs(ctx, key, tls):
    """Configs for cluster KEY from conf/local/*.json: every loopback port
    replaced by a free one (consistently across files), every "data/" path
    moved under the work directory; with TLS a fresh CA and a certificate
    per process (as quickstart makes them), without it insecure_plaintext
    and no certificates.  Returns (work dir, {name: config path}, CA file
    or None)."""
    work = f"{ctx.work}/{key}"
    os.makedirs(f"{work}/conf", exist_ok=True)
    os.makedirs(f"{work}/log", exist_ok=True)
    ports = {}

    def fix(v):
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        if isinstance(v, str):
            if v.startswith("data/"):
                return f"{work}/{v[5:]}"
            m = re.fullmatch(r"127\.0\.0\.1:(\d+)", v)
            if m:
                return f"127.0.0.1:{ports.setdefault(m.group(1), free_port())}"
        return v

    names = sorted(f[:-5] for f in os.listdir(f"{TOP}/conf/local") if f.endswith(".json"))
    order = {"blob": 0, "proxy": 1, "agent": 2}
    names.sort(key=lambda n: (order.get(re.sub(r"\d+$", "", n), 3), n))
    loaded = {}
    for n in names:
        with open(f"{TOP}/conf/local/{n}.json") as f:
            loaded[n] = fix(json.load(f))
    if getattr(ctx, "second_agent", False):
        # agent2: the agent's config with its own id, ports and files
        # (the qos job's "agents" step: a neighbour on another agent).
        c = json.loads(json.dumps(loaded["agent"]))
        a = c["agent"]
        a["id"] = a["id"] + "2"
        a["nbd_listen"] = f"127.0.0.1:{free_port()}"
        a["admin"] = f"127.0.0.1:{free_port()}"
        for k in ("nbd_unix", "nbd_volume_dir", "cache_dir", "cert_file", "key_file"):
            if k in a:
                base, dot, ext = a[k].rpartition(".") if k.endswith("_file") else (a[k], "", "")
                a[k] = f"{base}-2{dot}{ext}"
        if "log" in c and "file" in c["log"]:
            c["log"]["file"] = c["log"]["file"].replace(".log", "2.log")
        loaded["agent2"] = c
        names.append("agent2")
    paths = {}
    for n in names:
        c = loaded[n]
        for role_, key_, value in getattr(ctx, "sets", []):
            if role_ in c:
                c[role_][key_] = value
        c["cluster_id"] = "bench"
        if not tls:
            c.pop("tls_ca_file", None)
            c["insecure_plaintext"] = True
            for r in ("proxy", "blob", "agent"):
                if r in c:
                    c[r].pop("cert_file", None)
                    c[r].pop("key_file", None)
        if "blob" in c:
            c["blob"]["scrub_bytes_per_sec"] = 0  # background reads would land in other targets' jobs
        paths[n] = f"{work}/conf/{n}.json"
        with open(paths[n], "w") as f:
            json.dump(c, f, indent=2)
    token = f"{work}/admin.token"
    fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, os.urandom(18).hex().encode())
    os.close(fd)
    ca = None
    if tls:
        ca = f"{work}/tls/ca/ca.pem"
        subprocess.run([ctx.blockd, "cert", "ca", "--dir", f"{work}/tls/ca", "--cluster", "bench"],
                       check=True, stdout=subprocess.DEVNULL)
        for n, path in paths.items():
            with open(path) as f:
                c = json.load(f)
            r = next(r for r in ("proxy", "blob", "agent") if r in c)
            subprocess.run([ctx.blockd, "cert", "issue", "--ca", f"{work}/tls/ca", "--role", r,
                            "--id", str(c[r]["id"]), "--out", c[r]["cert_file"][:-len(".pem")],
                            "--san", "DNS:localhost", "--san", "IP:127.0.0.1"],
                           check=True, stdout=subprocess.DEVNULL)
    return work, paths, ca


def start_blockd(ctx, key="blockd", tls=True):
    """Start cluster KEY (TLS on every connection unless TLS is false: the
    reference that prices TLS), create the volume, return its Target (None
    when the binary has no agent role yet)."""
    work, paths, ca = cluster_configs(ctx, key, tls)
    cfg = {n: json.load(open(p)) for n, p in paths.items()}
    role = lambda n: next(r for r in ("blob", "proxy", "agent") if r in cfg[n])
    procs = []
    for n, path in paths.items():
        stop_timeout = 60 if role(n) == "agent" else 15  # the agent ships its journal first
        p = PROCS.start(n, [ctx.blockd, f"--role={role(n)}", "--config", path],
                        f"{work}/log/{n}.stderr", stop_timeout)
        procs.append((n, p))
    say(f"{key}: started " + ", ".join(f"{n} (pid {p.pid})" for n, p in procs))
    agent = next(n for n in paths if role(n) == "agent")
    agent_p = dict(procs)[agent]
    try:  # a binary without the agent role exits at once with status 2
        agent_p.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        pass
    msg = tail(f"{work}/log/{agent}.stderr")
    if agent_p.poll() == 2 and ("not built into this binary" in msg or 'no "agent" section' in msg):
        say("blockd: this build has no agent role: the blockd target is skipped")
        for n, p in reversed(procs):
            PROCS.stop(p)
        return None
    proxies = [n for n in paths if role(n) == "proxy"]
    proxy_admins = [cfg[n]["proxy"]["admin"] for n in proxies]
    with open(f"{work}/admin.token") as f:
        token = f.read().strip()

    # cluster.json, as quickstart writes it, so `BLOCKD_DATA=... blockd ctl` works.
    agent_cfg = cfg[agent]["agent"]
    nbd_addr = agent_cfg["nbd_listen"]
    with open(f"{work}/cluster.json", "w") as f:
        json.dump({"cluster_id": "bench", "token_file": f"{work}/admin.token", "ca_file": ca,
                   "processes": [{"name": n, "role": role(n), "pid": p.pid, "config": paths[n],
                                  "admin": cfg[n][role(n)].get("admin", ""),
                                  "wire": cfg[n][role(n)].get("listen", "")} for n, p in procs]},
                  f, indent=2)

    def leader():
        for addr in proxy_admins:
            status, st = http_json("GET", addr, "/v1/status", token=token, ca=ca)
            if status == 200 and ((st or {}).get("raft") or {}).get("state") == "leader":
                if st.get("blob_servers_up", 3) >= 3:
                    return addr
        return None
    wait_for("a Raft leader that sees 3 blob servers", leader, 60, procs)

    def create(name, size, agent_id=None):
        """Create volume NAME and attach it to the agent (AGENT_ID: another
        agent of the cluster; an agent serves only the volumes attached to
        it)."""
        def go():
            for addr in proxy_admins:
                status, _ = http_json("POST", addr, "/v1/volumes", {"name": name, "size": size}, token,
                                      ca=ca)
                if status in (201, 409):
                    return True
            return False
        wait_for(f"volume {name} to be created", go, 60, procs, interval=0.3)

        def attach():
            for addr in proxy_admins:
                status, _ = http_json("POST", addr, f"/v1/volumes/{name}/attach",
                                      {"agent": agent_id or agent_cfg["id"]}, token, ca=ca)
                if status == 200:
                    return True
            return False
        wait_for(f"volume {name} to be attached to the agent", attach, 60, procs, interval=0.3)

    uri = f"nbd://{nbd_addr}/bench"
    create("bench", ctx.region)
    wait_for(f"the agent to serve {uri}", lambda: nbd_ready(uri), 60, procs, interval=0.2)
    label = "blockd" if tls else "blockd, TLS off"
    t = Blockd(key, label, uri, procs, agent_cfg["admin"], proxy_admins, token, "bench", ca)
    t.create = create
    t.nbd_addr = nbd_addr
    # A second agent (the qos job's "agents" step): its id and NBD address.
    t.agent2 = ({"id": cfg["agent2"]["agent"]["id"], "nbd_addr": cfg["agent2"]["agent"]["nbd_listen"]}
                if "agent2" in cfg else None)
    t.admins = {n: cfg[n][role(n)].get("admin", "") for n, _ in procs}  # name -> admin address
    t.agent_pid = agent_p.pid
    say(f"{key}: serving {t.uri}; data in {work}")
    return t


def measure_idle_volumes(t, n):
    """Agent RSS per attached idle volume: attach N fresh volumes over N NBD
    connections (attach happens at NBD_OPT_GO), no I/O; RSS delta / N."""
    for i in range(n):
        t.create(f"idle{i}", 16 * MiB)
    time.sleep(0.5)
    before = proc_status(t.agent_pid)["rss"]
    handles = []
    try:
        for i in range(n):
            handles.append(nbd_open(f"nbd://{t.nbd_addr}/idle{i}"))
        time.sleep(1.0)
        after = proc_status(t.agent_pid)["rss"]
    finally:
        for h in handles:
            nbd_close(h)
    t.idle = {"volumes": n, "rss_before": before, "rss_after": after,
              "per_volume": (after - before) / n}
    say(f"blockd: agent RSS {before / MiB:.1f} MiB -> {after / MiB:.1f} MiB with {n} idle volumes "
        f"attached: {(after - before) / n / 1024:.0f} KiB each")
    t.check_alive()
