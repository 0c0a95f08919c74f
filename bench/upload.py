#!/usr/bin/env python3
"""upload.py - what receiving bodies before choosing an application costs.

  bench/upload.py [--rounds 5] [--seconds 5] [--before OLD_SLUICE_BINARY]

sluice (`workers = 1`, access log off) in front of two build/backend
applications, driven by wrk with POST bodies (keep-alive, `-t1 -c8`):

  1mb-buffered    1 MB bodies, default settings (the first 64 KB received
                  before an application is chosen, the rest streamed)
  1mb-streaming   1 MB bodies, `buffer_body = 0` (every byte streamed as it
                  comes)
  1kb-buffered    1 KB bodies (under buffer_body), default settings
  1kb-before      1 KB bodies, OLD_SLUICE_BINARY (a build from before
                  bodies were buffered), only with --before

Each round runs every case once, in an order that rotates from round to
round; the figures are medians over the rounds: requests/s, MB/s of
request bodies, p99, and sluice's CPU time per request (utime + stime from
/proc). sluice runs on CPU 0, wrk and the applications on CPU 1, as in
bench/run.sh.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stats  # noqa: E402
from local import free_port, stop, wait_port  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build"
PROXY_CPU, LOAD_CPU = "0", "1" if os.cpu_count() > 1 else "0"



def start(argv, log, cpu):
    with open(log, "wb") as out:
        return subprocess.Popen(["taskset", "-c", cpu] + [str(a) for a in argv], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def sluice_config(port, apps, buffer_body):
    text = '[server]\nlisten = "127.0.0.1:%d"\nworkers = 1\n\n[admin]\nlisten = ""\n\n[log]\naccess = "off"\n' % port
    if buffer_body is not None:
        text += "\n[server.limits]\nbuffer_body = %d\n" % buffer_body
    for i, p in enumerate(apps):
        text += '\n[[applications]]\nname = "app-%d"\nip = "127.0.0.1"\nport = %d\n' % (i + 1, p)
    return text


def run_case(case, workdir, apps, seconds, before):
    size, binary, buffer_body = {
        "1mb-buffered": (1 << 20, BUILD / "sluice", None),
        "1mb-streaming": (1 << 20, BUILD / "sluice", 0),
        "1kb-buffered": (1024, BUILD / "sluice", None),
        "1kb-before": (1024, before, None),
    }[case]
    port = free_port()
    cfg = workdir / ("%s.toml" % case)
    cfg.write_text(sluice_config(port, apps, buffer_body))
    script = workdir / ("post-%d.lua" % size)
    script.write_text('wrk.method = "POST"\nwrk.body = string.rep("a", %d)\n'
                      'wrk.headers["Content-Type"] = "application/octet-stream"\n' % size)
    proxy = start([binary, "-c", cfg], workdir / ("%s.log" % case), PROXY_CPU)
    try:
        if not wait_port(port):
            sys.exit("%s: sluice did not start: %s" % (case, (workdir / ("%s.log" % case)).read_text()))
        url = "http://127.0.0.1:%d/up" % port
        subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c8", "-d1s", "-s", script, url],
                       capture_output=True)
        ticks0 = stats.sample(proxy.pid)[0]
        out = subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c8", "-d%ds" % seconds,
                              "--latency", "-s", script, url], capture_output=True, text=True).stdout
        ticks1 = stats.sample(proxy.pid)[0]
        w = stats.parse_wrk(out)
        if w["errors"]:
            print("warning: %s: %d errors" % (case, w["errors"]), file=sys.stderr)
        cpu_us = (ticks1 - ticks0) * 1e6 / os.sysconf("SC_CLK_TCK") / max(1, w["requests"])
        return {"rps": w["rps"], "mbps": w["rps"] * size / 1e6, "p99": w["p99"], "cpu_us": cpu_us}
    finally:
        stop(proxy)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--before", default="")
    args = ap.parse_args()
    cases = ["1mb-buffered", "1mb-streaming", "1kb-buffered"] + (["1kb-before"] if args.before else [])
    workdir = Path(tempfile.mkdtemp(prefix="sluice-upload-"))
    apps = [free_port(), free_port()]
    backends = [start([BUILD / "backend", "--port", p, "--name", "app-%d" % (i + 1)],
                      workdir / ("backend-%d.log" % i), LOAD_CPU) for i, p in enumerate(apps)]
    results = {c: [] for c in cases}
    try:
        for p in apps:
            if not wait_port(p):
                sys.exit("backend did not start")
        for r in range(args.rounds):
            order = cases[r % len(cases):] + cases[:r % len(cases)]
            for case in order:
                res = run_case(case, workdir, apps, args.seconds, args.before)
                results[case].append(res)
                print(r, case, res, flush=True)
    finally:
        for b in backends:
            stop(b)
        shutil.rmtree(workdir, ignore_errors=True)
    print("| case | req/s | MB/s of bodies | p99 ms | sluice CPU µs/request |")
    print("| --- | --- | --- | --- | --- |")
    for case in cases:
        med = {k: statistics.median(x[k] for x in results[case]) for k in ("rps", "mbps", "p99", "cpu_us")}
        print("| %s | %.0f | %.0f | %.2f | %.1f |" % (case, med["rps"], med["mbps"], med["p99"], med["cpu_us"]))


if __name__ == "__main__":
    main()
