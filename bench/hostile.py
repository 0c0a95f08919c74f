#!/usr/bin/env python3
"""hostile.py - does a good client still get served while hostile clients
attack? sluice, HAProxy and nginx side by side, in front of the same two
gunicorn servers.

  bench/hostile.py [--systems sluice,haproxy,nginx] [--attacks slowloris,slowpost,idle]
                   [--seconds 30] [--out FILE] [--sluice BINARY]

--sluice runs another sluice binary (a build from before request bodies
were buffered, say) in place of build/sluice.

The service: two gunicorn servers (Debian's python3-gunicorn, gthread
workers, 2 workers x 8 threads each: 32 request slots in all) running
tests/integration/wsgi_app.py. A gunicorn thread is held from a request's
first byte to its answer's last, so whatever a proxy forwards before it is
complete holds a slot.

Each run starts one proxy afresh, then an attacker (a child process, so its
sockets do not slow the good client down) and, after a 2 s ramp, a good
client sending 50 requests/s, each on a fresh connection (GET /, 10 s
timeout), for `--seconds` minus 2. The attacks, each kept at full strength
(a connection the proxy closes is opened again at once):

  slowloris  3,000 connections sending a request head a header line every 3 s
  slowpost   300 POSTs with Content-Length: 100000 trickling 10 bytes every 2 s
  idle       8,000 connections that send nothing
  none       no attacker: the good client alone, for reference

The proxies are configured alike: header timeout 10 s, inactivity 60 s,
one worker each, round robin, no access log. Printed (and written to --out
as Markdown): per proxy and attack, good requests served (200) of those
sent, p50 and p99 latency of the served ones, and how many connections the
attacker had open at the end and opened in all (more than its count: the
proxy cut some).
"""

import argparse
import json
import os
import random
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from local import free_port, stop, wait_port  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SLUICE = REPO / "build" / "sluice"
WSGI_DIR = REPO / "tests" / "integration"

ATTACKS = {
    # name: (connections, head, what is sent every period, period in s)
    "slowloris": (3000, b"GET / HTTP/1.1\r\nHost: x\r\n", b"X-a: b\r\n", 3.0),
    "slowpost": (300, b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
                 b"0123456789", 2.0),
    "idle": (8000, b"", b"", 0.0),
}

GOOD_RATE = 50
GOOD_TIMEOUT = 10.0
RAMP = 2.0



def get_status(port, timeout):
    """One GET / on a fresh connection: the status, or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    return None
                data += chunk
            return int(data.split(b" ", 2)[1])
    except (OSError, ValueError, IndexError):
        return None


# ------------------------------------------------------------ processes

class Proc:
    """A child stopped by its PID (SIGTERM, then SIGKILL)."""

    def __init__(self, argv, log, env=None, cwd=None):
        self.log = log
        with open(log, "wb") as out:
            self.popen = subprocess.Popen([str(a) for a in argv], stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=env, cwd=cwd)

    def stop(self):
        stop(self.popen)


def start_gunicorn(workdir, name, port):
    env = dict(os.environ, APP_NAME=name)
    p = Proc(["/usr/bin/python3", "-m", "gunicorn", "--bind", "127.0.0.1:%d" % port,
              "--workers", 2, "--threads", 8, "--worker-class", "gthread", "--timeout", 120,
              "--log-level", "warning", "wsgi_app:application"],
             workdir / ("%s.log" % name), env=env, cwd=str(WSGI_DIR))
    if not wait_port(port, 15):
        p.stop()
        sys.exit("gunicorn %s did not start: %s" % (name, (workdir / ("%s.log" % name)).read_text()[-2000:]))
    return p


def sluice_config(listen, apps):
    text = """[server]
listen = "127.0.0.1:%d"
workers = 1

[server.timeouts]
client_header = "10s"
client_idle = "60s"
upstream_response = "60s"
# client_body is 60 s by default (left out: a build from before it would refuse it)

[admin]
listen = ""

[log]
access = "off"
""" % listen
    for i, port in enumerate(apps):
        text += '\n[[applications]]\nname = "app-%d"\nip = "127.0.0.1"\nport = %d\n' % (i + 1, port)
    return text


def haproxy_config(listen, apps):
    servers = "".join("    server app-%d 127.0.0.1:%d\n" % (i + 1, p) for i, p in enumerate(apps))
    return """global
    nbthread 1
    # two descriptors per proxied connection must fit in `ulimit -n` (20000 here)
    maxconn 9500

defaults
    mode http
    option http-keep-alive
    http-reuse always
    balance roundrobin
    maxconn 9500
    timeout connect 2s
    timeout http-request 10s
    timeout client 60s
    timeout http-keep-alive 60s
    timeout server 60s

frontend hostile
    bind 127.0.0.1:%d
    default_backend applications

backend applications
%s""" % (listen, servers)


def nginx_config(listen, apps, prefix):
    servers = "".join("        server 127.0.0.1:%d;\n" % p for p in apps)
    return """daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 40000;
