#!/usr/bin/env python3
"""User-space instructions per request, counted with callgrind, for
bulkhead (workers = 0, one process, the same plugins and config as
tests/bench/run.sh) and for nginx (master_process off, the same locations
and JSON access log as run.sh), scenario by scenario. Deterministic where
wall-clock and /proc figures are not: every server is run twice under
`valgrind --tool=callgrind`, serving N and N + M keep-alive requests on one
connection (one request at a time), and the difference over M is the
figure, so start-up and shutdown cancel out.

    tests/bench/callgrind.py                      # every scenario, both servers
    CG_SCENARIOS="proxy local" CG_SERVERS=bulkhead tests/bench/callgrind.py
    CG_TOP=25 tests/bench/callgrind.py            # also the top functions

CG_N (default 200) and CG_M (default 2000) set the two run lengths; CG_TOP
prints that many functions with the most self instructions per request
(the difference of the two runs' profiles); CG_KEEP=1 keeps the temp dir.
Uses <repo>/build (BULKHEAD_BIN overrides the binary); the build type
matters: use a Release or RelWithDebInfo build."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402
from auth_tokens import mint_access_token  # noqa: E402
from upstream_env import start_sim  # noqa: E402

SECRET = "bench-secret-0123456789-abcdefghijklmnop"
ALL = ["fail-fast", "proxy", "local", "auth-proxy", "proxy-64k"]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def scenario(name, sim_port):
    """path, expected status, request headers, extra bulkhead config."""
    up = ""
    extra = ""
    headers = {}
    path = {"fail-fast": "/t/up_one/get/x", "proxy": "/t/up_one/proxy/x",
            "proxy-64k": "/t/up_one/proxy/big", "local": "/v1/auth/status",
            "auth-proxy": "/t/whoami/proxy/x"}[name]
    status = 503 if name == "fail-fast" else 200
    if name == "fail-fast":
        up = "breaker_mode = forced_open\n"
    if name == "auth-proxy":
        tok = mint_access_token(SECRET, "bench-user", ttl_s=86400,
                                sid="ses_bench", scope="read write")
        headers["Authorization"] = "Bearer " + tok
        extra = ("[auth]\njwt_secret = %s\n\n[plugin.whoami]\npath = %s\n"
                 "mount = /t/whoami\n\n[upstream.whoami]\n"
                 "url = http://127.0.0.1:%d\n" %
                 (SECRET, harness.test_plugin("whoami"), sim_port))
    return path, status, headers, up, extra


def bulkhead_conf(tmp, sim_port, up, extra, workers=0):
    return """[server]
listen = 127.0.0.1:0
admin_listen = 127.0.0.1:0
data_dir = {tmp}/data
plugin_dir = {pd}
log = {tmp}/access.log
log_level = info
workers = {workers}

[plugin.auth]
path = auth.so
mount = /v1/auth, /v1/api-keys

[plugin.billing]
path = billing.so
mount = /v1/billing

[plugin.webhooks]
path = webhooks.so
mount = /v1/webhooks

[plugin.ai]
path = ai.so
mount = /v1/ai

[plugin.up_one]
path = {up_one}
mount = /t/up_one

