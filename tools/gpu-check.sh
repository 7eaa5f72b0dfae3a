#!/usr/bin/env bash
# One-shot check of the CUDA backend on a GPU machine: environment, build, *Cuda* tests, the GPU
# benchmark, a quick training study, and compute-sanitizer memcheck. Each stage runs under
# `timeout`, logs to LOG_DIR/<stage>.log and never stops the others, and every stage's limit is
# cut to what is left of a total budget (GPU_CHECK_BUDGET_S), so the whole run ends in time on a
# lent machine. Order: env, build, cuda-tests, bench, quick-study, sanitizer, quick-study-cpu; the
# sanitizer runs late on purpose: it is the slowest stage and gets what is left of the budget. The
# studies need Fashion-MNIST in $KDLAB_FMNIST_DIR or /usr/share/datasets/fashion-mnist (else skipped).
# The summary table is always printed LAST on stdout and written to LOG_DIR/summary.md. No network.
#
#   tools/gpu-check.sh [LOG_DIR]          (default gpu-check-logs/; exit 1 if a stage failed)
# Environment (all optional):
#   GPU_CHECK_BUILD_DIR          build folder (default build-gpu, relative to the repository)
#   GPU_CHECK_SKIP_BUILD=1       use what is in the build folder; GPU_CHECK_SKIP="bench ..." skips
#                                stages by name (env build cuda-tests bench quick-study sanitizer
#                                quick-study-cpu)
#   GPU_CHECK_BUDGET_S           total seconds for all stages (default 465)
#   GPU_CHECK_TEST_FILTER        gtest filter of the test stage (default '*Cuda*')
#   GPU_CHECK_SANITIZER_FILTER   gtest filter under memcheck (default '*Cuda*-*Thousand*': the
#                                1000-step leak test is too slow under memcheck)
#   GPU_CHECK_CMAKE_ARGS         extra configure arguments; GPU_CHECK_BENCH_ARGS extra bench flags
#   GPU_CHECK_COMPILE_TIMEOUT    seconds per model for PyTorch's torch.compile in the bench (60)
#   GPU_CHECK_TARBALL            if set, LOG_DIR is also packed into this .tar.gz at the end
#   GPU_CHECK_<STAGE>_TIMEOUT    per-stage limit, e.g. GPU_CHECK_BUILD_TIMEOUT=240 (upper case,
#                                '-' as '_'); the defaults are in `stage_limit` below
# Carried dependencies: on a machine without kdlab's Debian build libraries, first run
# tools/gpu-deps.sh where apt works and carry `.gpu-deps` with the call; the script then unpacks
# the packages into /tmp/kdlab-deps and uses the carried Fashion-MNIST.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
self="$repo/tools/gpu-check.sh"

# ---- stage bodies: run as `gpu-check.sh --stage NAME` under timeout, with the GC_* exports ----

find_tool() {  # PATH first, then the CUDA toolkit's bin folder
  command -v "$1" 2>/dev/null || { [[ -x /usr/local/cuda/bin/$1 ]] && echo "/usr/local/cuda/bin/$1"; } || true
}

