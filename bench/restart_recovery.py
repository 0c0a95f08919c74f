#!/usr/bin/env python3
"""restart_recovery.py - how long a restarted application stays out of rotation.

  restart_recovery.py [--build DIR] [--rounds 5] [--interval 2s] [--rise 2]
                      [--fast-interval 250ms | --fast-interval none]
                      [--phase after-down | random]

Starts two build/backend applications and build/sluice in front of them
(one worker, `[health] interval`, `rise`, and `fast_interval` unless it is
"none", for builds that predate it), then ROUNDS times: kills the second
application by its PID, sends requests until sluice has marked it down,
starts it again on the same port and sends requests (one every 10 ms, each
on a new connection) until one is answered by it. The time from starting
it again to that answer is its recovery; one line per round, then
"min median max" in seconds.

--phase after-down restarts it as soon as sluice has marked it down (what a
crash and an immediate restart by a supervisor look like); --phase random
first waits a random part of an interval once it is back, so that the kill
lands anywhere in the checks' rhythm.

Every process is stopped by its PID on the way out; every wait is bounded.
"""

import argparse
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answered_by(port, timeout=2.0):
    """The X-Backend of a GET / through sluice, or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    m = re.search(rb"\r\nX-Backend: (\S+)", data, re.I)
    return m.group(1).decode() if m else None


def wait_for(predicate, bound, step=0.01):
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def seconds(text):
    return float(text[:-2]) / 1000 if text.endswith("ms") else float(text[:-1])


class Run:
    def __init__(self, args, workdir):
        self.args = args
        self.dir = Path(workdir)
        self.procs = []
        self.ports = [free_port(), free_port()]
        self.backend_procs = [None, None]

    def spawn(self, argv, name):
        out = open(self.dir / (name + ".out"), "ab")
        err = open(self.dir / (name + ".err"), "ab")
        p = subprocess.Popen([str(a) for a in argv], stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        out.close()
        err.close()
        self.procs.append(p)
        return p

    def start_backend(self, i):
        port = self.ports[i]
        argv = [self.args.build / "backend", "--port", port, "--name", "b%d" % (i + 1)]
        self.backend_procs[i] = self.spawn(argv, "b%d" % (i + 1))
        if not wait_for(lambda: self._listening(port), 10):
            sys.exit("backend b%d did not listen on %d" % (i + 1, port))

    @staticmethod
    def _listening(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def start_sluice(self):
        self.port = free_port()
        health = ['interval = "%s"' % self.args.interval, "rise = %d" % self.args.rise]
        if self.args.fast_interval != "none":
            health.append('fast_interval = "%s"' % self.args.fast_interval)
        apps = "".join('[[applications]]\nname = "b%d"\nip = "127.0.0.1"\nport = %d\n' % (i + 1, p)
                       for i, p in enumerate(self.ports))
        config = ('[server]\nlisten = "127.0.0.1:%d"\nworkers = 1\n[health]\n%s\n'
                  '[admin]\nlisten = ""\n[log]\naccess = "off"\n%s' % (self.port, "\n".join(health), apps))
        path = self.dir / "sluice.toml"
        path.write_text(config)
        self.sluice = self.spawn([self.args.build / "sluice", "-c", path], "sluice")
        if not wait_for(lambda: self._listening(self.port), 10):
            sys.exit("sluice did not start: " + (self.dir / "sluice.err").read_text()[-2000:])

    def poke(self):
        """A request: passive detection then sees the refusals at once."""
        answered_by(self.port)
        return True

    def downs(self):
        return len(re.findall(r"application b2 \S+ up -> down", (self.dir / "sluice.err").read_text()))

    def round(self, n):
        interval = seconds(self.args.interval)
        if self.args.phase == "random":
            time.sleep(random.uniform(0, interval))
        self.backend_procs[1].send_signal(signal.SIGKILL)
        self.backend_procs[1].wait(10)
        if not wait_for(lambda: self.poke() and self.downs() >= n, 3 * interval * (self.args.rise + 3)):
            sys.exit("round %d: sluice never marked b2 down" % n)
        restarted = time.monotonic()
        self.start_backend(1)
        deadline = restarted + interval * (self.args.rise + 3)
        while time.monotonic() < deadline:
            if answered_by(self.port) == "b2":
                return time.monotonic() - restarted
            time.sleep(0.01)
        sys.exit("round %d: b2 not back within %.1fs" % (n, deadline - restarted))

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.send_signal(signal.SIGKILL)
                    p.wait(5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", type=Path, default=Path(__file__).resolve().parents[1] / "build")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--interval", default="2s")
    ap.add_argument("--rise", type=int, default=2)
    ap.add_argument("--fast-interval", default="250ms")
    ap.add_argument("--phase", choices=("after-down", "random"), default="after-down")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-recovery-") as workdir:
        run = Run(args, workdir)
        try:
            run.start_backend(0)
            run.start_backend(1)
            run.start_sluice()
            if not wait_for(lambda: answered_by(run.port) == "b2", 10):
                sys.exit("b2 never answered through sluice")
            times = []
            for n in range(1, args.rounds + 1):
                times.append(run.round(n))
                print("round %d: back in rotation %.2f s after its restart" % (n, times[-1]), flush=True)
            print("%.2f %.2f %.2f" % (min(times), statistics.median(times), max(times)))
        finally:
            run.stop()


if __name__ == "__main__":
    main()
