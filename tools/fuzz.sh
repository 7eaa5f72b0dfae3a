#!/usr/bin/env bash
# Runs every fuzz target (tests/fuzz/fuzz_*.cpp, built as build-san/fuzz_<target> by
# `make san-build`) for FUZZ_SECONDS each (default 60), FUZZ_JOBS at a time (default: one per
# core; each target runs single-threaded). Each starts from a
# scratch copy of its seed corpus and its past crash inputs (tests/fuzz/corpus/<t>/,
# tests/fuzz/crashes/<t>/), so the repository's corpora only change by hand. libFuzzer counts as
# findings: a crash or sanitizer report, an uncaught exception (anything but kd::InputError, see
# fuzz_target.h), a leak, one allocation or the whole process above 2 GiB (-rss_limit_mb), and an
# input that takes longer than 20 s (-timeout). Findings are copied to fuzz-findings/<t>/; add each
# to tests/fuzz/crashes/<t>/ with its fix, so `make test` replays it for ever.
# Usage: FUZZ_SECONDS=N tools/fuzz.sh [BUILD_DIR] [TARGET...]   (exit 1 on any finding)
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-san}
shift || true
seconds=${FUZZ_SECONDS:-60}
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  for src in tests/fuzz/fuzz_*.cpp; do t=$(basename "$src" .cpp); targets+=("${t#fuzz_}"); done
fi
findings_dir=${FUZZ_FINDINGS:-fuzz-findings}
work=$(mktemp -d "${TMPDIR:-/tmp}/kdlab-fuzz-XXXXXX")
trap 'rm -rf "$work"' EXIT
# Single-threaded: the targets parse; FUZZ_JOBS of them share the cores (counted before
# OMP_NUM_THREADS is set, which nproc honours).
jobs_max=${FUZZ_JOBS:-$(nproc)}
export OMP_NUM_THREADS=1
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# Reports name functions and lines (llvm-14, installed by install-deps.sh --with-sanitize).
[[ -x /usr/bin/llvm-symbolizer-14 ]] && export ASAN_SYMBOLIZER_PATH=/usr/bin/llvm-symbolizer-14
# One target: its run, then its table row in $work/$t/row and, on a finding, $work/$t/failed.
fuzz_one() {
  local t=$1 exe=$build/fuzz_$1
  mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
  cp tests/fuzz/corpus/"$t"/* "$work/$t/corpus/"
  [[ -d tests/fuzz/crashes/$t ]] && cp tests/fuzz/crashes/"$t"/* "$work/$t/corpus/" 2>/dev/null
  local log=$work/$t/log
  "$exe" "$work/$t/corpus" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=20 \
    -max_len=16384 -print_final_stats=1 -artifact_prefix="$work/$t/artifacts/" >"$log" 2>&1
  local rc=$?
  local execs found result=ok
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  found=$(ls "$work/$t/artifacts" | wc -l)
  if [[ $rc -ne 0 || $found -gt 0 ]]; then
    result="FINDING (exit $rc): $findings_dir/$t/"
    mkdir -p "$findings_dir/$t"
    cp "$work/$t/artifacts/"* "$findings_dir/$t/" 2>/dev/null
    cp "$log" "$findings_dir/$t/log.txt"
    touch "$work/$t/failed"
  fi
  printf '%-14s %8s %10s %8s  %s\n' "$t" "$seconds" "${execs:-?}" \
    "$(ls "$work/$t/corpus" | wc -l)" "$result" >"$work/$t/row"
}
for t in "${targets[@]}"; do
  [[ -x $build/fuzz_$t ]] || { echo "fuzz: $build/fuzz_$t missing; run 'make san-build'" >&2; exit 1; }
done
for t in "${targets[@]}"; do
  while [[ $(jobs -rp | wc -l) -ge $jobs_max ]]; do wait -n; done
  fuzz_one "$t" &
done
wait
failed=()
printf '%-14s %8s %10s %8s  %s\n' target seconds execs corpus result
for t in "${targets[@]}"; do
  cat "$work/$t/row"
  [[ -e $work/$t/failed ]] && failed+=("$t")
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: findings in ${failed[*]}; logs and inputs under $findings_dir/"
  for t in "${failed[@]}"; do grep -m3 -E 'ERROR|SUMMARY|==[0-9]+==|terminate|what\(\)' "$findings_dir/$t/log.txt" | sed "s/^/  $t: /"; done
  exit 1
fi
echo "fuzz: no findings"