body_env() {
  local ok=0 smi nvcc
  smi=$(find_tool nvidia-smi)
  echo "## nvidia-smi -L"
  if [[ -n "$smi" ]] && "$smi" -L; then
    "$smi" --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv || true
  else
    echo "@@fail nvidia-smi missing or failed (no GPU visible)"; ok=1
  fi
  echo "## nvcc --version"
  nvcc=$(find_tool nvcc)
  if [[ -n "$nvcc" ]]; then "$nvcc" --version || ok=1; else echo "@@fail nvcc not found"; ok=1; fi
  echo "## cmake / ninja / compute-sanitizer / cores"
  cmake --version 2>/dev/null | head -1 || echo "cmake not found"
  echo "ninja: $(command -v ninja || echo none)"
  echo "compute-sanitizer: $(find_tool compute-sanitizer)"
  echo "cores: $(nproc)"
  echo "## python3 torch"
  local py  # the same order kdlab's bench tries
  for py in /usr/bin/python3 python3; do
    if "$py" -c 'import torch' 2>/dev/null; then
      "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
          "available", torch.cuda.is_available())' 2>&1 | tail -1
      echo "($py)"; break
    fi
    echo "$py: no torch"
  done
  echo "## build dependencies (headers and libraries CMakeLists.txt looks for)"
  local missing=() h dirs=(/usr/include /usr/local/include /usr/include/x86_64-linux-gnu
                           /usr/include/openblas /usr/local/cuda/include)
  for h in cblas.h gtest/gtest.h CLI/CLI.hpp nlohmann/json.hpp zlib.h cudnn.h; do
    local found=""
    for d in "${dirs[@]}"; do [[ -f "$d/$h" ]] && found="$d/$h" && break; done
    echo "$h: ${found:-MISSING}"
    [[ -n "$found" ]] || missing+=("$h")
  done
  for l in openblas stb gtest; do
    if ldconfig -p 2>/dev/null | grep -q "lib$l\.so" || ls /usr/lib/x86_64-linux-gnu/lib$l.* >/dev/null 2>&1; then
      echo "lib$l: found"
    else
      echo "lib$l: MISSING"; missing+=("lib$l")
    fi
  done
  [[ ${#missing[@]} -eq 0 ]] || echo "@@missing ${missing[*]}"
  return $ok
}

body_build() {
  local version arch=90 gen=()
  version=$(cmake --version | head -1 | awk '{print $3}')
  # "native" (build for the GPUs present) exists from CMake 3.24 on.
  if [[ "$(printf '%s\n' 3.24 "$version" | sort -V | head -1)" == 3.24 ]]; then arch=native; fi
  if [[ ! -f "$GC_BUILD_DIR/CMakeCache.txt" ]] && command -v ninja >/dev/null; then gen=(-G Ninja); fi
  configure() {
    # shellcheck disable=SC2086  # GPU_CHECK_CMAKE_ARGS is a list of words on purpose
    cmake -S "$repo" -B "$GC_BUILD_DIR" ${gen[@]+"${gen[@]}"} -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_CUDA_ARCHITECTURES="$1" -DKDLAB_EMULATED_GPU_TESTS=OFF ${GPU_CHECK_CMAKE_ARGS:-}
  }
  if ! configure "$arch"; then
    [[ "$arch" == native ]] || return 1
    echo "@@note configure with CUDA architectures 'native' failed; retrying with 90"
    rm -rf "$GC_BUILD_DIR/CMakeCache.txt" "$GC_BUILD_DIR/CMakeFiles"
    arch=90
    configure 90 || return 1
  fi
  echo "@@arch $arch"
  if ! cmake --build "$GC_BUILD_DIR" -j "$(nproc)"; then
    # Another host compiler may warn where ours does not: -Werror must not cost the GPU session
    # its test results. Rebuild without it and say so; the warnings are in this log.
    echo "@@note build failed; retrying with -DKDLAB_CUDA_WERROR=OFF (see the warnings above)"
    cmake "$GC_BUILD_DIR" -DKDLAB_CUDA_WERROR=OFF || return 1
    cmake --build "$GC_BUILD_DIR" -j "$(nproc)" || return 1
    echo "@@werror off"
  fi
}

body_cuda_tests() {
  "$GC_BUILD_DIR/kdlab_tests" --gtest_filter="$GC_TEST_FILTER" \
    --gtest_output="xml:$GC_LOG_DIR/cuda-tests.xml"
}

body_sanitizer() {
  "$(find_tool compute-sanitizer)" --tool memcheck --error-exitcode 99 --print-limit 200 \
    "$GC_BUILD_DIR/kdlab_tests" --gtest_filter="$GC_SANITIZER_FILTER" \
    --gtest_output="xml:$GC_LOG_DIR/sanitizer-tests.xml"
}

body_bench() {
  # kdlab bench runs tools/torch_gpu_bench.py with torch.compile for each model; a cold compile
  # takes tens of seconds, so bound it (the row then says "unavailable: ...") to fit the budget.
  export TORCH_GPU_BENCH_COMPILE_TIMEOUT=${GPU_CHECK_COMPILE_TIMEOUT:-60}
  # stdout (the table) goes to its own file too, for the summary; stderr stays in the stage log.
  # shellcheck disable=SC2086
  "$GC_BUILD_DIR/kdlab" bench --device cuda ${GPU_CHECK_BENCH_ARGS:-} | tee "$GC_LOG_DIR/bench-output.txt"
}

body_quick_study() {
  rm -rf "$GC_LOG_DIR/quick-study"
  "$GC_BUILD_DIR/kdlab" repro fmnist-study --quick --device cuda --out "$GC_LOG_DIR/quick-study"
}

body_quick_study_cpu() {
  rm -rf "$GC_LOG_DIR/quick-study-cpu"
  "$GC_BUILD_DIR/kdlab" repro fmnist-study --quick --device cpu --threads 0 \
    --out "$GC_LOG_DIR/quick-study-cpu"
}

if [[ "${1:-}" == "--stage" ]]; then
  set -o pipefail
  "body_${2//-/_}"
  exit $?
fi

# ---- driver ----

case "${1:-}" in -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$self"; exit 0 ;; esac
log_dir=${1:-gpu-check-logs}
mkdir -p "$log_dir"
log_dir=$(cd "$log_dir" && pwd)
cd "$repo"
build_dir=${GPU_CHECK_BUILD_DIR:-build-gpu}
[[ "$build_dir" == /* ]] || build_dir="$repo/$build_dir"

# Build libraries and data carried from a Debian machine (tools/gpu-deps.sh): unpack them into a
# private prefix (never into /), recreate the two links Debian's alternatives would make, and
# point CMake, the compiler and the loader there. Then cuDNN: from the CUDA toolkit, else from
# PyTorch's nvidia-cudnn wheel.
carried="$repo/.gpu-deps"
if compgen -G "$carried/debs/*.deb" >/dev/null; then
  prefix=/tmp/kdlab-deps
  mkdir -p "$prefix"
  for deb in "$carried"/debs/*.deb; do dpkg -x "$deb" "$prefix"; done
  multiarch=$prefix/usr/lib/x86_64-linux-gnu
  ln -sf openblas-pthread/libopenblas.so.0 "$multiarch/libopenblas.so.0"
  ln -sf openblas-pthread/libopenblas.so "$multiarch/libopenblas.so"
  # The alternatives link cblas.h AND what it includes (openblas_config.h, f77blas.h, ...) from
  # the flavour's folder: a lone cblas.h link cannot find "openblas_config.h" beside it.
  for h in "$prefix"/usr/include/x86_64-linux-gnu/openblas-pthread/*.h; do
    ln -sf "openblas-pthread/${h##*/}" "$prefix/usr/include/x86_64-linux-gnu/${h##*/}"
  done
  ln -sf openblas-pthread/cblas.h "$prefix/usr/include/x86_64-linux-gnu/cblas-openblas.h"
  # zlib1g-dev's libz.so points at Debian's exact libz.so.1.x: use the machine's own libz.so.1.
  for libz in /lib/x86_64-linux-gnu/libz.so.1 /usr/lib/x86_64-linux-gnu/libz.so.1; do
    [[ -e "$libz" ]] && { ln -sf "$libz" "$multiarch/libz.so"; break; }
  done
  export CMAKE_PREFIX_PATH="$prefix/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  export CPATH="$prefix/usr/include:$prefix/usr/include/x86_64-linux-gnu${CPATH:+:$CPATH}"
  export LIBRARY_PATH="$multiarch:$multiarch/openblas-pthread${LIBRARY_PATH:+:$LIBRARY_PATH}"
  export LD_LIBRARY_PATH="$multiarch:$multiarch/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "[gpu-check] build libraries unpacked from $carried/debs into $prefix"
fi
if compgen -G "$carried/fashion-mnist/*.gz" >/dev/null && [[ -z "${KDLAB_FMNIST_DIR:-}" ]]; then
  export KDLAB_FMNIST_DIR="$carried/fashion-mnist"
fi
if [[ ! -f /usr/local/cuda/include/cudnn.h ]]; then
  cudnn_root=$(python3 -c 'import os, nvidia.cudnn as c; print(os.path.dirname(c.__file__) if c.__file__ else list(c.__path__)[0])' 2>/dev/null || true)
  cudnn_lib=$(ls "$cudnn_root"/lib/libcudnn.so* 2>/dev/null | head -1 || true)
  if [[ -n "$cudnn_root" && -f "$cudnn_root/include/cudnn.h" && -n "$cudnn_lib" ]]; then
    GPU_CHECK_CMAKE_ARGS="${GPU_CHECK_CMAKE_ARGS:-} -DCUDNN_INCLUDE=$cudnn_root/include -DCUDNN_LIB=$cudnn_lib"
    export GPU_CHECK_CMAKE_ARGS
    export LD_LIBRARY_PATH="$cudnn_root/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "[gpu-check] cuDNN from $cudnn_root"
  fi
fi
export GC_LOG_DIR="$log_dir" GC_BUILD_DIR="$build_dir"
export GC_TEST_FILTER=${GPU_CHECK_TEST_FILTER:-'*Cuda*'}
export GC_SANITIZER_FILTER=${GPU_CHECK_SANITIZER_FILTER:-'*Cuda*-*Thousand*'}
budget=${GPU_CHECK_BUDGET_S:-465}
skip_list=" ${GPU_CHECK_SKIP:-} "
[[ "${GPU_CHECK_SKIP_BUILD:-0}" == 1 ]] && skip_list+=" build "
fmnist_dir=${KDLAB_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}

now_ms() { echo $(($(date +%s%N) / 1000000)); }
t_start=$(now_ms)
names=() statuses=() seconds=() keys=()
declare -A status_of=()

stage_limit() {  # default seconds per stage; GPU_CHECK_<STAGE>_TIMEOUT overrides
  local var def
  var="GPU_CHECK_$(echo "${1//-/_}" | tr '[:lower:]' '[:upper:]')_TIMEOUT"
  case "$1" in
    env) def=30 ;; build) def=240 ;; cuda-tests) def=150 ;; bench) def=180 ;;
    quick-study) def=60 ;; sanitizer) def=150 ;; quick-study-cpu) def=60 ;; *) def=60 ;;
  esac
  echo "${!var:-$def}"
}

