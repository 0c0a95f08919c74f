#!/usr/bin/env bash
# Does a metrics scrape disturb proxied traffic? sluice (one worker, CPU 0)
# in front of two build/backend applications (CPU 1); keep-alive wrk runs
# (CPU 1) alternate between no scraper and a scraper (on CPU 1 too, as a
# Prometheus server would run elsewhere) fetching /metrics from the admin
# listener every INTERVAL seconds (default 1; Prometheus scrapes every
# 15 s by default). Prints each run (req/s, p99, sluice's CPU us per
# request) and the medians. The scraper shares the load side's core, so
# req/s and p99 also show what it takes from wrk; CPU per request is
# sluice's alone.
# Usage: bench/scrape_load.sh [ROUNDS] [SECONDS] [INTERVAL]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${SLUICE_BUILD:-$ROOT/build}
ROUNDS=${1:-5}
SECONDS_PER_RUN=${2:-5}
INTERVAL=${3:-1}
PORT=18580 ADMIN=18581 APP1=18582 APP2=18583
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
cat >"$WORK/s.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
workers = 1
[admin]
listen = "127.0.0.1:$ADMIN"
[log]
access = "off"
[[applications]]
ip = "127.0.0.1"
port = $APP1
[[applications]]
ip = "127.0.0.1"
port = $APP2
TOML
taskset -c 1 "$BUILD/backend" --port $APP1 --name a >/dev/null 2>&1 & PIDS+=($!)
taskset -c 1 "$BUILD/backend" --port $APP2 --name b >/dev/null 2>&1 & PIDS+=($!)
taskset -c 0 "$BUILD/sluice" -c "$WORK/s.toml" >/dev/null 2>"$WORK/err" & SLUICE=$!
PIDS+=($SLUICE)
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/" >/dev/null && break; sleep 0.1; done
run() {   # $1: with or without
    local scraper=
    if [ "$1" = with ]; then
        # one process, on the load side's core, as a Prometheus elsewhere would be
        taskset -c 1 python3 -c '
import sys, time, urllib.request
end = time.monotonic() + float(sys.argv[2]) + 1
while time.monotonic() < end:
    urllib.request.urlopen(sys.argv[1], timeout=2).read()
    time.sleep(float(sys.argv[3]))
' "http://127.0.0.1:$ADMIN/metrics" "$SECONDS_PER_RUN" "$INTERVAL" & scraper=$!
        sleep 0.5   # its start-up is not the scrape's cost
    fi
    local before after
    before=$(awk '{print $14 + $15}' "/proc/$SLUICE/stat")
    taskset -c 1 wrk -t1 -c50 -d"${SECONDS_PER_RUN}s" --latency "http://127.0.0.1:$PORT/" >"$WORK/wrk" 2>&1
    after=$(awk '{print $14 + $15}' "/proc/$SLUICE/stat")
    [ -n "$scraper" ] && wait "$scraper" 2>/dev/null || true
    local rps p99 reqs cpu
    rps=$(awk '/Requests\/sec/{print $2}' "$WORK/wrk")
    p99=$(awk '$1=="99%"{v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) sub(/ms/,"",v); else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' "$WORK/wrk")
    reqs=$(awk '/requests in/{print $1}' "$WORK/wrk")
    cpu=$(python3 -c "print(round(($after - $before) * 1e6 / $(getconf CLK_TCK) / $reqs, 2))")
    echo "$1 $rps $p99 $cpu" | tee -a "$WORK/runs"
}
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then run without; run with; else run with; run without; fi
done
python3 - "$WORK/runs" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
for kind in ("without", "with"):
    r = [float(x[1]) for x in rows if x[0] == kind]
    p = [float(x[2]) for x in rows if x[0] == kind]
    print("%-8s median req/s %.0f  p99 %.2f ms  (%d runs)" % (kind, statistics.median(r), statistics.median(p), len(r)))
w = [float(x[1]) for x in rows if x[0] == "with"]; o = [float(x[1]) for x in rows if x[0] == "without"]
wp = [float(x[2]) for x in rows if x[0] == "with"]; op = [float(x[2]) for x in rows if x[0] == "without"]
wc = [float(x[3]) for x in rows if x[0] == "with"]; oc = [float(x[3]) for x in rows if x[0] == "without"]
print("with/without: req/s x%.3f, p99 x%.3f, sluice CPU us/request %.2f / %.2f (x%.3f)" % (
    statistics.median(w) / statistics.median(o), statistics.median(wp) / statistics.median(op),
    statistics.median(wc), statistics.median(oc), statistics.median(wc) / statistics.median(oc)))
PY
