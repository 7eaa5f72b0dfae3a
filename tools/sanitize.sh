#!/usr/bin/env bash
# The sanitizer stage (make sanitize, .ci/run): in the clang ASan + UBSan (+ LSan) build (build-san,
# made by `make san-build`), run the unit tests (all but the slow whole-pipeline suites named in
# SAN_EXCLUDE) and a tiny train -> distill -> eval round through the kdlab binary on Fashion-MNIST.
# Any sanitizer report fails the process that made it (halt_on_error), hence the test or the round.
# Usage: tools/sanitize.sh [BUILD_DIR]   (default build-san)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-san}
root=$(pwd)
[[ -x $build/kdlab ]] || { echo "sanitize: $build/kdlab missing; run 'make san-build'" >&2; exit 1; }

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"

export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# Reports name functions and lines (llvm-14, installed by install-deps.sh --with-sanitize).
[[ -x /usr/bin/llvm-symbolizer-14 ]] && export ASAN_SYMBOLIZER_PATH=/usr/bin/llvm-symbolizer-14
# Left out: suites whose point is a long end-to-end result, not new code paths (every preset's
# tiny study, Slurm, the 85%-in-two-epochs training, the resume byte comparisons after a SIGTERM
# or a kill in either distillation loop, distillation's bytes with and without the logit cache,
# whose cache this stage's round below uses). Under ASan on 2 cores they took most of the stage
# (the two-epoch training alone over 6 minutes; the last two 37 s and 34 s of one core), and the
# code they run is covered by the shorter suites and the round below. And BoundedInput.*: it caps
# its children's address space (RLIMIT_AS 2 GiB), which ASan cannot start under (it reserves
# terabytes of shadow); the fuzzers run the same readers under ASan with a 2 GiB RSS limit. And
# Interrupt.ASecondSignalEndsTheRunAtOnce: its second signal must land within 3 ms of the first,
# while a step runs; ASan-slowed on busy cores it raced once (the first signal's stop won).
# And Hardening.OutOfMemoryInsideParallelKernels*: its child lowers RLIMIT_AS below what ASan's
# shadow already reserves, so every allocation fails in ASan's own allocator first.
SAN_EXCLUDE=${SAN_EXCLUDE:-'^(Presets/|BoundedInput\.|Study\.|SlurmHarness\.|StudySpec\.EveryPresetPlansAtEveryScale|Training\.LeNet5ReachesEightyFivePercent|Interrupt\.SigtermSavesTheStateAndTheResumedRun|Resume\.DistillKilledInEitherLoop|LogitCache\.DistillationIsBitwiseTheSame|Interrupt\.ASecondSignalEndsTheRunAtOnce|Hardening\.OutOfMemoryInsideParallelKernels)'}

start=$SECONDS
echo "sanitize: unit tests in $build (excluding ${SAN_EXCLUDE})"
# Each test claims one core in this build (CMakeLists.txt), so they run a core apiece; waiting
# OpenMP threads sleep rather than spin, so the two side by side do not steal each other's cores.
(cd "$build" && OMP_WAIT_POLICY=passive ctest --output-on-failure -j "$(nproc)" -E "$SAN_EXCLUDE")
echo "sanitize: unit tests took $((SECONDS - start)) s"

start=$SECONDS
data=/usr/share/datasets/fashion-mnist
out=$(mktemp -d "${TMPDIR:-/tmp}/kdlab-san-XXXXXX")
trap 'rm -rf "$out"' EXIT
kd() { echo "+ kdlab $*"; "$build/kdlab" "$@"; }
common=(--data-dir "$data" --device cpu --threads 2 --test-size 200)
kd train --model lenet5 --subset-size 256 --epochs 1 --batch 64 "${common[@]}" --out "$out/teacher"
kd distill --teacher "$out/teacher/model.safetensors" --student-model lenet5 --distill-size 256 --epochs 1 \
  --batch 64 --tau 4 "${common[@]}" --out "$out/student"
kd eval --model "$out/student/student.safetensors" --teacher "$out/teacher/model.safetensors" \
  "${common[@]}" > "$out/eval.json"
grep -q '"agreement"' "$out/eval.json" || { echo "sanitize: eval printed no agreement" >&2; exit 1; }
echo "sanitize: train/distill/eval round took $((SECONDS - start)) s"
echo "sanitize: clean"
