#!/usr/bin/env bash
# bench/run.sh - sluice against HAProxy and nginx on the same two backends.
#
#   bench/run.sh                 the comparison; writes bench/results.md
#   bench/run.sh --health-scale  sluice with 2000 down applications being
#                                health-checked vs. without;
#                                writes bench/results-health-scale.md
#   bench/run.sh --tls           the three terminating TLS: HTTPS keep-alive,
#                                a new TLS connection per request, and
#                                HTTP/2 (h2load); writes bench/results-tls.md
#
# Method, knobs and how to read the tables: bench/README.md.
# Every process started here is stopped by PID on exit; nothing else is
# touched.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=$ROOT/bench
BUILD=${SLUICE_BUILD:-$ROOT/build}

ROUNDS=${BENCH_ROUNDS:-3}
DURATION=${BENCH_DURATION:-10s}
CONNECTIONS=${BENCH_CONNECTIONS:-50}
IDLE_CONNS=${BENCH_IDLE_CONNS:-5000}
IDLE_TLS_CONNS=${BENCH_IDLE_TLS_CONNS:-2000}
LARGE_BYTES=${BENCH_LARGE_BYTES:-65536}
LARGE_PATH="/bytes?n=$LARGE_BYTES"
SYSCALLS=${BENCH_SYSCALLS:-1}
SYSCALL_DURATION=${BENCH_SYSCALL_DURATION:-5s}
SYSTEMS=${BENCH_SYSTEMS:-sluice haproxy nginx}
SLUICE=${BENCH_SLUICE:-$BUILD/sluice}
BACKEND=${BENCH_BACKEND:-$BUILD/backend}
PORT_BASE=${BENCH_PORT_BASE:-18000}
FAKE_APPS=${BENCH_FAKE_APPS:-2000}
FAKE_PORT_BASE=${BENCH_FAKE_PORT_BASE:-20000}
HEALTH_TARGET=1.10
# --health-scale: also measure HAProxy with the same pool checked the same way
HEALTH_SYSTEMS=${BENCH_HEALTH_SYSTEMS:-sluice}

APP1_PORT=$((PORT_BASE + 101))
APP2_PORT=$((PORT_BASE + 102))
declare -A LISTEN_PORT=([sluice]=$((PORT_BASE + 80)) [haproxy]=$((PORT_BASE + 81)) [nginx]=$((PORT_BASE + 82)))

PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=$(command -v python3)

MODE=compare
SCHEME=http   # https in --tls mode, where every proxy terminates TLS
usage() {
    sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}
while [ $# -gt 0 ]; do
    case $1 in
        --health-scale) MODE=health ;;
        --tls) MODE=tls ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
# a p99 ratio needs more rounds than the comparison's medians do
if [ "$MODE" = health ] && [ -z "${BENCH_ROUNDS:-}" ]; then ROUNDS=5; fi

say() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

# -- processes ----------------------------------------------------------------

WORK=$(mktemp -d /tmp/sluice-bench.XXXXXX)
STARTED=()   # PIDs of everything we started, in start order

# descendants PID: every process below PID (nginx's workers, say).
descendants() {
    local pid
    for pid in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        echo "$pid"
        descendants "$pid"
    done
}

# stop PID: TERM, up to 5 s to exit, then KILL it and whatever it left.
stop() {
    local pid=$1 kids i
    # only a live child of this script: never a process that reused the PID
    if [ "$(ps -o ppid= -p "$pid" 2>/dev/null | tr -d ' ')" != "$$" ]; then
        wait "$pid" 2>/dev/null || true
        return 0
    fi
    kids=$(descendants "$pid")
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "PID $pid did not stop on TERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    for i in $kids; do
        kill -KILL "$i" 2>/dev/null || true
    done
}

cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
        stop "${STARTED[$i]}"
    done
    if [ "${BENCH_KEEP:-0}" = 1 ] || [ $rc -ne 0 ]; then
        say "logs and raw output kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start LOG CPU CMD...: run CMD pinned to CPU in the background; sets PID.
start() {
    local log=$1 cpu=$2
    shift 2
    taskset -c "$cpu" "$@" >"$log" 2>&1 &
    PID=$!
    STARTED+=("$PID")
}

# forget PID once it has been stopped
stopped() {
    local pid=$1 i
    stop "$pid"
    for i in "${!STARTED[@]}"; do
        [ "${STARTED[$i]}" = "$pid" ] && unset 'STARTED[i]'
    done
    STARTED=("${STARTED[@]}")
}

listening() { [ -n "$(ss -Hltn "sport = :$1")" ]; }

require_free() {
    local port
    for port in "$@"; do
        listening "$port" && die "port $port is already in use (set BENCH_PORT_BASE to move the bench's ports)"
    done
    return 0
}

# wait_listen NAME PID PORT LOG: up to 10 s for PORT to listen while PID lives.
wait_listen() {
    local name=$1 pid=$2 port=$3 log=$4 i
    for i in $(seq 100); do
        listening "$port" && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$log" >&2 || true
            die "$name exited before listening on port $port (log above)"
        fi
        sleep 0.1
    done
    tail -n 20 "$log" >&2 || true
    die "$name is not listening on port $port after 10 s (log above)"
}

