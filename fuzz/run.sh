#!/usr/bin/env bash
# fuzz/run.sh BUILD_FUZZ_DIR TARGET... - runs each libFuzzer target in turn
# for FUZZ_SECONDS (default 60) on a scratch copy of fuzz/corpus/TARGET and
# fuzz/regressions/TARGET, so the repository's corpus is never written.
# Prints the executions and coverage each reached; exits 1 if any target
# crashed, leaked, timed out or broke an invariant (the input is kept in
# BUILD_FUZZ_DIR/crashes/TARGET/: add it to fuzz/regressions/TARGET/).
set -u
cd "$(dirname "$0")/.."
dir=$1
shift
seconds=${FUZZ_SECONDS:-60}
failed=()
summary=()

for target in "$@"; do
  bin=$dir/fuzz_$target
  work=$dir/run/$target
  crashes=$dir/crashes/$target
  rm -rf "$work"
  mkdir -p "$work/corpus" "$crashes"
  cp fuzz/corpus/"$target"/* "$work/corpus/"
  [ -d fuzz/regressions/"$target" ] && find fuzz/regressions/"$target" -maxdepth 1 -type f ! -name '.*' -exec cp {} "$work/corpus/" \;
  max_len=4096
  [ "$target" = config ] && max_len=8192      # the full example file fits
  echo "fuzz: $target for ${seconds}s"
  # one process, no fork: bounded by -max_total_time; -timeout catches hangs
  nice -n 10 "$bin" "$work/corpus" -dict="fuzz/$target.dict" -max_total_time="$seconds" \
    -timeout=10 -max_len="$max_len" -print_final_stats=1 -artifact_prefix="$crashes/" \
    >"$work/log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -n1)
  cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$work/log" | tail -n1)
  line="$target: ${execs:-?} executions in ${seconds}s, ${cov:-no coverage line}"
  if [ "$rc" -ne 0 ]; then
    line="$line, FAILED (exit $rc): see $work/log and $crashes/"
    failed+=("$target")
    grep -E 'ERROR|invariant broken|SUMMARY' "$work/log" | head -n 5
  fi
  summary+=("$line")
done

printf 'fuzz: %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in: ${failed[*]}" >&2
  exit 1
fi