record() {  # name status seconds key
  names+=("$1"); statuses+=("$2"); seconds+=("$3"); keys+=("$4"); status_of[$1]=$2
  printf '[gpu-check] %-16s %-28s %6ss  %s\n' "$1" "$2" "$3" "$4"
}

log_tail() {  # last lines of a failing stage's log, shortened, so they show in a short console
  echo "[gpu-check] --- last lines of $1 ---"
  grep -v '^@@' "$1" | tail -n "${2:-15}" | cut -c1-220 || true
  echo "[gpu-check] ---"
}

# run_stage NAME PRECONDITION-MESSAGE: empty message = run it, else record it skipped with that.
run_stage() {
  local name=$1 why=${2:-} log="$log_dir/$1.log" limit left t0 rc status secs
  if [[ "$skip_list" == *" $name "* ]]; then record "$name" "skipped (asked)" 0 ""; return 0; fi
  if [[ -n "$why" ]]; then record "$name" "skipped ($why)" 0 ""; return 0; fi
  left=$(( budget - ($(now_ms) - t_start) / 1000 - 5 ))
  limit=$(stage_limit "$name")
  (( left < limit )) && limit=$left
  if (( limit < 10 )); then record "$name" "skipped (time budget spent)" 0 ""; return 0; fi
  {
    echo "# stage $name, limit ${limit}s, started $(date -u +%FT%TZ) on $(hostname)"
  } >"$log"
  t0=$(now_ms)
  set +e
  timeout --kill-after=10 "$limit" bash "$self" --stage "$name" >>"$log" 2>&1
  rc=$?
  set -e
  secs=$(awk -v ms=$(( $(now_ms) - t0 )) 'BEGIN { printf "%.1f", ms / 1000 }')
  case $rc in
    0) status=ok ;;
    124|137) status="timeout (${limit}s)" ;;
    *) status="failed (exit $rc)" ;;
  esac
  echo "# exit $rc after ${secs}s: $status" >>"$log"
  local key
  key=$("key_${name//-/_}" "$log" "$rc" 2>/dev/null || true)
  if [[ "$key" == STATUS=* ]]; then status=${key%%;*}; status=${status#STATUS=}; key=${key#*;}; fi
  record "$name" "$status" "$secs" "$key"
  [[ "$status" == ok ]] || log_tail "$log"
}