# check_answers NAME PORT LOG: the proxy answers 200 and reaches both backends.
check_answers() {
    local name=$1 port=$2 log=$3 i body seen=""
    for i in 1 2 3 4 5 6; do
        if ! body=$(curl -kfsS --max-time 3 "$SCHEME://127.0.0.1:$port/" 2>&1); then
            tail -n 20 "$log" >&2 || true
            die "$name on port $port does not answer: $body"
        fi
        seen="$seen $body"
    done
    case $seen in
        *app-1*app-2*|*app-2*app-1*) ;;
        *) die "$name on port $port answered, but not from both backends (saw:$seen)" ;;
    esac
    [ "$MODE" != health ] || return 0
    body=$(curl -kfsS --max-time 3 -o /dev/null -w '%{size_download}' "$SCHEME://127.0.0.1:$port$LARGE_PATH" 2>&1) || true
    [ "$body" = "$LARGE_BYTES" ] || die "$name on port $port answered $LARGE_PATH with $body bytes, not $LARGE_BYTES"
}

# -- the systems --------------------------------------------------------------

# fill TEMPLATE OUT KEY=VALUE...: copy TEMPLATE to OUT replacing each @KEY@.
fill() {
    local template=$1 out=$2 kv script=""
    shift 2
    for kv in "$@"; do
        script="${script}s|@${kv%%=*}@|${kv#*=}|g;"
    done
    sed "$script" "$template" >"$out"
}

# sluice_config OUT PORT HEALTH_INTERVAL FAKES
sluice_config() {
    local out=$1 port=$2 interval=$3 fakes=$4 i
    fill "$BENCH_DIR/sluice.toml.in" "$out" "LISTEN_PORT=$port" "HEALTH_INTERVAL=$interval" "MAX_CONNS=$MAX_CONNS"
    {
        printf '\n[[applications]]\nname = "app-1"\nip = "127.0.0.1"\nport = %d\n' "$APP1_PORT"
        printf '\n[[applications]]\nname = "app-2"\nip = "127.0.0.1"\nport = %d\n' "$APP2_PORT"
        for ((i = 0; i < fakes; i++)); do
            printf '\n[[applications]]\nname = "fake-%d"\nalive = false\nip = "127.0.0.1"\nport = %d\n' \
                "$i" $((FAKE_PORT_BASE + i))
        done
    } >>"$out"
}

# haproxy_health_config OUT PORT FAKES: the HAProxy config, with every server
# checked as sluice checks its applications (GET /health every 1 s, 1 s
# timeout, rise 2, fall 3) and FAKES more servers where nothing listens.
haproxy_health_config() {
    local out=$1 port=$2 fakes=$3 i
    # each checked server costs HAProxy a descriptor of its `ulimit -n` budget
    # (base and fleet get the same maxconn)
    fill "$BENCH_DIR/haproxy.cfg.in" "$out.in" "LISTEN_PORT=$port" "APP1_PORT=$APP1_PORT" "APP2_PORT=$APP2_PORT" \
        "MAX_CONNS=$(((NOFILE - FAKE_APPS) / 2 - 1000))"
    sed -e 's|^backend applications$|backend applications\n    option httpchk GET /health\n    timeout check 1s\n    default-server inter 1s fastinter 1s downinter 1s rise 2 fall 3|' \
        -e 's|^\(    server app-[12] .*\)$|\1 check|' "$out.in" >"$out"
    for ((i = 0; i < fakes; i++)); do
        printf '    server fake-%d 127.0.0.1:%d check\n' "$i" $((FAKE_PORT_BASE + i))
    done >>"$out"
}

# --tls: one ECDSA P-256 certificate for 127.0.0.1, and each system's
# config made to terminate TLS with it, offering h2 and http/1.1 by ALPN.
make_certificate() {
    TLS_DIR=$WORK/tls
    mkdir -p "$TLS_DIR"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
        -addext subjectAltName=IP:127.0.0.1 -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" \
        >"$TLS_DIR/openssl.log" 2>&1 || { cat "$TLS_DIR/openssl.log" >&2; die "openssl cannot make a certificate"; }
    cat "$TLS_DIR/cert.pem" "$TLS_DIR/key.pem" >"$TLS_DIR/combined.pem"
}

tls_sluice() {
    printf '\n[server.tls]\ncert = "%s"\nkey = "%s"\n' "$TLS_DIR/cert.pem" "$TLS_DIR/key.pem" >>"$1"
}

tls_haproxy() {
    sed -i -e "s|^\(    bind 127.0.0.1:[0-9]*\)$|\1 ssl crt $TLS_DIR/combined.pem alpn h2,http/1.1|" \
        -e 's|X-Forwarded-Proto http$|X-Forwarded-Proto https|' "$1"
}

