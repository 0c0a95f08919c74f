#!/usr/bin/env bash
# fuzz/coverage.sh COV_DIR FUZZ_DIR TARGET... - line and branch coverage of
# the parsers reached by each target's corpus: the one the last `make fuzz`
# grew in FUZZ_DIR/run/TARGET/corpus, else the seeds and regressions.
# COV_DIR holds the targets built with -fprofile-instr-generate (make
# fuzz-coverage does both). Needs llvm-profdata and llvm-cov (Debian's llvm-14).
set -eu
cd "$(dirname "$0")/.."
cov=$1
runs=$2
shift 2
tool() {
  command -v "$1-14" 2>/dev/null || command -v "$1" 2>/dev/null ||
    { echo "fuzz-coverage: $1 not found (apt-get install llvm-14)" >&2; exit 1; }
}
profdata=$(tool llvm-profdata)
llvmcov=$(tool llvm-cov)

# report PROFDATA BINARY [-object BINARY...] -- SOURCE...
report() {
  local prof=$1
  shift
  local objects=()
  while [ "$1" != -- ]; do objects+=("$1"); shift; done
  shift
  # columns: file, regions (3), functions (3), lines, missed, cover, branches, missed, cover
  "$llvmcov" report "${objects[@]}" -instr-profile="$prof" "$@" | sed "s|$PWD/||" |
    awk '$1 ~ /\.c$/ { printf "  %-10s lines %s of %s (%s), branches %s of %s (%s)\n",
                        $1, $8 - $9, $8, $10, $11 - $12, $11, $13 }'
}

for target in "$@"; do
  inputs=$runs/run/$target/corpus
  if [ ! -d "$inputs" ]; then
    inputs=$cov/seeds/$target
    rm -rf "$inputs" && mkdir -p "$inputs"
    cp fuzz/corpus/"$target"/* "$inputs/"
    [ -d fuzz/regressions/"$target" ] &&
      find fuzz/regressions/"$target" -maxdepth 1 -type f ! -name '.*' -exec cp {} "$inputs/" \;
  fi
  rm -f "$cov/$target".prof*
  LLVM_PROFILE_FILE="$cov/$target.profraw" "$cov/fuzz_$target" -runs=0 "$inputs" >/dev/null 2>&1
  "$profdata" merge -o "$cov/$target.profdata" "$cov/$target.profraw"
  echo "coverage: $target ($(find "$inputs" -type f | wc -l) inputs from $inputs)"
  case $target in
    request|response) report "$cov/$target.profdata" "$cov/fuzz_$target" -- src/http1.c ;;
    config) report "$cov/$target.profdata" "$cov/fuzz_$target" -- src/toml.c src/config.c ;;
  esac
done

# http1.c serves both directions: what the two targets reach together
if [ -f "$cov/request.profdata" ] && [ -f "$cov/response.profdata" ]; then
  "$profdata" merge -o "$cov/http1.profdata" "$cov/request.profdata" "$cov/response.profdata"
  echo "coverage: request + response"
  report "$cov/http1.profdata" "$cov/fuzz_request" -object "$cov/fuzz_response" -- src/http1.c
fi