# ---- key numbers, read from the logs (also after a timeout) ----

key_env() {
  local gpu nvcc_rel torch_v missing fail
  gpu=$(grep -m1 '^GPU 0:' "$1" | sed 's/^GPU 0: //; s/ (UUID.*//' || true)
  nvcc_rel=$(grep -m1 -o 'release [0-9.]*' "$1" | sed 's/release /nvcc /' || true)
  torch_v=$(grep -m1 '^torch ' "$1" | awk '{print "torch " $2 (($6 == "True") ? "" : " (no CUDA)")}' || true)
  missing=$(grep -m1 '^@@missing' "$1" | sed 's/^@@missing /missing: /' || true)
  fail=$(grep '^@@fail' "$1" | sed 's/^@@fail //' | paste -sd';' - || true)
  echo "${gpu:-no GPU}, ${nvcc_rel:-no nvcc}, ${torch_v:-no torch}${missing:+, $missing}${fail:+; $fail}"
}

key_build() {
  local arch cuda err after fell=""
  arch=$(grep -m1 '^@@arch' "$1" | awk '{print $2}' || true)
  grep -q '^@@note configure with CUDA architectures' "$1" && fell=" (native failed)"
  grep -q '^@@werror off' "$1" && fell+=" (WARNINGS: built only without -Werror)"
  cuda=$(grep -o 'kdlab: CUDA sources [A-Z]*, cuDNN [A-Z]*' "$1" | tail -1 | sed 's/kdlab: //' || true)
  # Errors of the configure that counted, or of the compile: what follows the last configure.
  after=$(awk '/^@@note configure with CUDA/ { buf = ""; next } { buf = buf $0 "\n" } END { printf "%s", buf }' "$1")
  if [[ "$2" == 124 || "$2" == 137 ]]; then
    echo "${cuda:-CUDA ?}, arch ${arch:-?}${fell}; cut off at: $(grep -E '^\[ *[0-9]+(%|/[0-9]+)\]' "$1" | tail -1 | cut -c1-90)"
  elif [[ "$2" != 0 ]]; then
    err=$(printf '%s' "$after" | grep -m1 -A2 -E 'CMake Error|error:|FAILED:|\*\*\*' | grep -v '^[[:space:]]*$' |
          head -2 | sed 's/^[[:space:]]*//' | paste -sd' ' - | cut -c1-160 || true)
    echo "${cuda:+$cuda; }first error: ${err:-see build.log}"
  elif [[ "$cuda" == *"CUDA sources OFF"* ]]; then
    echo "STATUS=failed (built without CUDA);$cuda"
  else
    echo "${cuda:-CUDA ?}, arch ${arch:-?}${fell}, $(nproc) jobs"
  fi
}