tls_nginx() {
    sed -i -e 's|^\(        listen 127.0.0.1:[0-9]*\) backlog|\1 ssl http2 backlog|' \
        -e "s|^\(        listen .*\)$|\1\n        ssl_certificate $TLS_DIR/cert.pem;\n        ssl_certificate_key $TLS_DIR/key.pem;\n        ssl_protocols TLSv1.2 TLSv1.3;|" "$1"
}

# start_system NAME [CONFIG]: start, wait, verify; sets PID. CONFIG replaces
# the default configuration of sluice or HAProxy.
start_system() {
    local name=$1 port=${LISTEN_PORT[$1]} dir=$WORK/$1 log
    mkdir -p "$dir"
    log=$dir/log
    require_free "$port"
    case $name in
        sluice)
            local config=${2:-$dir/sluice.toml}
            [ -n "${2:-}" ] || sluice_config "$config" "$port" 2s 0
            [ "$MODE" != tls ] || tls_sluice "$config"
            start "$log" "$PROXY_CPU" "$SLUICE" -c "$config"
            ;;
        haproxy)
            local config=${2:-$dir/haproxy.cfg}
            [ -n "${2:-}" ] || fill "$BENCH_DIR/haproxy.cfg.in" "$config" \
                "LISTEN_PORT=$port" "APP1_PORT=$APP1_PORT" "APP2_PORT=$APP2_PORT" "MAX_CONNS=$MAX_CONNS"
            [ "$MODE" != tls ] || tls_haproxy "$config"
            haproxy -c -q -f "$config" >"$log" 2>&1 || { cat "$log" >&2; die "haproxy rejects $config"; }
            start "$log" "$PROXY_CPU" haproxy -f "$config" -db
            ;;
        nginx)
            mkdir -p "$dir/nginx"
            fill "$BENCH_DIR/nginx.conf.in" "$dir/nginx/nginx.conf" \
                "PREFIX=$dir/nginx" "LISTEN_PORT=$port" "APP1_PORT=$APP1_PORT" "APP2_PORT=$APP2_PORT" \
                "MAX_CONNS=$MAX_CONNS" "NOFILE=$NOFILE"
            [ "$MODE" != tls ] || tls_nginx "$dir/nginx/nginx.conf"
            nginx -q -t -e "$dir/nginx/error.log" -p "$dir/nginx" -c "$dir/nginx/nginx.conf" >"$log" 2>&1 \
                || { cat "$log" >&2; die "nginx rejects $dir/nginx/nginx.conf"; }
            start "$log" "$PROXY_CPU" nginx -e "$dir/nginx/error.log" -p "$dir/nginx" -c "$dir/nginx/nginx.conf"
            ;;
    esac
    wait_listen "$name" "$PID" "$port" "$log"
    # HAProxy 2.6 starts every server up until its checks fail (fall 3 at
    # 1 s); sluice's fake applications start down (alive = false)
    [ "${SETTLE_S:-0}" = 0 ] || sleep "$SETTLE_S"
    check_answers "$name" "$port" "$log"
}

# -- measuring ----------------------------------------------------------------

cpu_ticks() { "$PYTHON" "$BENCH_DIR/stats.py" proc "$1" | cut -d' ' -f1; }

# cpu_times: "busy total" jiffies of the proxy's CPU, then of the load's CPU,
# from /proc/stat (busy = everything but idle and iowait).
cpu_times() {
    awk -v a="cpu$PROXY_CPU" -v b="cpu$LOAD_CPU" '
        $1 == a || $1 == b {
            busy = $2 + $3 + $4 + $7 + $8 + $9
            t[$1] = busy " " (busy + $5 + $6)
        }
        END { print t[a], t[b] }' /proc/stat
}

# wrk_run PORT OUT PATH DURATION [WRK ARGS...]: wrk against PORT, pinned
# to the load's CPU, its output in OUT.
wrk_run() {
    local port=$1 out=$2 path=$3 duration=$4
    shift 4
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"$duration" --latency "$@" \
        "$SCHEME://127.0.0.1:$port$path" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed against port $port"; }
}

# completed PID PORT OUT: after a run, the proxy is alive and wrk completed
# requests; prints wrk's parsed figures (see stats.py wrk).
completed() {
    local pid=$1 port=$2 out=$3 parsed
    kill -0 "$pid" 2>/dev/null || die "the proxy (PID $pid) died during the run; see $WORK"
    parsed=$("$PYTHON" "$BENCH_DIR/stats.py" wrk "$out") || { cat "$out" >&2; die "cannot read wrk output $out"; }
    [ "${parsed%%$'\t'*}" -gt 0 ] || { cat "$out" >&2; die "wrk completed no request against port $port"; }
    printf '%s' "$parsed"
}