[upstream.up_one]
url = http://127.0.0.1:{sim}
{up}
{extra}""".format(tmp=tmp, pd=harness.PLUGIN_DIR, sim=sim_port, up=up,
                  extra=extra, up_one=harness.test_plugin("up_one"),
                  workers=workers)


def nginx_conf(tmp, name, port, sim_port, body):
    if name == "fail-fast":
        loc = ("default_type application/problem+json;\n"
               "add_header X-Request-ID $request_id always;\n"
               "add_header Cache-Control no-store always;\n"
               "add_header Retry-After 30 always;\n"
               "return 503 '%s';" % body)
    elif name == "local":
        loc = ("default_type application/json;\n"
               "add_header X-Request-ID $request_id always;\n"
               "return 200 '%s';" % body)
    else:
        loc = ("proxy_pass http://sim;\nproxy_http_version 1.1;\n"
               "proxy_set_header Connection \"\";\n"
               "proxy_set_header X-Request-ID $request_id;\n"
               "add_header X-Request-ID $request_id always;")
    return """daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  log_format bench escape=json '{{"time":"$time_iso8601","level":"info",'
    '"event":"request","requestId":"$request_id","method":"$request_method",'
    '"path":"$uri","status":$status,"durationS":$request_time}}';
  access_log {tmp}/access.log bench;
  server_tokens off;
  keepalive_timeout 75s;
  keepalive_requests 1000000;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  upstream sim {{
    server 127.0.0.1:{sim};
    keepalive 64;
    keepalive_requests 1000000;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{ {loc} }}
  }}
}}
""".format(tmp=tmp, sim=sim_port, port=port, loc=loc)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(proc, find, timeout=60.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit("server exited (%d)" % proc.returncode)
        p = find()
        if p:
            try:
                socket.create_connection(("127.0.0.1", p), 1).close()
                return p
            except OSError:
                pass
        time.sleep(0.2)
    raise SystemExit("server did not listen in %.0f s" % timeout)


def bh_port(log):
    try:
        for line in open(log):
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") == "listening" and ev.get("listener") == "api":
                addr = ev.get("address") or ev.get("listen") or ""
                port = addr.rpartition(":")[2]
                if port.isdigit():
                    return int(port)
    except OSError:
        pass
    return None


def run(server, name, n, tmp, sim, body, out, wrap=None, workers=0):
    """Starts server under callgrind (or the `wrap` command), serves
    warm-up + n requests, stops it; returns the last answer's body."""
    path, status, headers, up, extra = scenario(name, sim.port)
    d = tempfile.mkdtemp(dir=tmp)
    vg = wrap or ["valgrind", "--tool=callgrind", "--callgrind-out-file=" +
                  out, "--dump-instr=no", "--trace-children=no"]
    if server == "bulkhead":
        conf = os.path.join(d, "bulkhead.ini")
        with open(conf, "w") as f:
            f.write(bulkhead_conf(d, sim.port, up, extra, workers))
        env = dict((k, v) for k, v in os.environ.items()
                   if not k.startswith("BULKHEAD_"))
        proc = subprocess.Popen(vg + [harness.BIN, "-c", conf],
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(d, "stderr"), "w"),
                                env=env, start_new_session=True)
        port = wait_port(proc, lambda: bh_port(os.path.join(d, "access.log")))
    else:
        port = free_port()
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.mkdir(os.path.join(d, sub))
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(nginx_conf(d, name, port, sim.port, body))
        proc = subprocess.Popen(vg + [NGINX, "-p", d, "-e",
                                      os.path.join(d, "error.log"), "-c",
                                      os.path.join(d, "nginx.conf")],
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(d, "stderr"), "w"),
                                start_new_session=True)
        wait_port(proc, lambda: port)
    try:
        c = harness.RawConn(port, timeout=30.0)
        req = "GET %s HTTP/1.1\r\nHost: bench\r\n%s\r\n" % (
            path, "".join("%s: %s\r\n" % kv for kv in headers.items()))
        got = None
        for _ in range(20 + n):  # 20 warm-up requests: caches, pools
            c.send(req)
            r = c.read_response(30.0)
            if r is None or r.status != status:
                raise SystemExit("%s %s: %s answered %r" %
                                 (server, name, path, r))
            got = r.body
            if r.closes():  # keepalive_requests reached
                c.close()
                c = harness.RawConn(port, timeout=30.0)
        c.close()
    finally:
        # nginx under valgrind sometimes misses a first SIGTERM: repeat it
        for _ in range(60):
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(2)
                break
            except subprocess.TimeoutExpired:
                pass
        else:
            os.killpg(proc.pid, signal.SIGKILL)
            raise SystemExit("%s did not stop" % server)
    return got


def parse(out):
    """(total Ir, {function: self Ir}) of a callgrind output file."""
    total = 0
    fns = {}
    names = {}
    cur = None
    skip = False
    name_re = re.compile(r"c?fn=\((\d+)\)(?: (.*))?")
    with open(out) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
            elif line.startswith(("fn=", "cfn=")):
                m = name_re.match(line)
                name = line.split("=", 1)[1]
                if m:
                    if m.group(2):
                        names[m.group(1)] = m.group(2)
                    name = names.get(m.group(1), m.group(1))
                if line.startswith("fn="):
                    cur = name
            elif line.startswith("calls="):
                skip = True  # the next cost line is the call's inclusive cost
            elif cur and line[:1] and (line[0].isdigit() or line[0] in "+-*"):
                parts = line.split()
                if skip:
                    skip = False
                    continue
                if len(parts) >= 2:
                    fns[cur] = fns.get(cur, 0) + int(parts[1])
    return total, fns


def main():
    scen = os.environ.get("CG_SCENARIOS", " ".join(ALL)).split()
    servers = os.environ.get("CG_SERVERS", "bulkhead nginx").split()
    n = int(os.environ.get("CG_N", "200"))
    m = int(os.environ.get("CG_M", "2000"))
    top = int(os.environ.get("CG_TOP", "0"))
    tmp = tempfile.mkdtemp(prefix="bh-callgrind-")
    sim = start_sim()
    try:
        rows = []
        for name in scen:
            if name == "proxy-64k":
                sim.set_behavior(path="/*", body="x" * 65536)
            body = None
            res = {}
            for server in servers:
                a = os.path.join(tmp, "%s-%s-a.out" % (server, name))
                b = os.path.join(tmp, "%s-%s-b.out" % (server, name))
                got = run(server, name, n, tmp, sim, body, a)
                if server == "bulkhead" and name in ("fail-fast", "local"):
                    body = got.decode()  # nginx returns the same body
                run(server, name, n + m, tmp, sim, body, b)
                ta, fa = parse(a)
                tb, fb = parse(b)
                res[server] = (tb - ta) / float(m)
                print("%-10s %-9s %9.0f instructions/request" %
                      (name, server, res[server]), flush=True)
                if top:
                    diff = sorted(((fb.get(k, 0) - fa.get(k, 0)) / float(m), k)
                                  for k in fb)
                    for v, k in reversed(diff[-top:]):
                        print("    %8.0f  %s" % (v, k))
            if name == "proxy-64k":
                sim.remove_behavior("/*")
            if "bulkhead" in res and "nginx" in res:
                rows.append((name, res["bulkhead"], res["nginx"]))
        if rows:
            print("\n| scenario | bulkhead Ir/req | nginx Ir/req | ratio |")
            print("|---|---:|---:|---:|")
            for name, bh, ng in rows:
                print("| %s | %.0f | %.0f | %.2fx |" % (name, bh, ng, bh / ng))
    finally:
        sim.stop()
        if os.environ.get("CG_KEEP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept", tmp)


if __name__ == "__main__":
    main()
