#!/usr/bin/env python3
"""stats.py - the numbers side of bench/run.sh.

run.sh drives the processes; everything that parses, samples /proc or does
arithmetic lives here, so the shell script stays a readable list of steps.

  stats.py proc ROOT_PID           -> "cpu_ticks rss_kb pss_kb nprocs"
                                      summed over ROOT_PID and its descendants
  stats.py tree ROOT_PID           -> ROOT_PID and its descendants, "1,2,3"
  stats.py wrk FILE                -> "requests rps p50_ms p99_ms errors"
  stats.py h2load FILE             -> the same from h2load (mean for p50, p99 NaN)
  stats.py perf FILE               -> the count of `perf stat -x,` output
  stats.py report RUNS MEM SYSCALLS META
                                   -> markdown for the comparison
  stats.py report-tls RUNS MEM SYSCALLS META
                                   -> the same for --tls, with its targets
  stats.py health-report RUNS META -> markdown for the health-scale check

RUNS is a TSV of "round system scenario requests rps p50_ms p99_ms cpu_us
errors cpu0_busy cpu1_busy" (health-scale runs add idle CPU %), MEM one of
"round system conns rss_kb_per_conn pss_kb_per_conn rss_at_rest_kb",
SYSCALLS one of "round system scenario requests syscalls", META a
"key<TAB>value" file. Every figure quoted is the median over rounds.
"""

import os
import re
import statistics
import sys

# -- /proc sampling -----------------------------------------------------------