# run_row PARSED TICKS CPU_BEFORE CPU_AFTER: a load generator's parsed
# figures with the proxy's CPU ticks and the two cores' cpu_times around the
# run, as the row measure prints.
run_row() {
    awk -v p="$1" -v d="$2" -v hz="$CLK_TCK" -v c0="$3" -v c1="$4" 'BEGIN {
        split(p, f, "\t"); split(c0, x, " "); split(c1, y, " ")
        printf "%s\t%s\t%s\t%s\t%.2f\t%s\t%.0f\t%.0f\n", f[1], f[2], f[3], f[4], d * 1e6 / hz / f[1], f[5],
            100 * (y[1] - x[1]) / (y[2] - x[2] + 1e-9), 100 * (y[3] - x[3]) / (y[4] - x[4] + 1e-9)
    }'
}

# measure PID PORT OUT PATH [WRK ARGS...]: one wrk run against PORT; prints
# "requests rps p50 p99 cpu_us_per_request errors cpu0_busy% cpu1_busy%"
# (tab-separated; cpu0 is the proxy's CPU, cpu1 the load's) and keeps wrk's
# own output in OUT.
measure() {
    local pid=$1 port=$2 out=$3 path=$4 t0 t1 c0 c1 parsed
    shift 4
    t0=$(cpu_ticks "$pid")
    c0=$(cpu_times)
    wrk_run "$port" "$out" "$path" "$DURATION" "$@"
    c1=$(cpu_times)
    t1=$(cpu_ticks "$pid")
    parsed=$(completed "$pid" "$port" "$out") || exit 1   # command substitutions do not inherit set -e
    run_row "$parsed" $((t1 - t0)) "$c0" "$c1"
}

# count_syscalls PID PORT OUT PATH: a wrk run of its own (SYSCALL_DURATION)
# while `perf stat` counts the system calls that PID's process tree (every
# thread) enters; sets SYSCALLS_RESULT to "requests syscalls". Not during a
# timed run: while the tracepoint is on, every system call on the machine
# takes the slow path, which would skew CPU per request. Not to be called in
# a subshell: perf must be among the processes cleanup stops.
count_syscalls() {
    local pid=$1 port=$2 out=$3 path=$4 parsed perf_pid count proxy_pid=$PID
    start "$out.perf-log" "$LOAD_CPU" perf stat -e raw_syscalls:sys_enter -x, -o "$out.perf" \
        -p "$("$PYTHON" "$BENCH_DIR/stats.py" tree "$pid")"
    perf_pid=$PID
    PID=$proxy_pid
    # perf counts from when it has attached; the proxy is idle until wrk starts
    sleep 0.5
    kill -0 "$perf_pid" 2>/dev/null || { cat "$out.perf-log" >&2; die "perf stat did not start"; }
    wrk_run "$port" "$out" "$path" "$SYSCALL_DURATION"
    # perf stat writes its count on SIGINT
    kill -INT "$perf_pid"
    wait "$perf_pid" 2>/dev/null || true
    stopped "$perf_pid"
    parsed=$(completed "$pid" "$port" "$out") || exit 1   # command substitutions do not inherit set -e
    count=$("$PYTHON" "$BENCH_DIR/stats.py" perf "$out.perf") \
        || { cat "$out.perf-log" "$out.perf" >&2; die "cannot read perf stat output $out.perf"; }
    SYSCALLS_RESULT="${parsed%%$'\t'*}"$'\t'"$count"
}

# check_run NAME RESULT: warn about errors, and about other processes on the
# proxy's CPU, which make the run say less about the proxy.
check_run() {
    local name=$1 errors others
    errors=$(cut -f6 <<<"$2")
    [ "$errors" = 0 ] || say "  warning: $name: $errors errors (see the raw wrk output)"
    others=$(awk -F'\t' '{ printf "%.0f", $7 - $2 * $5 / 1e4 }' <<<"$2")
    [ "$others" -le 10 ] || say "  warning: $name: other processes took ~$others% of CPU $PROXY_CPU during the run"
}

warm_up() {
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d1s "$SCHEME://127.0.0.1:$1/" >/dev/null 2>&1 || true
}

start_backends() {
    [ -x "$BACKEND" ] || die "no backend at $BACKEND (run \`make all\` first)"
    require_free "$APP1_PORT" "$APP2_PORT"
    start "$WORK/app-1.log" "$LOAD_CPU" "$BACKEND" --port "$APP1_PORT" --host 127.0.0.1 --name app-1
    wait_listen app-1 "$PID" "$APP1_PORT" "$WORK/app-1.log"
    start "$WORK/app-2.log" "$LOAD_CPU" "$BACKEND" --port "$APP2_PORT" --host 127.0.0.1 --name app-2
    wait_listen app-2 "$PID" "$APP2_PORT" "$WORK/app-2.log"
}

# -- the machine ----------------------------------------------------------------

for tool in wrk curl taskset ss haproxy nginx; do
    command -v "$tool" >/dev/null || die "$tool is not installed (run \`make deps\`)"