gtest_counts() {  # LOG XML -> "P passed, F failed, S skipped" (+ first failed names)
  python3 - "$1" "$2" <<'PY'
import os, re, sys
log, xml = sys.argv[1], sys.argv[2]
if os.path.exists(xml):
    import xml.etree.ElementTree as ET
    try:
        cases = [c for c in ET.parse(xml).getroot().iter("testcase") if c.get("status", "run") == "run"]
        failed = [c.get("classname", "") + "." + c.get("name", "") for c in cases
                  if c.find("failure") is not None or c.find("error") is not None]
        skipped = [c for c in cases if c.get("result") == "skipped" or c.find("skipped") is not None]
        passed = len(cases) - len(failed) - len(skipped)
        extra = (" [" + ", ".join(failed[:4]) + (" ..." if len(failed) > 4 else "") + "]") if failed else ""
        print(f"{passed} passed, {len(failed)} failed, {len(skipped)} skipped{extra}")
        sys.exit(0)
    except Exception:
        pass
text = open(log, errors="replace").read()  # no XML (crash or timeout): count gtest's lines
ok = len(re.findall(r"^\[       OK \]", text, re.M))
bad = sorted(set(re.findall(r"^\[  FAILED  \] (\S+\.\S+)", text, re.M)))
skip = len(re.findall(r"^\[  SKIPPED \] \S+\.\S+", text, re.M))
print(f"{ok} passed, {len(bad)} failed, {skip} skipped (from the log, no XML)"
      + (" [" + ", ".join(bad[:4]) + "]" if bad else ""))
PY
}