def _stat_fields(pid):
    """Fields of /proc/PID/stat after the command name (which may hold spaces
    or parentheses, so split at the last ')')."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    return data[data.rindex(")") + 2:].split()


def process_tree(root):
    """ROOT and every descendant. /proc/PID/task/*/children is not built into
    every kernel, so walk the parent links of all processes instead."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(name)[1])
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
        children.setdefault(ppid, []).append(int(name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def _status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def sample(root):
    """(cpu ticks, RSS KiB, PSS KiB, process count) of ROOT's tree.
    utime and stime of /proc/PID/stat already sum every thread."""
    ticks = rss = pss = n = 0
    for pid in process_tree(root):
        try:
            fields = _stat_fields(pid)
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
            rss += _status_kb(pid, "VmRSS")
            pss += _pss_kb(pid)
            n += 1
        except (OSError, ValueError, IndexError):
            continue
    return ticks, rss, pss, n


# -- wrk output ---------------------------------------------------------------

_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def _ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _TIME_UNITS_MS[m.group(2)]


def parse_wrk(text):
    """requests completed, requests/s, p50 and p99 in ms, and errors (socket
    errors plus non-2xx/3xx answers) from `wrk --latency` output."""
    out = {"errors": 0}
    m = re.search(r"^\s*(\d+) requests in ", text, re.M)
    if m:
        out["requests"] = int(m.group(1))
    m = re.search(r"^Requests/sec:\s*([0-9.]+)", text, re.M)
    if m:
        out["rps"] = float(m.group(1))
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(rf"^\s*{pct}(?:\.0+)?%\s+(\S+)", text, re.M)
        if m:
            out[key] = _ms(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["errors"] += sum(int(g) for g in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        out["errors"] += int(m.group(1))
    missing = [k for k in ("requests", "rps", "p50", "p99") if k not in out]
    if missing:
        raise ValueError("wrk output lacks " + ", ".join(missing))
    return out


def parse_h2load(text):
    """requests done, requests/s, mean request time in ms, and errors
    (failed + errored + timed out, and answers that were not 2xx/3xx) from
    h2load's summary."""
    m = re.search(r"^finished in [0-9.]+m?s, ([0-9.]+) req/s", text, re.M)
    r = re.search(r"^requests: \d+ total, \d+ started, (\d+) done, \d+ succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", text, re.M)
    codes = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    t = re.search(r"^time for request:\s+\S+\s+\S+\s+(\S+)", text, re.M)
    if not (m and r and codes and t):
        raise ValueError("h2load output lacks its summary")
    errors = int(r.group(2)) + int(r.group(3)) + int(r.group(4)) + int(codes.group(3)) + int(codes.group(4))
    return {"requests": int(r.group(1)), "rps": float(m.group(1)), "p50": _ms(t.group(1)),
            "p99": float("nan"), "errors": errors}


def parse_perf_count(text):
    """The count of the one event in `perf stat -x,` output, whose lines are
    "count,unit,event,..." (comments start with '#')."""
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) >= 3 and not line.startswith("#") and fields[0].strip().isdigit():
            return int(fields[0])
    raise ValueError("perf stat output holds no count (was the event counted?)")


# -- reports ------------------------------------------------------------------

SCENARIOS = [
    ("keepalive", "Keep-alive (`wrk -t1 -c{conns} -d{duration} --latency`)"),
    ("close", "New connection per request (`wrk ... -H 'Connection: close'`)"),
    ("large", "{large_kib} KiB responses (keep-alive, `wrk ... /bytes?n={large}`)"),
    ("https-keepalive", "HTTPS keep-alive (`wrk -t1 -c{conns} -d{duration} --latency https://...`)"),
    ("https-close", "HTTPS, a new TLS connection per request (`wrk ... -H 'Connection: close'`)"),
    ("h2", "HTTP/2 over TLS (`h2load -c{conns} -m10 -D{duration}`; p50 is h2load's mean, p99 not reported)"),
]

# What sluice is held to: (label, scenario, figure, other system, limit,
# unit). With another system the limit is on sluice's median over the
# other's; without, on sluice's median itself.
TARGETS = [
    ("RSS per idle keep-alive connection, {idle} connections", None, "rss", None, 0.4, " KiB"),
    ("CPU µs/request, {large_kib} KiB responses, vs nginx", "large", "cpu", "nginx", 0.8, "×"),
    ("CPU µs/request, keep-alive, vs HAProxy", "keepalive", "cpu", "haproxy", 0.8, "×"),
    ("system calls per keep-alive request", "keepalive", "syscalls", None, 4.1, ""),
]

# --tls: terminating TLS costs sluice no more CPU per request than the others.
TLS_TARGETS = [
    (f"CPU µs/request, {title}, vs {other}", scenario, "cpu", other, 1.0, "×")
    for scenario, title in (("https-keepalive", "HTTPS keep-alive"), ("https-close", "new TLS connection"),
                            ("h2", "HTTP/2"))
    for other in ("haproxy", "nginx")
] + [(f"RSS per idle HTTPS connection, {{idle}} connections, vs {other}", None, "rss", other, 1.0, "×")
     for other in ("haproxy", "nginx")]


def read_tsv(path):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.rstrip("\n")
                if line and not line.startswith("#"):
                    rows.append(line.split("\t"))
    return rows


def read_meta(path):
    meta = {}
    for row in read_tsv(path):
        meta[row[0]] = row[1] if len(row) > 1 else ""
    return meta


def median(values):
    return statistics.median(values) if values else None


def fmt(value, digits=2):
    if value is None or value != value:   # None, or NaN (a figure not measured)
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def spread(values):
    """(max - min) / median, in percent: how far apart the rounds were."""
    if len(values) < 2 or not median(values):
        return "–"
    return f"±{(max(values) - min(values)) / median(values) * 50:.0f}%"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}"


def header(meta, title):
    lines = [f"# {title}", ""]
    for key in ("date", "machine", "kernel", "versions", "pinning", "load", "parameters"):
        if key in meta:
            lines.append(f"- **{key}**: {meta[key]}")
    for key, value in meta.items():
        if key.startswith("note"):
            lines.append(f"- **note**: {value}")
    lines.append("")
    return lines


RUN_COLUMNS = [("req/s", 4, 0), ("p50 ms", 5, 3), ("p99 ms", 6, 3), ("CPU µs/req", 7, 2)]


def _labels(meta):
    large = int(meta.get("large_bytes", "65536"))
    return {"conns": meta.get("connections", "50"), "duration": meta.get("duration", "10s"),
            "large": large, "large_kib": f"{large / 1024:g}", "idle": meta.get("idle_conns", "5000")}


def _scenario_section(out, runs, systems, scenario, title):
    """One scenario's table; returns {system: [median per RUN_COLUMNS]}."""
    out.append("## " + title)
    out.append("")
    out.append("| system | " + " | ".join(c[0] for c in RUN_COLUMNS)
               + " | proxy CPU | CPU 0 busy | CPU 1 busy | req/s spread | errors | runs |")
    out.append("|---|" + "---:|" * (len(RUN_COLUMNS) + 6))
    med = {}
    for system in systems:
        rows = [r for r in runs if r[1] == system and r[2] == scenario]
        if not rows:
            continue
        med[system] = [median([float(r[c[1]]) for r in rows]) for c in RUN_COLUMNS]
        errors = sum(int(r[8]) for r in rows)
        busy = median([float(r[4]) * float(r[7]) / 1e4 for r in rows])
        cpu0 = median([float(r[9]) for r in rows])
        cpu1 = median([float(r[10]) for r in rows])
        out.append(f"| {system} | " + " | ".join(fmt(v, c[2]) for v, c in zip(med[system], RUN_COLUMNS))
                   + f" | {fmt(busy, 0)}% | {fmt(cpu0, 0)}% | {fmt(cpu1, 0)}% "
                   f"| {spread([float(r[4]) for r in rows])} | {errors} | {len(rows)} |")
    _ratio_rows(out, med, 6)
    out.append("")
    return med


def _ratio_rows(out, med, blanks):
    for other in ("haproxy", "nginx"):
        if "sluice" in med and other in med:
            out.append(f"| sluice/{other} | "
                       + " | ".join(ratio(a, b) for a, b in zip(med["sluice"], med[other]))
                       + " |" * (blanks + 1))


def _memory_section(out, mem, systems, meta):
    if not mem:
        return {}
    out.append(f"## Memory per idle {meta.get('memory_what', 'keep-alive')} connection ({meta.get('idle_conns', '5000')} "
               "connections, one request each, then idle)")
    out.append("")
    out.append("Growth of the proxy's RSS/PSS (all its processes) divided by the connections "
               "(KB = KiB, as /proc counts); memory a proxy sets aside up front shows in RSS at rest, "
               "not per connection.")
    out.append("")
    out.append("| system | RSS KB/conn | PSS KB/conn | RSS at rest MB | runs |")
    out.append("|---|---:|---:|---:|---:|")
    med = {}
    for system in systems:
        rows = [r for r in mem if r[1] == system]
        if not rows:
            continue
        med[system] = [median([float(r[i]) for r in rows]) for i in (3, 4)]
        med[system].append(median([float(r[5]) / 1024 for r in rows]))
        out.append(f"| {system} | " + " | ".join(fmt(v) for v in med[system]) + f" | {len(rows)} |")
    _ratio_rows(out, med, 1)
    out.append("")
    return med


def _syscall_section(out, calls, systems, labels, meta):
    """System calls per request, per scenario counted; returns
    {scenario: {system: median}}."""
    scenarios = [s for s in ("keepalive", "large") if any(r[2] == s for r in calls)]
    if not scenarios:
        return {}
    names = {"keepalive": "keep-alive", "large": f"{labels['large_kib']} KiB responses"}
    out.append("## System calls per request (saturated, "
               f"`perf stat -e raw_syscalls:sys_enter`, {meta.get('syscall_duration', '5s')} runs)")
    out.append("")
    out.append("System calls entered by the proxy's processes (all threads) during a wrk run of its own "
               "(the same settings), divided by the requests wrk completed. The runs are separate from "
               "the timed ones above because the tracepoint slows every system call on the machine "
               "while it counts.")
    out.append("")
    out.append("| system | " + " | ".join(names[s] for s in scenarios) + " | runs |")
    out.append("|---|" + "---:|" * (len(scenarios) + 1))
    med = {s: {} for s in scenarios}
    for system in systems:
        cells = []
        n = 0
        for s in scenarios:
            rows = [r for r in calls if r[1] == system and r[2] == s]
            n = max(n, len(rows))
            med[s][system] = median([int(r[4]) / int(r[3]) for r in rows])
            cells.append(fmt(med[s][system]))
        if n:
            out.append(f"| {system} | " + " | ".join(cells) + f" | {n} |")
    for other in ("haproxy", "nginx"):
        if "sluice" in med[scenarios[0]] and other in med[scenarios[0]]:
            out.append(f"| sluice/{other} | "
                       + " | ".join(ratio(med[s].get("sluice"), med[s].get(other)) for s in scenarios) + " | |")
    out.append("")
    return med


def _targets_section(out, runs_med, mem_med, calls_med, labels, targets):
    out.append("## Targets")
    out.append("")
    out.append("| target | sluice | limit | |")
    out.append("|---|---:|---:|---|")
    for label, scenario, column, other, limit, unit in targets:
        if column == "rss":
            table = mem_med
            pick = (lambda m: m[0])
        elif column == "cpu":
            table = runs_med.get(scenario, {})
            pick = (lambda m: m[3])
        else:
            table = calls_med.get(scenario, {})
            pick = (lambda m: m)
        mine = table.get("sluice")
        theirs = table.get(other) if other else None
        if mine is None or (other and theirs is None):
            value = None
        else:
            value = pick(mine) / pick(theirs) if other else pick(mine)
        verdict = "n/a" if value is None else ("met" if value <= limit else "**not met**")
        # three decimals, so that a figure just over its limit does not print as the limit
        shown = "n/a" if value is None else f"{value:.3f}{unit}"
        out.append(f"| {label.format(**labels)} | {shown} | ≤ {limit:g}{unit} | {verdict} |")
    out.append("")


def report(runs_path, mem_path, calls_path, meta_path, targets=None):
    meta = read_meta(meta_path)
    labels = _labels(meta)
    systems = meta.get("systems", "sluice haproxy nginx").split()
    runs = read_tsv(runs_path)
    mem = read_tsv(mem_path)
    calls = read_tsv(calls_path)
    out = header(meta, "sluice benchmark")
    out.append("Medians over rounds. For req/s a ratio above 1 favours sluice; "
               "for latency, CPU, memory and system calls a ratio below 1 does. "
               "Proxy CPU is the share of one core the proxy used during the run "
               "(below ~95%, the load side, not the proxy, set the pace). "
               "CPU 0 busy is all use of the proxy's core (above proxy CPU: other processes took it); "
               "CPU 1 busy is the core of wrk and the backends (near 100%: the load side was the limit). "
               "Spread is half the range of req/s over rounds, relative to the median.")
    out.append("")

    runs_med = {}
    for scenario, title in SCENARIOS:
        if any(r[2] == scenario for r in runs):
            runs_med[scenario] = _scenario_section(out, runs, systems, scenario, title.format(**labels))
    mem_med = _memory_section(out, mem, systems, meta)
    calls_med = _syscall_section(out, calls, systems, labels, meta)
    if "sluice" in systems:
        _targets_section(out, runs_med, mem_med, calls_med, labels, targets or TARGETS)

    out.append("<details><summary>every run</summary>")
    out.append("")
    out.append("| round | system | scenario | requests | req/s | p50 ms | p99 ms | CPU µs/req | errors "
               "| CPU 0 % | CPU 1 % |")
    out.append("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        out.append("| " + " | ".join(r) + " |")
    out.append("")
    if mem:
        out.append("| round | system | idle conns | RSS KB/conn | PSS KB/conn | RSS at rest KB |")
        out.append("|---:|---|---:|---:|---:|---:|")
        for r in mem:
            out.append("| " + " | ".join(r) + " |")
        out.append("")
    if calls:
        out.append("| round | system | scenario | requests | system calls | per request |")
        out.append("|---:|---|---|---:|---:|---:|")
        for r in calls:
            out.append("| " + " | ".join(r) + f" | {int(r[4]) / int(r[3]):.3f} |")
        out.append("")
    out.append("</details>")
    return "\n".join(out) + "\n"


def health_report(runs_path, meta_path):
    meta = read_meta(meta_path)
    runs = read_tsv(runs_path)
    target = float(meta.get("target", "1.10"))
    out = header(meta, "sluice health-check scaling (issue 3)")
    out.append(meta.get("setup", ""))
    out.append("")
    out.append("| scenario | config | req/s | p50 ms | p99 ms | CPU µs/req | idle CPU % | CPU 0 busy "
               "| CPU 1 busy | errors | runs |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    verdicts = []
    pairs = [("", "sluice")]
    if any(r[1].startswith("haproxy-") for r in runs):
        pairs.append(("haproxy-", "HAProxy, for comparison"))
    for (prefix, system), scenario in [(p, s) for p in pairs for s in ("paced", "saturated")]:
        med = {}
        for config in ("base", "fleet"):
            label = prefix + config
            rows = [r for r in runs if r[1] == label and r[2] == scenario]
            if not rows:
                continue
            med[config] = [median([float(r[i]) for r in rows]) for i in (4, 5, 6, 7, 11, 9, 10)]
            errors = sum(int(r[8]) for r in rows)
            v = med[config]
            out.append(f"| {scenario} | {label} | {fmt(v[0], 0)} | {fmt(v[1], 3)} | {fmt(v[2], 3)} "
                       f"| {fmt(v[3])} | {fmt(v[4], 1)} | {fmt(v[5], 0)}% | {fmt(v[6], 0)}% | {errors} "
                       f"| {len(rows)} |")
        # Each round runs base and fleet back to back, so a round's own
        # ratio cancels the drift of a shared machine between rounds.
        p99 = {(r[0], r[1]): float(r[6]) for r in runs if r[2] == scenario}
        base, fleet = prefix + "base", prefix + "fleet"
        paired = sorted(p99[(n, fleet)] / p99[(n, base)] for n, c in p99
                        if c == base and (n, fleet) in p99 and p99[(n, base)] > 0)
        if paired and "base" in med and "fleet" in med and med["base"][2]:
            ratio = median(paired)
            verdict = "PASS" if ratio <= target else "FAIL"
            if prefix:
                verdict = "no target: " + verdict.lower()
            verdicts.append(f"**{system}, {scenario}: p99 fleet/base = {ratio:.2f}** (median of the {len(paired)} "
                            f"rounds' own ratios, which ranged {paired[0]:.2f}-{paired[-1]:.2f}; "
                            f"ratio of the medians above: {med['fleet'][2] / med['base'][2]:.2f}; "
                            f"target ≤ {target:.2f}): **{verdict}**")
        else:
            verdicts.append(f"**{system}, {scenario}: p99 fleet/base: n/a**")
    out.append("")
    for v in verdicts:
        out.append(v)
        out.append("")
    out.append("<details><summary>every run</summary>")
    out.append("")
    out.append("| round | config | scenario | requests | req/s | p50 ms | p99 ms | CPU µs/req | errors "
               "| CPU 0 % | CPU 1 % | idle CPU % |")
    out.append("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        out.append("| " + " | ".join(r) + " |")
    out.append("")
    out.append("</details>")
    return "\n".join(out) + "\n"


def main(argv):
    if len(argv) >= 3 and argv[1] == "proc":
        print(*sample(int(argv[2])))
    elif len(argv) >= 3 and argv[1] == "tree":
        print(",".join(str(pid) for pid in process_tree(int(argv[2]))))
    elif len(argv) >= 3 and argv[1] == "perf":
        with open(argv[2]) as f:
            print(parse_perf_count(f.read()))
    elif len(argv) >= 3 and argv[1] in ("wrk", "h2load"):
        with open(argv[2]) as f:
            w = (parse_wrk if argv[1] == "wrk" else parse_h2load)(f.read())
        print(w["requests"], f"{w['rps']:.2f}", f"{w['p50']:.4f}", f"{w['p99']:.4f}", w["errors"],
              sep="\t")
    elif len(argv) >= 6 and argv[1] in ("report", "report-tls"):
        targets = TLS_TARGETS if argv[1] == "report-tls" else TARGETS
        sys.stdout.write(report(argv[2], argv[3], argv[4], argv[5], targets))
    elif len(argv) >= 4 and argv[1] == "health-report":
        sys.stdout.write(health_report(argv[2], argv[3]))
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except ValueError as e:
        sys.stderr.write(f"stats.py: {e}\n")
        sys.exit(1)
