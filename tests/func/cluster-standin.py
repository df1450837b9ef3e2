#!/usr/bin/python3
"""cluster-standin.py: a stand-in for one blockd process, used only by
test-cluster-harness.sh to test cluster.sh while the roles cannot run.

    cluster-standin.py ROLE CONFIG

Reads the blockd config cluster.sh wrote and serves, on the admin address:
  GET  /v1/status   {"role": R, "id": ..., "raft": {"state", "leader_id"}}
                    (proxies; the leader is the proxy whose id is in the file
                    DIR/leader, DIR being the cluster directory)
  POST /v1/volumes  proxies: 401 without the bearer token from
                    admin_token_file, 415 without application/json, 307 to
                    the leader on a follower, else appends the body to
                    DIR/volumes.log and answers 201.
An agent also runs `nbdkit memory 64M` on its nbd_listen address (killed
with it), so blockd-fsx can run against cluster_uri.  With STANDIN_IGNORE_TERM
set to this process's name, SIGTERM is ignored (tests bounded stops); with
STANDIN_SLOW_START set to it, the admin endpoint opens 3 s late.
"""
import http.server
import json
import os
import signal
import subprocess
import sys
import time

role, config_path = sys.argv[1], sys.argv[2]
with open(config_path) as f:
    cfg = json.load(f)
sec = cfg[role]
name = os.path.basename(os.path.dirname(config_path))
cluster_dir = os.path.dirname(os.path.dirname(config_path))
with open(cfg["admin_token_file"]) as f:
    token = f.read().strip()
children = []  # nbdkit, for an agent


def on_term(signum, frame):
    # Stop our nbdkit by pid before going: its --exit-with-parent does not
    # cover a parent killed before nbdkit had set that up (cluster tests
    # that start and stop at once), which left it orphaned.
    for c in children:
        c.terminate()
        try:
            c.wait(timeout=5)
        except subprocess.TimeoutExpired:
            c.kill()
    sys.exit(0)


if os.environ.get("STANDIN_IGNORE_TERM") == name:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, on_term)


def leader_id():
    try:
        with open(os.path.join(cluster_dir, "leader")) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        sys.stderr.write("%s: %s\n" % (name, fmt % args))

    def reply(self, code, obj, headers=()):
        body = json.dumps(obj).encode()
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path != "/v1/status":
            return self.reply(404, {"error": "not found"})
        st = {"role": role, "id": sec["id"], "pid": os.getpid()}
        if role == "proxy":
            lid = leader_id()
            st["raft"] = {"state": "leader" if lid == sec["id"] else "follower", "leader_id": lid}
        self.reply(200, st)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        if role != "proxy" or self.path != "/v1/volumes":
            return self.reply(404, {"error": "not found"})
        if self.headers.get("Authorization") != "Bearer " + token:
            return self.reply(401, {"error": "unauthorized"})
        if self.headers.get("Content-Type") != "application/json":
            return self.reply(415, {"error": "need application/json"})
        lid = leader_id()
        if lid != sec["id"]:
            if not lid:
                return self.reply(503, {"error": "no leader"})
            with open(os.path.join(cluster_dir, "proxy%d" % lid, "proxy%d.json" % lid)) as f:
                addr = json.load(f)["proxy"]["admin"]
            return self.reply(307, {"leader": lid}, [("Location", "http://%s/v1/volumes" % addr)])
        req = json.loads(body)
        with open(os.path.join(cluster_dir, "volumes.log"), "a") as f:
            f.write("%s %s %d\n" % (name, req["name"], req["size"]))
        self.reply(201, {"name": req["name"], "size": req["size"]})


if role == "agent":
    host, port = sec["nbd_listen"].rsplit(":", 1)
    children.append(subprocess.Popen(["nbdkit", "--exit-with-parent", "-i", host, "-p", port,
                                      "memory", "64M"]))
if os.environ.get("STANDIN_SLOW_START") == name:
    time.sleep(3)
host, port = sec["admin"].rsplit(":", 1)
server = http.server.HTTPServer((host, int(port)), Handler)
sys.stderr.write("%s: stand-in %s serving admin on %s\n" % (name, role, sec["admin"]))
server.serve_forever()