pid %(prefix)s/nginx.pid;
error_log %(prefix)s/error.log warn;
events { worker_connections 20000; }
http {
    access_log off;
    client_body_temp_path %(prefix)s/client_body;
    proxy_temp_path %(prefix)s/proxy;
    fastcgi_temp_path %(prefix)s/fastcgi;
    uwsgi_temp_path %(prefix)s/uwsgi;
    scgi_temp_path %(prefix)s/scgi;
    client_header_timeout 10s;
    client_body_timeout 60s;
    send_timeout 60s;
    keepalive_timeout 60s;
    upstream applications {
%(servers)s        keepalive 64;
    }
    server {
        listen 127.0.0.1:%(listen)d backlog=4096;
        location / {
            proxy_pass http://applications;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout 60s;
            proxy_send_timeout 60s;
        }
    }
}
""" % {"prefix": prefix, "servers": servers, "listen": listen}


def start_proxy(system, workdir, apps, sluice):
    port = free_port()
    d = workdir / system
    d.mkdir(exist_ok=True)
    if system == "sluice":
        (d / "sluice.toml").write_text(sluice_config(port, apps))
        p = Proc([sluice, "-c", d / "sluice.toml"], d / "out.log")
    elif system == "haproxy":
        (d / "haproxy.cfg").write_text(haproxy_config(port, apps))
        p = Proc(["haproxy", "-f", d / "haproxy.cfg", "-db"], d / "out.log")
    else:
        (d / "nginx.conf").write_text(nginx_config(port, apps, d))
        p = Proc(["nginx", "-p", d, "-c", d / "nginx.conf"], d / "out.log")
    if not wait_port(port, 10) or get_status(port, 5) != 200:
        p.stop()
        sys.exit("%s did not start or answer: %s" % (system, (d / "out.log").read_text()[-2000:]))
    return p, port


# ------------------------------------------------------------ the attacker

def attack(port, name, seconds):
    """Keeps the attack's connections open and fed for `seconds`; prints
    {"open": n, "opened": total} at the end."""
    count, head, drip, period = ATTACKS[name]
    sel = selectors.DefaultSelector()
    due = {}    # socket -> next send time
    opened = 0

    def open_one(now):
        nonlocal opened
        s = socket.socket()
        s.settimeout(1.0)
        try:
            s.connect(("127.0.0.1", port))
            if head:
                s.sendall(head)
        except OSError:
            s.close()
            return False
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        due[s] = now + (random.uniform(0, period) if period else float("inf"))
        opened += 1
        return True

    def drop(s):
        sel.unregister(s)
        due.pop(s, None)
        s.close()

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        now = time.monotonic()
        budget = 500    # connections (re)opened per turn, so the loop keeps turning
        while len(due) < count and budget > 0 and time.monotonic() < end:
            if not open_one(now):
                break
            budget -= 1
        for key, _ in sel.select(timeout=0.05):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                drop(s)     # cut by the proxy: opened again next turn
        now = time.monotonic()
        for s, t in list(due.items()):
            if t <= now:
                try:
                    s.send(drip)
                except BlockingIOError:
                    pass
                except OSError:
                    drop(s)
                    continue
                due[s] = now + period
    print(json.dumps({"open": len(due), "opened": opened}), flush=True)
    for s in list(due):
        s.close()


# ------------------------------------------------------------ the good client

def good_client(port, seconds):
    """GETs at GOOD_RATE/s on fresh connections: [(status, seconds)]."""
    results = []
    lock = threading.Lock()
    threads = []

    def one():
        t0 = time.monotonic()
        status = get_status(port, GOOD_TIMEOUT)
        with lock:
            results.append((status, time.monotonic() - t0))

    start = time.monotonic()
    n = int(seconds * GOOD_RATE)
    for i in range(n):
        delay = start + i / GOOD_RATE - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        t = threading.Thread(target=one, daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(GOOD_TIMEOUT + 5)
    return n, results


def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def run_one(system, attack_name, workdir, apps, seconds, sluice):
    proxy, port = start_proxy(system, workdir, apps, sluice)
    attacker = None
    try:
        if attack_name != "none":
            attacker = subprocess.Popen([sys.executable, __file__, "--attacker", attack_name,
                                         "--port", str(port), "--seconds", str(seconds + 1)],
                                        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        time.sleep(RAMP)
        sent, results = good_client(port, seconds - RAMP)
        held = {}
        if attacker:
            try:
                out, _ = attacker.communicate(timeout=GOOD_TIMEOUT + 10)
                held = json.loads(out.decode().strip().splitlines()[-1])
            except (subprocess.TimeoutExpired, ValueError, IndexError):
                pass
        served = [t for status, t in results if status == 200]
        return {"system": system, "attack": attack_name, "sent": sent, "served": len(served),
                "p50_ms": percentile(served, 0.5) * 1000, "p99_ms": percentile(served, 0.99) * 1000,
                "attacker_open": held.get("open"), "attacker_opened": held.get("opened")}
    finally:
        if attacker and attacker.poll() is None:
            attacker.kill()
            attacker.wait(5)
        proxy.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--systems", default="sluice,haproxy,nginx")
    ap.add_argument("--attacks", default="slowloris,slowpost,idle")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--out", default="")
    ap.add_argument("--sluice", default=str(SLUICE))
    ap.add_argument("--attacker", default="")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    if args.attacker:
        attack(args.port, args.attacker, args.seconds)
        return
    workdir = Path(tempfile.mkdtemp(prefix="sluice-hostile-"))
    apps = [free_port(), free_port()]
    servers = [start_gunicorn(workdir, "app-%d" % (i + 1), p) for i, p in enumerate(apps)]
    rows = []
    try:
        for attack_name in args.attacks.split(","):
            for system in args.systems.split(","):
                row = run_one(system, attack_name, workdir, apps, args.seconds, args.sluice)
                rows.append(row)
                print(json.dumps(row), flush=True)
                time.sleep(2)   # the applications finish what they were given
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    lines = ["| attack | proxy | good requests served | p50 ms | p99 ms | attacker connections open at the end / opened |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append("| %s | %s | %d/%d | %.1f | %.1f | %s / %s |" % (
            r["attack"], r["system"], r["served"], r["sent"], r["p50_ms"], r["p99_ms"], r["attacker_open"],
            r["attacker_opened"]))
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
