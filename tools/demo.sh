#!/usr/bin/env bash
# demo.sh - `make demo`: sluice on :8080 in front of two demo applications.
#
# Starts build/backend twice (app-1 on :8001, app-2 on :8002), then sluice
# with tools/demo.toml, and waits for sluice. Ctrl-C (or sluice exiting, or
# any failure) stops everything this script started, by PID, and nothing else.
# Set BUILD to use another build directory (default: build).
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
pids=()
workdir=$(mktemp -d "${TMPDIR:-/tmp}/sluice-demo.XXXXXX")

# shellcheck disable=SC2317  # reached through the trap
cleanup() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$workdir"
}
trap cleanup EXIT
# An interrupted demo is a normal way to end it: exit 0 after cleaning up.
trap 'exit 0' INT TERM

die() {
    echo "demo: $*" >&2
    exit 1
}

for bin in "$BUILD/backend" "$BUILD/sluice"; do
    [[ -x $bin ]] || die "$bin is missing: run make first"
done

# Waits until file $2 contains $3, while process $1 lives (at most 5 s).
wait_for_line() {
    local pid=$1 file=$2 text=$3
    for _ in $(seq 50); do
        grep -q -- "$text" "$file" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# Waits until something accepts on 127.0.0.1:$2, while process $1 lives.
wait_for_port() {
    local pid=$1 port=$2
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

for i in 1 2; do
    log="$workdir/app-$i.log"
    "$BUILD/backend" --port "800$i" --name "app-$i" >"$log" 2>&1 &
    pids+=($!)
    # The line is printed only after the port is bound, so a port already
    # taken by something else is reported here rather than misleading later.
    wait_for_line "$!" "$log" "listening on" ||
        die "app-$i did not start on port 800$i: $(cat "$log")"
    cat "$log"
done

"$BUILD/sluice" -c tools/demo.toml &
sluice_pid=$!
pids+=("$sluice_pid")
wait_for_port "$sluice_pid" 8080 || die "sluice did not start listening on port 8080 (see above)"

cat <<'EOF'

  sluice is listening on http://localhost:8080 — in front of app-1 (:8001) and app-2 (:8002)

  try:   curl http://localhost:8080/
         (twice: app-1 and app-2 answer in turn)
         curl -i http://localhost:8080/health
         curl -s 'http://localhost:8080/bytes?n=1000000' | wc -c

  Ctrl-C stops everything.

EOF

# `wait` rather than a foreground child: bash runs the INT trap only once a
# foreground command returns, but interrupts `wait` at once.
status=0
wait "$sluice_pid" || status=$?
# On Ctrl-C sluice itself may stop first (status 0): nothing to report then.
((status == 0)) || echo "demo: sluice exited with status $status" >&2
exit "$status"