done
# wrk_duration VARIABLE VALUE: VALUE as wrk takes it (10 -> 10s)
wrk_duration() {
    case $2 in
        *[0-9]s|*[0-9]m) printf '%s' "$2" ;;
        *[0-9]) printf '%ss' "$2" ;;
        *) die "$1 must look like 10s or 1m, not '$2'" ;;
    esac
}
DURATION=$(wrk_duration BENCH_DURATION "$DURATION")
SYSCALL_DURATION=$(wrk_duration BENCH_SYSCALL_DURATION "$SYSCALL_DURATION")
[ "$ROUNDS" -ge 1 ] 2>/dev/null || die "BENCH_ROUNDS must be a positive integer"
[ "$LARGE_BYTES" -ge 1 ] 2>/dev/null || die "BENCH_LARGE_BYTES must be a positive integer"
if [ "$MODE" = compare ] && [ "$SYSCALLS" = 1 ]; then
    command -v perf >/dev/null || die "perf is not installed (run \`make deps\`), or set BENCH_SYSCALLS=0"
    perf stat -e raw_syscalls:sys_enter -x, -o /dev/null -- true 2>/dev/null \
        || die "perf cannot count raw_syscalls:sys_enter (needs root, or kernel.perf_event_paranoid <= -1, and tracefs); or set BENCH_SYSCALLS=0"
fi

CLK_TCK=$(getconf CLK_TCK)
NPROC=$(nproc)
if [ "$NPROC" -ge 2 ]; then
    PROXY_CPU=0
    LOAD_CPU=1
else
    PROXY_CPU=0
    LOAD_CPU=0
    say "only one CPU: the proxy shares it with wrk and the backends"
fi
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)

# Descriptors. Every proxied connection costs a proxy up to two (client and
# application side) and idle_conns.py one; all of them inherit this shell's
# limit. The proxies are configured for MAX_CONNS connections, which must
# hold the idle-memory test's connections with room to spare.
fd_limits() {
    local want=$(((IDLE_CONNS + CONNECTIONS + 1000 > 9000 ? IDLE_CONNS + CONNECTIONS + 1000 : 9000) * 2 + 2000))
    local soft hard
    soft=$(ulimit -Sn)
    if [ "$soft" != unlimited ] && [ "$soft" -lt "$want" ]; then
        ulimit -n "$want" 2>/dev/null || {
            hard=$(ulimit -Hn)
            [ "$hard" = unlimited ] || [ "$hard" -ge "$want" ] && hard=$want
            ulimit -Sn "$hard"
        }
    fi
    NOFILE=$(ulimit -Sn)
    [ "$NOFILE" = unlimited ] && NOFILE=$want
    [ "$NOFILE" -le "$want" ] || NOFILE=$want
    MAX_CONNS=$(((NOFILE - 2000) / 2))
    [ "$MAX_CONNS" -ge $((IDLE_CONNS + CONNECTIONS + 100)) ] \
        || die "the open-file limit ($NOFILE, hard $(ulimit -Hn)) is too low for BENCH_IDLE_CONNS=$IDLE_CONNS; lower it or raise the hard limit"
}
fd_limits
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)

write_meta() {
    local meta=$1
    {
        printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
        printf 'machine\t%s CPUs, %s\n' "$NPROC" "${CPU_MODEL:-unknown CPU}"
        printf 'kernel\t%s\n' "$(uname -r)"
        printf 'pinning\tproxy on CPU %s; wrk and both backends on CPU %s\n' "$PROXY_CPU" "$LOAD_CPU"
        printf 'load\t%s at start, %s at the end (1/5/15-minute load averages; other work on the machine skews every figure)\n' \
            "$LOAD_AT_START" "$(cut -d' ' -f1-3 /proc/loadavg)"
        printf 'connections\t%s\nduration\t%s\nidle_conns\t%s\n' "$CONNECTIONS" "$DURATION" "$IDLE_CONNS"
    } >"$meta"
}

versions() {
    local v=""
    if [ -x "$SLUICE" ]; then
        v=$("$SLUICE" --version 2>&1 | head -n1 || true)
        case $v in sluice*) ;; *) v="sluice $v" ;; esac
        v="$v (commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), working tree may differ); "
    fi
    v="$v$(haproxy -v 2>&1 | head -n1 | awk '{ print "HAProxy " $3 }'); "
    v="$v$(nginx -v 2>&1 | sed 's|.*nginx/|nginx |'); "
    v="$v$(wrk --version 2>&1 | head -n1 | awk '{ print "wrk " $2 }')"
    printf '%s' "$v"
}