key_cuda_tests() {
  local counts
  counts=$(gtest_counts "$1" "$log_dir/cuda-tests.xml")
  if [[ "$2" == 0 && "$counts" == "0 passed, 0 failed, 0 skipped"* ]]; then
    echo "STATUS=failed (no test ran);filter '$GC_TEST_FILTER': $counts"
  elif [[ "$2" == 0 && "$counts" =~ ^0\ passed.*\ ([1-9][0-9]*)\ skipped ]]; then
    echo "STATUS=all skipped;$counts (no usable GPU?)"
  else
    echo "$counts"
  fi
}

key_sanitizer() {
  local errors ran
  if grep -q -i 'device not supported\|unable to find injection library\|Target application terminated before first instrumented API call' "$1"; then
    echo "STATUS=unsupported;compute-sanitizer cannot instrument here (see sanitizer.log)"; return
  fi
  errors=$(grep -o 'ERROR SUMMARY: [0-9]* error' "$1" | tail -1 | awk '{print $3}' || true)
  ran=$(gtest_counts "$1" "$log_dir/sanitizer-tests.xml")
  if [[ -z "$errors" ]]; then  # cut short: count the reports printed so far
    errors="$(grep -c -E '^========= +(Invalid|Program hit|Uninitialized|Leaked|Error|Race)' "$1" || true) errors so far"
  else
    errors="$errors errors"
  fi
  if [[ "$2" == 99 ]]; then
    echo "STATUS=memory errors;$errors; tests: $ran"
  else
    echo "$errors; tests: $ran; filter '$GC_SANITIZER_FILTER'"
  fi
}

key_bench() {
  local n
  n=$(grep -c -E '^ *(lenet|preresnet)' "$log_dir/bench-output.txt" 2>/dev/null || true)
  echo "${n:-0} model rows (the table above)"
}

study_line() { grep -m1 -o 'fmnist-study (quick): [0-9.]* s on [a-z0-9:]*' "$1" | sed 's/fmnist-study (quick): //' || true; }

study_error() { grep -m1 -E 'kdlab: error|terminate|what\(\)' "$1" | cut -c1-160 || true; }

key_quick_study() {
  local l; l=$(study_line "$1")
  if [[ -n "$l" ]]; then echo "$l; run dir: quick-study/"; else echo "no result line: $(study_error "$1")"; fi
}

key_quick_study_cpu() {
  local cpu cuda ratio
  cpu=$(study_line "$1"); cuda=$(study_line "$log_dir/quick-study.log" 2>/dev/null || true)
  ratio=$(awk -v a="${cpu%% *}" -v b="${cuda%% *}" 'BEGIN { if (a > 0 && b > 0) printf "GPU %.2fx faster", a / b }')
  [[ -n "$cpu" ]] || { echo "no result line: $(study_error "$1")"; return; }
  echo "$cpu${cuda:+ vs $cuda}${ratio:+ ($ratio)}"
}

# ---- the run ----

# Nothing stale may be read as this run's result.
rm -f "$log_dir"/*.log "$log_dir"/{summary.md,cuda-tests.xml,sanitizer-tests.xml,bench-output.txt}
echo "[gpu-check] repo $repo, logs $log_dir, build $build_dir, budget ${budget}s"
run_stage env
run_stage build
built_why=""
case "${status_of[build]}" in
  ok) ;;
  skipped*) [[ -x "$build_dir/kdlab_tests" ]] || built_why="no ${build_dir#"$repo"/}/kdlab_tests" ;;
  *) built_why="build ${status_of[build]%% *}" ;;
esac
run_stage cuda-tests "$built_why"
run_stage bench "$built_why"
study_why=$built_why
[[ -n "$study_why" || -f "$fmnist_dir/train-images-idx3-ubyte.gz" ]] || study_why="no Fashion-MNIST in $fmnist_dir"
run_stage quick-study "$study_why"
sanitizer_why=$built_why
[[ -n "$sanitizer_why" || -n "$(find_tool compute-sanitizer)" ]] || sanitizer_why="compute-sanitizer not found"
run_stage sanitizer "$sanitizer_why"
run_stage quick-study-cpu "$study_why"  # also after a failed CUDA study: does the CPU one pass?

# ---- summary: bench output first, the table LAST ----

total=$(awk -v ms=$(( $(now_ms) - t_start )) 'BEGIN { printf "%.0f", ms / 1000 }')
n_bad=0 n_ok=0 n_skip=0
for s in "${statuses[@]}"; do
  case "$s" in ok) n_ok=$((n_ok + 1)) ;; skipped*) n_skip=$((n_skip + 1)) ;; *) n_bad=$((n_bad + 1)) ;; esac
done
{
  echo "# gpu-check summary"
  echo
  echo "$(date -u +%FT%TZ), $(hostname), logs in $log_dir"
  if [[ -s "$log_dir/bench-output.txt" ]]; then
    echo
    echo "## kdlab bench --device cuda"
    echo
    echo '```'
    grep -v '^[[:space:]]*$' "$log_dir/bench-output.txt" | tail -n 30 | cut -c1-200
    echo '```'
  fi
  echo
  echo "## stages"
  echo
  echo "| stage | status | seconds | key numbers |"
  echo "| --- | --- | ---: | --- |"
  for i in "${!names[@]}"; do
    echo "| ${names[$i]} | ${statuses[$i]} | ${seconds[$i]} | ${keys[$i]//|//} |"
  done
  echo
  echo "gpu-check: $n_ok ok, $n_bad failed, $n_skip skipped; ${total} s of a ${budget} s budget"
} >"$log_dir/summary.md"
if [[ -n "${GPU_CHECK_TARBALL:-}" ]]; then
  tar -czf "$GPU_CHECK_TARBALL" -C "$(dirname "$log_dir")" "$(basename "$log_dir")" 2>/dev/null ||
    echo "[gpu-check] could not write $GPU_CHECK_TARBALL"
fi
echo
cat "$log_dir/summary.md"
[[ $n_bad -eq 0 ]]