# rotate ROUND SYSTEM...: sets order to the systems rotated by ROUND - 1,
# so no system always runs first or right after a particular other one.
rotate() {
    local round=$1 i
    shift
    order=()
    for ((i = 0; i < $#; i++)); do
        order+=("${@:$(((i + round - 1) % $# + 1)):1}")
    done
    say "round $round/$ROUNDS: ${order[*]}"
}

# -- the comparison -----------------------------------------------------------

compare() {
    local systems=() system runs=$WORK/runs.tsv mem=$WORK/mem.tsv calls=$WORK/syscalls.tsv meta=$WORK/meta.tsv
    local round i order mem_out ka cl lg port r calls_said scenario path
    for system in $SYSTEMS; do
        case $system in
            sluice)
                if [ ! -x "$SLUICE" ]; then
                    say "skipping sluice: no executable at $SLUICE (run \`make all\`)"
                    SKIPPED_SLUICE=1
                    continue
                fi ;;
            haproxy|nginx) ;;
            *) die "unknown system in BENCH_SYSTEMS: $system" ;;
        esac
        systems+=("$system")
    done
    [ ${#systems[@]} -gt 0 ] || die "nothing to measure"
    for system in sluice haproxy nginx; do require_free "${LISTEN_PORT[$system]}"; done

    start_backends
    : >"$runs"
    : >"$mem"
    : >"$calls"
    for ((round = 1; round <= ROUNDS; round++)); do
        rotate "$round" "${systems[@]}"
        for system in "${order[@]}"; do
            port=${LISTEN_PORT[$system]}
            start_system "$system"
            # memory first, on a fresh process
            mem_out=$(taskset -c "$LOAD_CPU" "$PYTHON" "$BENCH_DIR/idle_conns.py" \
                --port "$port" --pid "$PID" --count "$IDLE_CONNS") \
                || die "idle-connection memory test failed against $system"
            printf '%s\t%s\t%s\n' "$round" "$system" "${mem_out// /$'\t'}" >>"$mem"
            warm_up "$port"
            ka=$(measure "$PID" "$port" "$WORK/$system/wrk-keepalive-$round.txt" /)
            printf '%s\t%s\tkeepalive\t%s\n' "$round" "$system" "$ka" >>"$runs"
            cl=$(measure "$PID" "$port" "$WORK/$system/wrk-close-$round.txt" / -H 'Connection: close')
            printf '%s\t%s\tclose\t%s\n' "$round" "$system" "$cl" >>"$runs"
            lg=$(measure "$PID" "$port" "$WORK/$system/wrk-large-$round.txt" "$LARGE_PATH")
            printf '%s\t%s\tlarge\t%s\n' "$round" "$system" "$lg" >>"$runs"
            for r in "$ka" "$cl" "$lg"; do
                check_run "$system" "$r"
            done
            calls_said=""
            if [ "$SYSCALLS" = 1 ]; then
                for scenario in keepalive large; do
                    path=/
                    [ "$scenario" = large ] && path=$LARGE_PATH
                    count_syscalls "$PID" "$port" "$WORK/$system/wrk-$scenario-syscalls-$round.txt" "$path"
                    printf '%s\t%s\t%s\t%s\n' "$round" "$system" "$scenario" "$SYSCALLS_RESULT" >>"$calls"
                    calls_said="$calls_said$(awk -F'\t' '{ printf ", %.2f", $2 / $1 }' <<<"$SYSCALLS_RESULT")"
                done
                calls_said=", system calls/req${calls_said#,} (keep-alive, large)"
            fi
            say "  $system: req/s keep-alive $(cut -f2 <<<"$ka"), close $(cut -f2 <<<"$cl"), large $(cut -f2 <<<"$lg"); $(cut -d' ' -f2 <<<"$mem_out") KB/idle conn$calls_said"
            stopped "$PID"
        done
    done

    write_meta "$meta"
    {
        printf 'versions\t%s\n' "$(versions)"
        printf 'parameters\t%s round(s), %s per run, %s connections, large responses of %s bytes; %s idle connections for memory; %s\n' \
            "$ROUNDS" "$DURATION" "$CONNECTIONS" "$LARGE_BYTES" "$IDLE_CONNS" \
            "$([ "$SYSCALLS" = 1 ] && echo "system calls counted in runs of $SYSCALL_DURATION" || echo "system calls not counted (BENCH_SYSCALLS=0)")"
        printf 'systems\t%s\n' "${systems[*]}"
        printf 'large_bytes\t%s\nsyscall_duration\t%s\n' "$LARGE_BYTES" "$SYSCALL_DURATION"
        [ -z "${SKIPPED_SLUICE:-}" ] || printf 'note1\tsluice was skipped: no executable at %s\n' "$SLUICE"
        [ ! -f "$WORK/nginx/nginx/error.log" ] || printf 'note2\tnginx (proxy_buffering on, its default) logged %s time(s) that it buffered an upstream response to a temporary file\n' \
            "$(grep -c 'buffered to a temporary file' "$WORK/nginx/nginx/error.log" || true)"
    } >>"$meta"
    "$PYTHON" "$BENCH_DIR/stats.py" report "$runs" "$mem" "$calls" "$meta" >"$WORK/results.md"
    cp "$WORK/results.md" "$BENCH_DIR/results.md"
    echo
    cat "$WORK/results.md"
    say "written to bench/results.md"
}

# -- --tls: the same systems terminating TLS ------------------------------------

# measure_h2 PID PORT OUT: one h2load run (HTTP/2 by ALPN, CONNECTIONS
# connections, 10 streams each) against PORT; prints what measure prints.
measure_h2() {
    local pid=$1 port=$2 out=$3 t0 t1 c0 c1 parsed
    t0=$(cpu_ticks "$pid")
    c0=$(cpu_times)
    taskset -c "$LOAD_CPU" h2load -c"$CONNECTIONS" -m10 -D"${DURATION%s}" "https://127.0.0.1:$port/" >"$out" 2>&1 \
        || { cat "$out" >&2; die "h2load failed against port $port"; }
    c1=$(cpu_times)
    t1=$(cpu_ticks "$pid")
    kill -0 "$pid" 2>/dev/null || die "the proxy (PID $pid) died during the run; see $WORK"
    grep -q "^Application protocol: h2" "$out" || { cat "$out" >&2; die "port $port did not negotiate h2"; }
    parsed=$("$PYTHON" "$BENCH_DIR/stats.py" h2load "$out") || { cat "$out" >&2; die "cannot read h2load output $out"; }
    run_row "$parsed" $((t1 - t0)) "$c0" "$c1"
}

tls_compare() {
    local systems=($SYSTEMS) runs=$WORK/runs.tsv mem=$WORK/mem.tsv meta=$WORK/meta.tsv round i order system port ka cl h2 mem_out
    command -v h2load >/dev/null || die "h2load is not installed (run scripts/install-deps)"
    [ -x "$SLUICE" ] || die "--tls needs sluice: no executable at $SLUICE (run \`make all\`)"
    for system in sluice haproxy nginx; do require_free "${LISTEN_PORT[$system]}"; done
    SCHEME=https
    make_certificate
    start_backends
    : >"$runs"
    : >"$mem"
    for ((round = 1; round <= ROUNDS; round++)); do
        rotate "$round" "${systems[@]}"
        for system in "${order[@]}"; do
            port=${LISTEN_PORT[$system]}
            start_system "$system"
            mem_out=$(taskset -c "$LOAD_CPU" "$PYTHON" "$BENCH_DIR/idle_conns.py" --tls \
                --port "$port" --pid "$PID" --count "$IDLE_TLS_CONNS") \
                || die "idle TLS connection memory test failed against $system"
            printf '%s\t%s\t%s\n' "$round" "$system" "${mem_out// /$'\t'}" >>"$mem"
            warm_up "$port"
            ka=$(measure "$PID" "$port" "$WORK/$system/wrk-https-keepalive-$round.txt" /)
            printf '%s\t%s\thttps-keepalive\t%s\n' "$round" "$system" "$ka" >>"$runs"
            cl=$(measure "$PID" "$port" "$WORK/$system/wrk-https-close-$round.txt" / -H 'Connection: close')
            printf '%s\t%s\thttps-close\t%s\n' "$round" "$system" "$cl" >>"$runs"
            h2=$(measure_h2 "$PID" "$port" "$WORK/$system/h2load-$round.txt")
            printf '%s\t%s\th2\t%s\n' "$round" "$system" "$h2" >>"$runs"
            for r in "$ka" "$cl" "$h2"; do check_run "$system" "$r"; done
            say "  $system: req/s HTTPS keep-alive $(cut -f2 <<<"$ka"), new TLS connection $(cut -f2 <<<"$cl"), HTTP/2 $(cut -f2 <<<"$h2"); $(cut -d' ' -f2 <<<"$mem_out") KB/idle TLS conn"
            stopped "$PID"
        done
    done
    IDLE_CONNS=$IDLE_TLS_CONNS write_meta "$meta"
    {
        printf 'versions\t%s; %s; %s\n' "$(versions)" "$(h2load --version | head -n1)" "$(openssl version)"
        printf 'parameters\t%s round(s), %s per run, %s connections; one ECDSA P-256 certificate, TLS 1.3 (what wrk and h2load negotiate), ALPN h2 and http/1.1\n' \
            "$ROUNDS" "$DURATION" "$CONNECTIONS"
        printf 'systems\t%s\n' "${systems[*]}"
        printf 'memory_what\tHTTPS keep-alive\n'
    } >>"$meta"
    : >"$WORK/empty.tsv"
    "$PYTHON" "$BENCH_DIR/stats.py" report-tls "$runs" "$mem" "$WORK/empty.tsv" "$meta" >"$WORK/results-tls.md"
    sed -i '1s/.*/# sluice benchmark: TLS termination and HTTP\/2/' "$WORK/results-tls.md"
    cp "$WORK/results-tls.md" "$BENCH_DIR/results-tls.md"
    echo
    cat "$WORK/results-tls.md"
    say "written to bench/results-tls.md"
}

# -- health checks of a large pool must not slow the proxy ---------------------

health_scale() {
    local runs=$WORK/health.tsv meta=$WORK/health-meta.tsv dir=$WORK/sluice
    local round config system port i0 i1 idle r k
    local configs=(base fleet) files
    declare -A files=([base]=$dir/base.toml [fleet]=$dir/fleet.toml)
    [ -x "$SLUICE" ] || die "--health-scale needs sluice: no executable at $SLUICE (run \`make all\`)"
    require_free "${LISTEN_PORT[sluice]}"
    ss -Hltn | awk -v lo="$FAKE_PORT_BASE" -v hi=$((FAKE_PORT_BASE + FAKE_APPS - 1)) '
        { n = split($4, a, ":"); p = a[n] + 0; if (p >= lo && p <= hi) { print p; bad = 1 } }
        END { exit bad }' >/dev/null \
        || die "something listens in the fake applications' range $FAKE_PORT_BASE-$((FAKE_PORT_BASE + FAKE_APPS - 1))"
    mkdir -p "$dir"
    sluice_config "${files[base]}" "${LISTEN_PORT[sluice]}" 1s 0
    sluice_config "${files[fleet]}" "${LISTEN_PORT[sluice]}" 1s "$FAKE_APPS"
    if [[ " $HEALTH_SYSTEMS " == *" haproxy "* ]]; then
        command -v haproxy >/dev/null || die "BENCH_HEALTH_SYSTEMS has haproxy, but it is not installed"
        mkdir -p "$WORK/haproxy"
        files[haproxy-base]=$WORK/haproxy/base.cfg
        files[haproxy-fleet]=$WORK/haproxy/fleet.cfg
        haproxy_health_config "${files[haproxy-base]}" "${LISTEN_PORT[haproxy]}" 0
        haproxy_health_config "${files[haproxy-fleet]}" "${LISTEN_PORT[haproxy]}" "$FAKE_APPS"
        configs+=(haproxy-base haproxy-fleet)
    fi

    start_backends
    : >"$runs"
    for ((round = 1; round <= ROUNDS; round++)); do
        # rotate the order, so that no config always runs first
        local order=()
        for ((k = 0; k < ${#configs[@]}; k++)); do
            order+=("${configs[$(((k + round - 1) % ${#configs[@]}))]}")
        done
        say "round $round/$ROUNDS: ${order[*]}"
        for config in "${order[@]}"; do
            system=sluice
            [[ $config == haproxy-* ]] && system=haproxy
            port=${LISTEN_PORT[$system]}
            SETTLE_S=0
            [ "$config" = haproxy-fleet ] && SETTLE_S=4
            SETTLE_S=$SETTLE_S start_system "$system" "${files[$config]}"
            # let a few check intervals pass, and see what checking costs idle
            sleep 1
            i0=$(cpu_ticks "$PID")
            sleep 3
            i1=$(cpu_ticks "$PID")
            idle=$(awk -v d=$((i1 - i0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", d * 100 / hz / 3 }')
            warm_up "$port"
            r=$(measure "$PID" "$port" "$WORK/$system/wrk-$config-$round.txt" /)
            printf '%s\t%s\tsaturated\t%s\t%s\n' "$round" "$config" "$r" "$idle" >>"$runs"
            check_run "$config" "$r"
            say "  $config saturated: $(cut -f2 <<<"$r") req/s, p99 $(cut -f4 <<<"$r") ms, idle CPU $idle%"
            r=$(measure "$PID" "$port" "$WORK/$system/wrk-$config-$round-paced.txt" / -s "$BENCH_DIR/paced.lua")
            printf '%s\t%s\tpaced\t%s\t%s\n' "$round" "$config" "$r" "$idle" >>"$runs"
            check_run "$config" "$r"
            say "  $config paced: $(cut -f2 <<<"$r") req/s, p99 $(cut -f4 <<<"$r") ms"
            stopped "$PID"
        done
    done

    write_meta "$meta"
    {
        printf 'versions\t%s\n' "$(versions)"
        printf 'parameters\t%s round(s) (alternating order), wrk keep-alive %s connections for %s, saturated (no pause) then paced (%s ms pause between requests on each connection, bench/paced.lua)\n' \
            "$ROUNDS" "$CONNECTIONS" "$DURATION" "${BENCH_PACE_MS:-5}"
        printf 'target\t%s\n' "$HEALTH_TARGET"
        printf 'setup\t%s\n' "sluice (1 worker) in front of the two bench backends, [health] interval \"1s\", timeout \"1s\" (path /health). **base**: only the two real applications. **fleet**: the same plus $FAKE_APPS applications with alive = false on 127.0.0.1 ports $FAKE_PORT_BASE-$((FAKE_PORT_BASE + FAKE_APPS - 1)), where nothing listens, so they get no traffic but are health-checked every second. Idle CPU % is the proxy's CPU use with no traffic (mostly health checking).$([[ " $HEALTH_SYSTEMS " == *" haproxy "* ]] && printf ' **haproxy-base** and **haproxy-fleet**: HAProxy (nbthread 1) with the same servers, each checked the same way (option httpchk GET /health, inter/fastinter/downinter 1s, timeout check 1s, rise 2, fall 3), for comparison.')"
    } >>"$meta"
    "$PYTHON" "$BENCH_DIR/stats.py" health-report "$runs" "$meta" >"$WORK/health.md"
    cp "$WORK/health.md" "$BENCH_DIR/results-health-scale.md"
    echo
    cat "$WORK/health.md"
    say "written to bench/results-health-scale.md"
}

case $MODE in
    compare) compare ;;
    health) health_scale ;;
    tls) tls_compare ;;
esac
