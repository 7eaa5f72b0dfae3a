#!/usr/bin/env bash
# One-shot check of the CUDA backend on a GPU machine: environment, build, test discovery, the
# *Cuda* tests, compute-sanitizer memcheck (kernel suites) and racecheck (convolution and
# batchnorm suites), a quick GPU study, the GPU benchmark, PreResNet-56's GPU step again with
# two-launch batch norm (KDLAB_BN_CLUSTERS=0: the A/B of the cluster kernels) and with its 1x1
# convolutions on cuBLAS (KDLAB_CONV_1X1=cublas: the A/B of the implicit GEMM for them) and with
# cuDNN's residual add as a second launch (KDLAB_CUDNN_RESIDUAL=separate: the A/B of the residual
# folded into cuDNN's convolution) and with our convolutions on 4x4 micro-tiles only
# (KDLAB_CONV_MICRO=4: the A/B of the 8x8 ones), and the same quick study on the CPU.
# Each stage runs under `timeout` with its own limit, logs to LOG_DIR/<stage>.log and never stops
# the others; every limit is also cut to what is left of the total budget (GPU_CHECK_BUDGET_S,
# 420 s), so the whole run ends in time on a lent machine. The limits (stage_limit below) sum to
# 420 s. The summary table is always printed LAST on stdout and written to LOG_DIR/summary.md.
# No network. The studies need Fashion-MNIST in $KDLAB_FMNIST_DIR, the carried .gpu-deps or
# /usr/share/datasets/fashion-mnist (else they are skipped).
#
#   tools/gpu-check.sh [LOG_DIR]            the real check (default gpu-check-logs/; exit 1 if a
#                                           stage failed)
#   tools/gpu-check.sh --dry-run [LOG_DIR]  no GPU needed: environment, build, test discovery
#                                           (the *Cuda* tests it would run, per suite; every
#                                           filter must match a test; the tests must start and
#                                           skip cleanly); the GPU stages are listed, not run;
#                                           exit 1 if one of the three failed (their limits
#                                           suit a 2-core machine: budget 1200 s)
# Environment (all optional):
#   GPU_CHECK_BUILD_DIR          build folder (default build-gpu, relative to the repository); an
#                                existing CMake build folder (e.g. `build` after `make test`) is
#                                reused as it is configured, only kdlab and kdlab_tests are built
#   GPU_CHECK_SKIP_BUILD=1       use what is in the build folder; GPU_CHECK_SKIP="bench ..." skips
#                                stages by name (env build discover cuda-tests memcheck racecheck
#                                quick-study bench bench-bn-two-launch bench-conv-1x1-cublas
#                                bench-cudnn-residual-separate bench-conv-micro-4
#                                quick-study-cpu)
#   GPU_CHECK_BUDGET_S           total seconds for all stages (default 420)
#   GPU_CHECK_TEST_FILTER        gtest filter of the test stage (default '*Cuda*')
#   GPU_CHECK_MEMCHECK_FILTER    gtest filter under memcheck (default: the kernel suites,
#                                '*Cuda*-CudaTraining.*:*Thousand*', not the whole-model tests)
#   GPU_CHECK_RACECHECK_FILTER   gtest filter under racecheck (default 'CudaConv*:CudaNorm*')
#   GPU_CHECK_CMAKE_ARGS         extra configure arguments
#   GPU_CHECK_BENCH_ARGS         bench flags (default '--steps 100 --warmup 10 --cudnn-find')
#                                ('... --tf32' times the tensor-core paths against PyTorch
#                                with TF32 on)
#   GPU_CHECK_COMPILE_TIMEOUT    wall seconds per model for PyTorch's torch.compile child in the
#                                bench, after which its process group is killed (default 15:
#                                a cold compile needs more, so its rows say "unavailable" unless
#                                this and GPU_CHECK_BENCH_TIMEOUT are raised)
#   GPU_CHECK_TARBALL            if set, LOG_DIR is also packed into this .tar.gz at the end
#   GPU_CHECK_<STAGE>_TIMEOUT    per-stage limit, e.g. GPU_CHECK_BUILD_TIMEOUT=240 (upper case,
#                                '-' as '_'); the defaults are in `stage_limit` below
# Carried dependencies: on a machine without kdlab's Debian build libraries, first run
# tools/gpu-deps.sh where apt works and copy `.gpu-deps` with the repository; the script unpacks
# the packages into /tmp/kdlab-deps and uses the carried Fashion-MNIST. cuDNN comes from the CUDA
# toolkit when it has it, else from PyTorch's nvidia-cudnn wheel. tools/gpu-replica.sh builds a
# replica of the lent machine's layout to run the dry run in.
set -euo pipefail

# The GPU stages test the CUDA backend, never the grid emulator a developer may have selected.
unset KDLAB_GPU_BACKEND
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
self="$repo/tools/gpu-check.sh"

# ---- helpers shared by the stages and the driver ----

find_tool() {  # PATH first, then the CUDA toolkit's folders and NVIDIA's tool folders
  command -v "$1" 2>/dev/null && return 0
  local d
  for d in /usr/local/cuda/bin /usr/local/cuda/compute-sanitizer /opt/nvidia/*/ /opt/nvidia/*/compute-sanitizer; do
    [[ -x "$d/$1" && -f "$d/$1" ]] && { echo "${d%/}/$1"; return 0; }
  done
  return 0
}

cache_get() {  # VAR from the build folder's CMakeCache.txt
  sed -n "s/^$1:[A-Z]*=//p" "$GC_BUILD_DIR/CMakeCache.txt" 2>/dev/null | head -1
}

cudnn_version_of() {  # INCLUDE_DIR -> 9.x.y from cudnn_version.h (or cudnn.h before cuDNN 8)
  local h
  for h in "$1/cudnn_version.h" "$1/cudnn.h"; do
    [[ -f "$h" ]] || continue
    awk '/^#define CUDNN_MAJOR /{a=$3} /^#define CUDNN_MINOR /{b=$3} /^#define CUDNN_PATCHLEVEL /{c=$3}
         END { if (a != "") print a "." b "." c }' "$h"
    return 0
  done
}

compiler_version() {  # PATH -> "GNU 14.2.0" style, from the compiler itself
  "$1" --version 2>/dev/null | head -1 | sed 's/ ([^)]*)//' || true
}

# What the configured build uses: C++ compiler, nvcc's host compiler, cuDNN (headers, library,
# version, where it came from). One @@ line each, read back by the summary.
report_build_toolchain() {
  local cxx cuda_host cuda_file cudnn_inc cudnn_lib cudnn_v
  cxx=$(cache_get CMAKE_CXX_COMPILER)
  [[ -n "$cxx" ]] && echo "@@cxx $(readlink -f "$cxx" || echo "$cxx") ($(compiler_version "$cxx"))"
  cuda_file=$(ls "$GC_BUILD_DIR"/CMakeFiles/*/CMakeCUDACompiler.cmake 2>/dev/null | tail -1 || true)
  if [[ -n "$cuda_file" ]]; then
    # nvcc's host compiler: the one configured, else the one CMake saw nvcc use.
    cuda_host=$(sed -n 's/^set(CMAKE_CUDA_HOST_COMPILER "\(.\+\)")/\1/p' "$cuda_file")
    [[ -n "$cuda_host" ]] || cuda_host=$(sed -n 's/^set(CMAKE_CUDA_HOST_LINK_LAUNCHER "\(.*\)")/\1/p' "$cuda_file")
    echo "@@cuda-host ${cuda_host:-?} -> $(readlink -f "$cuda_host" 2>/dev/null || echo "?") ($(compiler_version "$cuda_host"))"
    echo "@@nvcc $(sed -n 's/^set(CMAKE_CUDA_COMPILER "\(.*\)")/\1/p' "$cuda_file") ($(sed -n 's/^set(CMAKE_CUDA_COMPILER_VERSION "\(.*\)")/\1/p' "$cuda_file"))"
  fi
  cudnn_inc=$(cache_get CUDNN_INCLUDE); cudnn_lib=$(cache_get CUDNN_LIB)
  if [[ -n "$cudnn_inc" && "$cudnn_inc" != *NOTFOUND && -n "$cudnn_lib" && "$cudnn_lib" != *NOTFOUND ]]; then
    cudnn_v=$(cudnn_version_of "$cudnn_inc")
    echo "@@cudnn ${cudnn_v:-?} headers $cudnn_inc, library $(readlink -f "$cudnn_lib") ($(cudnn_source "$cudnn_inc"))"
  else
    echo "@@cudnn none (CUDNN_INCLUDE=${cudnn_inc:-unset}, CUDNN_LIB=${cudnn_lib:-unset})"
  fi
}

cudnn_source() {  # INCLUDE_DIR -> where that cuDNN comes from
  local d=$1 info
  info=$(ls -d "$d"/../../../nvidia_cudnn*.dist-info 2>/dev/null | head -1 || true)
  if [[ -n "$info" ]]; then
    info=${info##*/}; echo "PyPI wheel ${info%.dist-info}"
  elif [[ "$(readlink -f "$d")" == "$(readlink -f /usr/local/cuda/include 2>/dev/null)" ]]; then
    echo "CUDA toolkit"
  else
    echo "system"
  fi
}

# ---- stage bodies: run as `gpu-check.sh --stage NAME` under timeout, with the GC_* exports ----

body_env() {
  local ok=0 smi nvcc
  smi=$(find_tool nvidia-smi)
  echo "## nvidia-smi -L"
  if [[ -n "$smi" ]] && "$smi" -L; then
    "$smi" --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv || true
  elif [[ "$GC_DRY_RUN" == 1 ]]; then
    echo "@@note no GPU visible (dry run: expected)"
  else
    echo "@@fail nvidia-smi missing or failed (no GPU visible)"; ok=1
  fi
  echo "## nvcc --version"
  nvcc=$(find_tool nvcc)
  if [[ -n "$nvcc" ]]; then "$nvcc" --version || ok=1; else echo "@@fail nvcc not found"; ok=1; fi
  echo "## cmake / ninja / compilers / compute-sanitizer / cores"
  echo "cmake: $(command -v cmake || echo none) $(cmake --version 2>/dev/null | head -1)"
  echo "ninja: $(command -v ninja || echo none)"
  local cxx
  cxx=$(command -v c++ || command -v g++ || true)
  echo "@@env-cxx ${cxx:-none} -> $(readlink -f "${cxx:-/nonexistent}" 2>/dev/null) ($(compiler_version "${cxx:-false}"))"
  echo "glibc: $(ldd --version 2>/dev/null | head -1)"
  echo "compute-sanitizer: $(find_tool compute-sanitizer)"
  echo "cores: $(nproc)"
  echo "## python3 torch (kdlab bench tries python3, then /usr/bin/python3)"
  local py
  for py in python3 /usr/bin/python3; do
    if "$py" -c 'import torch' 2>/dev/null; then
      "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
          "available", torch.cuda.is_available())' 2>&1 | tail -1
      echo "($(command -v "$py"))"; break
    fi
    echo "$(command -v "$py" || echo "$py"): no torch"
  done
  echo "## cuDNN"
  if [[ -n "${GC_CUDNN_INCLUDE:-}" ]]; then
    echo "@@env-cudnn $(cudnn_version_of "$GC_CUDNN_INCLUDE") headers $GC_CUDNN_INCLUDE, library $GC_CUDNN_LIB ($(cudnn_source "$GC_CUDNN_INCLUDE"))"
  else
    echo "@@env-cudnn none found (the build will have no cuDNN paths)"
  fi
  # Each header is preprocessed and each library linked the way the build will, with the carried
  # prefix in CPATH/LIBRARY_PATH: a header that includes a missing one (cblas.h ->
  # openblas_config.h) fails here, not half-way through the build.
  echo "## build dependencies (preprocessed / linked with ${cxx:-no compiler})"
  local missing=() h l
  for h in cblas.h gtest/gtest.h CLI/CLI.hpp nlohmann/json.hpp zlib.h; do
    if [[ -n "$cxx" ]] && printf '#include <%s>\n' "$h" |
         "$cxx" -std=c++17 -E -x c++ - -I/usr/include/openblas -o /dev/null 2>"$GC_LOG_DIR/.env-err"; then
      echo "$h: ok"
    else
      echo "$h: FAILED: $(grep -m1 -i 'error' "$GC_LOG_DIR/.env-err" | cut -c1-160)"; missing+=("$h")
    fi
  done
  for l in openblas stb z gtest; do
    if [[ -n "$cxx" ]] && echo 'int main() { return 0; }' |
         "$cxx" -x c++ - -o "$GC_LOG_DIR/.env-link" "-l$l" 2>"$GC_LOG_DIR/.env-err"; then
      echo "lib$l: ok"
    else
      echo "lib$l: FAILED: $(grep -m1 -i 'error\|cannot find' "$GC_LOG_DIR/.env-err" | cut -c1-160)"; missing+=("lib$l")
    fi
  done
  rm -f "$GC_LOG_DIR/.env-err" "$GC_LOG_DIR/.env-link"
  if [[ ${#missing[@]} -gt 0 ]]; then echo "@@missing ${missing[*]}"; ok=1; fi
  return $ok
}

body_build() {
  local version arch=90 gen=() fresh=0 extra=()
  [[ -f "$GC_BUILD_DIR/CMakeCache.txt" ]] || fresh=1
  version=$(cmake --version | head -1 | awk '{print $3}')
  # "native" (build for the GPUs present) exists from CMake 3.24 on. A dry run has no GPU: it
  # builds for the H200's sm_90, as the real run there would.
  if [[ "$GC_DRY_RUN" != 1 && "$(printf '%s\n' 3.24 "$version" | sort -V | head -1)" == 3.24 ]]; then
    arch=native
  fi
  if ((fresh)); then
    command -v ninja >/dev/null && gen=(-G Ninja)
    extra=(-DKDLAB_EMULATED_GPU_TESTS=OFF)  # a reused folder keeps its own setting
  fi
  # CMake finds the toolkit's cuDNN by itself; a wheel's must be named.
  [[ "$GC_CUDNN_FROM" == wheel ]] && extra+=("-DCUDNN_INCLUDE=$GC_CUDNN_INCLUDE" "-DCUDNN_LIB=$GC_CUDNN_LIB")
  configure() {
    # shellcheck disable=SC2086  # GPU_CHECK_CMAKE_ARGS is a list of words on purpose
    cmake -S "$repo" -B "$GC_BUILD_DIR" ${gen[@]+"${gen[@]}"} -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_CUDA_ARCHITECTURES="$1" ${extra[@]+"${extra[@]}"} ${GPU_CHECK_CMAKE_ARGS:-}
  }
  if ! configure "$arch"; then
    [[ "$arch" == native ]] || return 1
    echo "@@note configure with CUDA architectures 'native' failed; retrying with 90"
    ((fresh)) && rm -rf "$GC_BUILD_DIR/CMakeCache.txt" "$GC_BUILD_DIR/CMakeFiles"
    arch=90
    configure 90 || return 1
  fi
  echo "@@arch $arch"
  report_build_toolchain
  # The GPU backend is a module the binaries open at run time (kernels/backend_loader.cpp): build
  # it by name, as nothing links it.
  local targets=(--target kdlab kdlab_tests kdlab_cuda)
  if ! cmake --build "$GC_BUILD_DIR" -j "$(nproc)" "${targets[@]}"; then
    # Another host compiler may warn where ours does not: -Werror must not cost the GPU session
    # its test results. Rebuild without it and say so; the warnings are in this log.
    echo "@@note build failed; retrying with -DKDLAB_CUDA_WERROR=OFF (see the warnings above)"
    cmake "$GC_BUILD_DIR" -DKDLAB_CUDA_WERROR=OFF || return 1
    cmake --build "$GC_BUILD_DIR" -j "$(nproc)" "${targets[@]}" || return 1
    echo "@@werror off"
  fi
  # What the binary will load at run time (LD_LIBRARY_PATH included): the cuDNN that counts.
  echo "@@cudnn-runtime $(ldd "$GC_BUILD_DIR/libkdlab_cuda.so" 2>/dev/null | awk '/libcudnn\.so/ { print $3; exit }')"
}

# gtest_list FILTER -> "Suite N" lines of the tests kdlab_tests would run under that filter
gtest_list() {
  "$GC_BUILD_DIR/kdlab_tests" --gtest_list_tests --gtest_filter="$1" |
    awk '/^[^ ]/ { suite = $1; sub(/\.$/, "", suite); next } /^  / { n[suite]++ }
         END { for (s in n) print s, n[s] }' | sort
}

body_discover() {
  local bin=$GC_BUILD_DIR/kdlab_tests ok=0 name filter listing total
  local backend=$GC_BUILD_DIR/libkdlab_cuda.so
  echo "## the test binary and the GPU backend it opens load (ldd)"
  [[ -f "$backend" ]] || { echo "@@fail $backend missing: the *Cuda* tests would all skip"; return 1; }
  if ldd "$bin" "$backend" | grep 'not found'; then echo "@@fail kdlab_tests / libkdlab_cuda.so: libraries not found (above)"; return 1; fi
  ldd "$backend" | grep -E 'cudnn|cublas|cudart' || true
  # What kdlab does on first GPU use: open the module (every library it needs, its constructors).
  if python3 -c 'import ctypes, sys; ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_LOCAL)' "$backend"; then
    echo "dlopen $backend: ok"
  else
    echo "@@fail dlopen $backend failed (above): kdlab could not open its GPU backend"; return 1
  fi
  ldd "$bin" | grep -E 'openblas|gfortran' || true
  echo "## tests per filter"
  for name in cuda-tests memcheck racecheck; do
    case $name in
      cuda-tests) filter=$GC_TEST_FILTER ;; memcheck) filter=$GC_MEMCHECK_FILTER ;;
      racecheck) filter=$GC_RACECHECK_FILTER ;;
    esac
    listing=$(gtest_list "$filter") || { echo "@@fail $name: kdlab_tests --gtest_list_tests failed"; ok=1; continue; }
    total=$(awk '{ t += $2 } END { print t + 0 }' <<<"$listing")
    echo "$name ('$filter'): $total tests"
    sed 's/^/    /' <<<"$listing"
    echo "@@filter $name $total $(awk '{ printf "%s%s(%s)", sep, $1, $2; sep = " " }' <<<"$listing")"
    ((total > 0)) || { echo "@@fail $name: filter '$filter' matches no test"; ok=1; }
  done
  # *Cuda* suites that the memcheck filter leaves out, so a new kernel suite left out shows.
  local all mem out
  all=$(gtest_list "$GC_TEST_FILTER"); mem=$(gtest_list "$GC_MEMCHECK_FILTER")
  out=$(join -a1 <(echo "$all") <(echo "$mem") | awk '{ d = $2 - ($3 == "" ? 0 : $3) }
        d > 0 { printf "%s%s(%d)", sep, $1, d; sep = " " }')
  echo "@@not-memcheck ${out:-none}"
  if [[ "$GC_DRY_RUN" == 1 ]]; then
    # Without a GPU every *Cuda* test must skip, none fail: the binary, its libraries and the
    # tests' GPU guards work on this machine.
    echo "## $GC_TEST_FILTER without a GPU (each must skip)"
    "$bin" --gtest_filter="$GC_TEST_FILTER" --gtest_output="xml:$GC_LOG_DIR/discover-tests.xml" || ok=1
    echo "## the rest of the check"
    python3 -m py_compile "$repo/tools/torch_gpu_bench.py" "$repo/tools/models_torch.py" &&
      echo "tools/torch_gpu_bench.py compiles" || { echo "@@fail tools/torch_gpu_bench.py does not compile"; ok=1; }
    "$GC_BUILD_DIR/kdlab" bench --help >/dev/null && echo "kdlab bench --help: ok" ||
      { echo "@@fail kdlab bench --help failed"; ok=1; }
  fi
  return $ok
}

body_cuda_tests() {
  "$GC_BUILD_DIR/kdlab_tests" --gtest_filter="$GC_TEST_FILTER" \
    --gtest_output="xml:$GC_LOG_DIR/cuda-tests.xml"
}

sanitize() {  # TOOL FILTER XML [tool options]
  local tool=$1 filter=$2 xml=$3; shift 3
  "$(find_tool compute-sanitizer)" --tool "$tool" --error-exitcode 99 --print-limit 200 "$@" \
    "$GC_BUILD_DIR/kdlab_tests" --gtest_filter="$filter" --gtest_output="xml:$xml"
}

body_memcheck() { sanitize memcheck "$GC_MEMCHECK_FILTER" "$GC_LOG_DIR/memcheck-tests.xml"; }

body_racecheck() { sanitize racecheck "$GC_RACECHECK_FILTER" "$GC_LOG_DIR/racecheck-tests.xml"; }

body_bench() {
  # kdlab bench runs tools/torch_gpu_bench.py with torch.compile for each model in a child whose
  # process group is killed after GPU_CHECK_COMPILE_TIMEOUT s (the row then says
  # "unavailable: ..."): a cold compile takes tens of seconds, a hung one forever.
  export TORCH_GPU_BENCH_COMPILE_TIMEOUT=${GPU_CHECK_COMPILE_TIMEOUT:-15}
  # stdout (a "[model] ..." line per measurement as it is made, then the tables) goes to its own
  # file for the summary and to the console at once (fd 3), so rows measured before a time limit
  # cuts the stage are never lost; stderr stays in the stage log.
  # shellcheck disable=SC2086
  "$GC_BUILD_DIR/kdlab" bench --device cuda ${GPU_CHECK_BENCH_ARGS---steps 100 --warmup 10 --cudnn-find} |
    tee "$GC_LOG_DIR/bench-output.txt" | while IFS= read -r line; do
      echo "$line"
      if [[ "$line" == "["* ]]; then echo "[gpu-check]   bench $line" >&3; fi
    done
}

# The cluster batch norm's A/B: PreResNet-56's step with the two-launch kernels, to set beside
# the bench stage's rows (same flags, ours only).
body_bench_bn_two_launch() {
  # shellcheck disable=SC2086
  KDLAB_BN_CLUSTERS=0 "$GC_BUILD_DIR/kdlab" bench --device cuda --no-torch --model preresnet56 \
    ${GPU_CHECK_BENCH_ARGS---steps 100 --warmup 10 --cudnn-find}
}

# The 1x1 convolutions' A/B: PreResNet-56's step with them on cuBLAS (forward and backward data;
# the residual a second launch, the backward passes separate), beside the bench stage's rows.
body_bench_conv_1x1_cublas() {
  # shellcheck disable=SC2086
  KDLAB_CONV_1X1=cublas "$GC_BUILD_DIR/kdlab" bench --device cuda --no-torch --model preresnet56 \
    ${GPU_CHECK_BENCH_ARGS---steps 100 --warmup 10 --cudnn-find}
}

# The cuDNN residual fold's A/B: PreResNet-56's step with cuDNN's residual convolutions as the
# convolution and then our add (two launches), beside the bench stage's cudnn rows.
body_bench_cudnn_residual_separate() {
  # shellcheck disable=SC2086
  KDLAB_CUDNN_RESIDUAL=separate "$GC_BUILD_DIR/kdlab" bench --device cuda --no-torch \
    --model preresnet56 ${GPU_CHECK_BENCH_ARGS---steps 100 --warmup 10 --cudnn-find}
}

# The 8x8 micro-tiles' A/B: PreResNet-56's native step with every convolution on 4x4 micro-tiles,
# beside the bench stage's native rows.
body_bench_conv_micro_4() {
  # shellcheck disable=SC2086
  KDLAB_CONV_MICRO=4 "$GC_BUILD_DIR/kdlab" bench --device cuda --no-torch --model preresnet56 \
    ${GPU_CHECK_BENCH_ARGS---steps 100 --warmup 10 --cudnn-find}
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

dry_run=0
case "${1:-}" in
  -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$self"; exit 0 ;;
  --dry-run) dry_run=1; shift ;;
esac
log_dir=${1:-gpu-check-logs}
mkdir -p "$log_dir"
log_dir=$(cd "$log_dir" && pwd)
cd "$repo"
build_dir=${GPU_CHECK_BUILD_DIR:-build-gpu}
[[ "$build_dir" == /* ]] || build_dir="$repo/$build_dir"

# Build libraries and data carried from a Debian machine (tools/gpu-deps.sh): unpack them into a
# private prefix (never into /), recreate the links Debian's alternatives would make, and point
# CMake, the compiler and the loader there.
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
  export CPATH="$prefix/usr/include:$prefix/usr/include/x86_64-linux-gnu:$prefix/usr/include/stb${CPATH:+:$CPATH}"
  export LIBRARY_PATH="$multiarch:$multiarch/openblas-pthread${LIBRARY_PATH:+:$LIBRARY_PATH}"
  export LD_LIBRARY_PATH="$multiarch:$multiarch/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "[gpu-check] build libraries unpacked from $carried/debs into $prefix"
fi
if compgen -G "$carried/fashion-mnist/*.gz" >/dev/null && [[ -z "${KDLAB_FMNIST_DIR:-}" ]]; then
  export KDLAB_FMNIST_DIR="$carried/fashion-mnist"
fi
# cuDNN: the toolkit's when it has both the header and the library (CMake finds it there), else
# PyTorch's nvidia-cudnn wheel (python3 is the PyTorch one on the lent machine), passed to CMake
# and the loader. Which one the build used is printed by the build stage and the summary.
GC_CUDNN_INCLUDE="" GC_CUDNN_LIB="" GC_CUDNN_FROM=""
if [[ -f /usr/local/cuda/include/cudnn.h ]] && compgen -G "/usr/local/cuda/lib64/libcudnn.so*" >/dev/null; then
  GC_CUDNN_INCLUDE=/usr/local/cuda/include GC_CUDNN_FROM=toolkit
  GC_CUDNN_LIB=$(ls /usr/local/cuda/lib64/libcudnn.so* | head -1)
  cudnn_from="the CUDA toolkit"
else
  for py in python3 /opt/torch/.venv/bin/python3 /usr/bin/python3; do
    cudnn_root=$("$py" -c 'import os, nvidia.cudnn as c; print(os.path.dirname(c.__file__) if c.__file__ else list(c.__path__)[0])' 2>/dev/null || true)
    cudnn_lib=$(ls "$cudnn_root"/lib/libcudnn.so* 2>/dev/null | head -1 || true)
    if [[ -n "$cudnn_root" && -f "$cudnn_root/include/cudnn.h" && -n "$cudnn_lib" ]]; then
      GC_CUDNN_INCLUDE=$cudnn_root/include GC_CUDNN_LIB=$cudnn_lib GC_CUDNN_FROM=wheel
      export LD_LIBRARY_PATH="$cudnn_root/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      cudnn_from="the nvidia-cudnn wheel of $(command -v "$py")"
      break
    fi
  done
fi
if [[ -n "$GC_CUDNN_INCLUDE" ]]; then
  echo "[gpu-check] cuDNN $(cudnn_version_of "$GC_CUDNN_INCLUDE") from $cudnn_from: $GC_CUDNN_INCLUDE, $GC_CUDNN_LIB"
else
  echo "[gpu-check] no cuDNN found (toolkit or wheel): the build will lack the cuDNN paths"
fi
export GC_CUDNN_INCLUDE GC_CUDNN_LIB GC_CUDNN_FROM
export GC_LOG_DIR="$log_dir" GC_BUILD_DIR="$build_dir" GC_DRY_RUN=$dry_run
export GC_TEST_FILTER=${GPU_CHECK_TEST_FILTER:-'*Cuda*'}
export GC_MEMCHECK_FILTER=${GPU_CHECK_MEMCHECK_FILTER:-'*Cuda*-CudaTraining.*:*Thousand*'}
export GC_RACECHECK_FILTER=${GPU_CHECK_RACECHECK_FILTER:-'CudaConv*:CudaNorm*'}
budget=${GPU_CHECK_BUDGET_S:-420} real_budget=${GPU_CHECK_BUDGET_S:-420}
# A dry run runs on whatever machine it is given (CI's has 2 cores, the lent one 16): its three
# stages get limits for a slow machine, not the real run's.
((dry_run)) && budget=${GPU_CHECK_BUDGET_S:-1200}
skip_list=" ${GPU_CHECK_SKIP:-} "
[[ "${GPU_CHECK_SKIP_BUILD:-0}" == 1 ]] && skip_list+=" build "
fmnist_dir=${KDLAB_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
all_stages=(env build discover cuda-tests memcheck racecheck quick-study bench bench-bn-two-launch
            bench-conv-1x1-cublas bench-cudnn-residual-separate bench-conv-micro-4 quick-study-cpu)

now_ms() { echo $(($(date +%s%N) / 1000000)); }
t_start=$(now_ms)
names=() statuses=() seconds=() limits=() keys=()
declare -A status_of=()

# Default seconds per stage, sized for the lent H200 machine (16 cores) and summing to 420 s of
# the 420 s budget; GPU_CHECK_<STAGE>_TIMEOUT overrides one. Estimates, not yet measured there:
# a fresh build is about 400 s of CPU time (about 30 s on 16 cores, plus configure and links);
# the CPU sides of the whole-model tests take seconds on 16 cores; the bench with --steps 100 is
# about 20 s of kdlab plus 4 PyTorch processes (about 6 s each to import torch), eager runs and
# two compile children of 15 s. The stage logs (gtest's per-test times, the bench's per-model
# "done" lines) are what to retune them from.
stage_limit() {  # STAGE [real]: the real run's limit even in a dry run
  local var def
  var="GPU_CHECK_$(echo "${1//-/_}" | tr '[:lower:]' '[:upper:]')_TIMEOUT"
  if ((dry_run)) && [[ "${2:-}" != real ]]; then
    case "$1" in env) def=60 ;; build) def=1000 ;; discover) def=120 ;; esac
    [[ -n "${def:-}" ]] && { echo "${!var:-$def}"; return; }
  fi
  case "$1" in
    env) def=20 ;; build) def=90 ;; discover) def=15 ;; cuda-tests) def=60 ;;
    memcheck) def=40 ;; racecheck) def=25 ;; quick-study) def=15 ;; bench) def=80 ;;
    bench-bn-two-launch) def=15 ;; bench-conv-1x1-cublas) def=15 ;;
    bench-cudnn-residual-separate) def=15 ;; bench-conv-micro-4) def=15 ;;
    quick-study-cpu) def=15 ;;
    *) def=30 ;;
  esac
  echo "${!var:-$def}"
}

record() {  # name status seconds limit key
  names+=("$1"); statuses+=("$2"); seconds+=("$3"); limits+=("$4"); keys+=("$5"); status_of[$1]=$2
  printf '[gpu-check] %-16s %-28s %6ss  %s\n' "$1" "$2" "$3" "$5"
}

log_tail() {  # last lines of a failing stage's log, shortened, so they show in a short console
  echo "[gpu-check] --- last lines of $1 ---"
  grep -v '^@@' "$1" | tail -n "${2:-15}" | cut -c1-220 || true
  echo "[gpu-check] ---"
}

# Ends every process a stage left behind, also those that left its process group (a
# torch.compile child leads its own): they all carry the stage's token in their environment.
reap_stage() {
  local token=$1 p pids=()
  for p in /proc/[0-9]*; do
    [[ "${p#/proc/}" == "$$" ]] && continue
    { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qx "GC_STAGE_TOKEN=$token" && pids+=("${p#/proc/}")
  done
  if ((${#pids[@]})); then
    kill -KILL "${pids[@]}" 2>/dev/null || true
    echo "# killed ${#pids[@]} leftover process(es) of this stage: ${pids[*]}" >>"$log_dir/${token##*-stage-}.log"
  fi
}

# run_stage NAME PRECONDITION-MESSAGE: empty message = run it, else record it skipped with that.
run_stage() {
  local name=$1 why=${2:-} log="$log_dir/$1.log" limit left t0 rc status secs
  limit=$(stage_limit "$name")
  if [[ "$skip_list" == *" $name "* ]]; then record "$name" "skipped (asked)" 0 "$limit" ""; return 0; fi
  if [[ -n "$why" ]]; then record "$name" "skipped ($why)" 0 "$limit" ""; return 0; fi
  left=$(( budget - ($(now_ms) - t_start) / 1000 - 10 ))  # 5 s for --kill-after, 5 for the rest
  (( left < limit )) && limit=$left
  if (( limit < 5 )); then record "$name" "skipped (time budget spent)" 0 "$limit" ""; return 0; fi
  echo "# stage $name, limit ${limit}s, started $(date -u +%FT%TZ) on $(hostname)" >"$log"
  echo "[gpu-check] $name: running (limit ${limit}s, log ${log#"$repo"/})"
  t0=$(now_ms)
  set +e
  # fd 3 is the console (a stage may echo progress there); stdout and stderr go to the log.
  GC_STAGE_TOKEN="gpu-check-$$-stage-$name" timeout --kill-after=5 "$limit" \
    bash "$self" --stage "$name" 3>&1 >>"$log" 2>&1
  rc=$?
  set -e
  reap_stage "gpu-check-$$-stage-$name"
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
  record "$name" "$status" "$secs" "$limit" "$key"
  [[ "$status" == ok ]] || log_tail "$log"
}

# ---- key numbers, read from the logs (also after a timeout) ----

at() { grep -m1 "^@@$1 " "$2" | cut -d' ' -f2- || true; }  # an @@ line's text

short_compiler() {  # "@@cxx /usr/bin/g++-14 (g++ 14.2.0)" text -> "g++ 14.2.0 (/usr/bin/g++-14)"
  awk '{ path = $1; $1 = ""; sub(/^ /, ""); gsub(/[()]/, ""); print $0 " (" path ")" }' <<<"$1"
}

key_env() {
  local gpu nvcc_rel torch_v missing fail cxx cudnn
  gpu=$(grep -m1 '^GPU 0:' "$1" | sed 's/^GPU 0: //; s/ (UUID.*//' || true)
  nvcc_rel=$(grep -m1 -o 'release [0-9.]*' "$1" | sed 's/release /nvcc /' || true)
  torch_v=$(grep -m1 '^torch ' "$1" | awk '{print "torch " $2 (($6 == "True") ? "" : " (no CUDA)")}' || true)
  missing=$(at missing "$1"); fail=$(grep '^@@fail' "$1" | sed 's/^@@fail //' | paste -sd';' - || true)
  cxx=$(at env-cxx "$1" | awk '{ print $NF }' | tr -d '()'); cxx=${cxx:+g++ $cxx}
  cudnn=$(at env-cudnn "$1" | awk '{ print $1 }')
  [[ "$(at env-cudnn "$1")" == *wheel* ]] && cudnn+=" (wheel)"
  [[ "$GC_DRY_RUN" == 1 && -z "$gpu" ]] && gpu="no GPU (dry run)"
  echo "${gpu:-no GPU}, ${nvcc_rel:-no nvcc}, ${cxx:-no c++}, cuDNN ${cudnn:-none}, ${torch_v:-no torch}${missing:+; cannot build: $missing}${fail:+; $fail}"
}

key_build() {
  local arch cuda err after fell="" tc
  arch=$(at arch "$1")
  grep -q '^@@note configure with CUDA architectures' "$1" && fell=" (native failed)"
  grep -q '^@@werror off' "$1" && fell+=" (WARNINGS: built only without -Werror)"
  cuda=$(grep -o 'kdlab: CUDA sources [A-Z]*, cuDNN [A-Z]*' "$1" | tail -1 | sed 's/kdlab: //' || true)
  tc="host $(short_compiler "$(at cuda-host "$1" | sed 's/ -> .* (/ (/')")"
  # Errors of the configure that counted, or of the compile: what follows the last configure.
  after=$(awk '/^@@note configure with CUDA/ { buf = ""; next } { buf = buf $0 "\n" } END { printf "%s", buf }' "$1")
  if [[ "$2" == 124 || "$2" == 137 ]]; then
    echo "${cuda:-CUDA ?}, arch ${arch:-?}${fell}; cut off at: $(grep -E '^\[ *[0-9]+(%|/[0-9]+)\]' "$1" | tail -1 | cut -c1-90)"
  elif [[ "$2" != 0 ]]; then
    err=$(printf '%s' "$after" | grep -m1 -E 'CMake Error|error:|\*\*\*' | sed 's/^[[:space:]]*//' | cut -c1-160 || true)
    [[ -n "$err" ]] || err=$(printf '%s' "$after" | grep -m1 'FAILED:' | cut -c1-160 || true)
    echo "${cuda:+$cuda; }first error: ${err:-see build.log}"
  elif [[ "$cuda" == *"CUDA sources OFF"* ]]; then
    echo "STATUS=failed (built without CUDA);$cuda"
  else
    echo "${cuda:-CUDA ?}, arch ${arch:-?}${fell}, $tc, cuDNN $(at cudnn "$1" | awk '{ print $1 }'), $(nproc) jobs"
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

key_discover() {
  local counts line f out=() name
  for name in cuda-tests memcheck racecheck; do
    line=$(grep -m1 "^@@filter $name " "$1" | cut -d' ' -f3- || true)
    out+=("$name ${line%% *}")
  done
  f=$(grep '^@@fail' "$1" | sed 's/^@@fail //' | paste -sd';' - || true)
  if [[ "$GC_DRY_RUN" == 1 ]]; then
    counts=$(gtest_counts "$1" "$log_dir/discover-tests.xml")
    echo "tests: $(IFS=,; echo "${out[*]}" | sed 's/,/, /g'); without a GPU: $counts${f:+; $f}"
  else
    echo "tests: $(IFS=,; echo "${out[*]}" | sed 's/,/, /g')${f:+; $f}"
  fi
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

key_sanitizer() {  # LOG RC XML FILTER
  local errors ran
  if grep -q -i 'device not supported\|unable to find injection library\|Target application terminated before first instrumented API call' "$1"; then
    echo "STATUS=unsupported;compute-sanitizer cannot instrument here (see ${1##*/})"; return
  fi
  errors=$(grep -o -E 'ERROR SUMMARY: [0-9]+ error|RACECHECK SUMMARY: [0-9]+ hazard' "$1" | tail -1 | awk '{print $3 " " $4 "s"}' || true)
  ran=$(gtest_counts "$1" "$3")
  if [[ -z "$errors" ]]; then  # cut short: count the reports printed so far
    errors="$(grep -c -E '^========= +(Invalid|Program hit|Uninitialized|Leaked|Error|Race|Warning)' "$1" || true) reports so far"
  fi
  if [[ "$2" == 99 ]]; then
    echo "STATUS=errors found;$errors; tests: $ran"
  else
    echo "$errors; tests: $ran; filter '$4'"
  fi
}

key_memcheck() { key_sanitizer "$1" "$2" "$log_dir/memcheck-tests.xml" "$GC_MEMCHECK_FILTER"; }
key_racecheck() { key_sanitizer "$1" "$2" "$log_dir/racecheck-tests.xml" "$GC_RACECHECK_FILTER"; }

key_bench() {
  local f=$log_dir/bench-output.txt ours theirs unavailable done_models
  if ! grep -q '^\[' "$f" 2>/dev/null; then echo "no rows: $(study_error "$1")"; return; fi
  ours=$(grep -E '^\[[^]]+\] kdlab [a-z]' "$f" | grep -c -v ' vs PyTorch: ' || true)
  theirs=$(grep -c -E '^\[[^]]+\] PyTorch [a-z_]+: [0-9]' "$f" 2>/dev/null || true)
  unavailable=$(grep -c -E '^\[[^]]+\] PyTorch [a-z_]+: (unavailable|error)' "$f" 2>/dev/null || true)
  done_models=$(grep -c -E '^\[[^]]+\] done: ' "$f" 2>/dev/null || true)
  echo "${done_models:-0} models done: ${ours:-0} kdlab rows, ${theirs:-0} PyTorch rows, ${unavailable:-0} PyTorch unavailable (rows above)"
}

study_line() { grep -m1 -o 'fmnist-study (tiny): [0-9.]* s' "$1" | sed 's/fmnist-study (tiny): //' || true; }

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
rm -f "$log_dir"/*.log "$log_dir"/*.xml "$log_dir"/{summary.md,bench-output.txt}
limit_sum=0
for s in "${all_stages[@]}"; do limit_sum=$((limit_sum + $(stage_limit "$s" real))); done
echo "[gpu-check] repo $repo, logs $log_dir, build $build_dir, budget ${budget}s" \
     "(stage limits sum to ${limit_sum}s)$( ((dry_run)) && echo ", DRY RUN")"
run_stage env
run_stage build
built_why=""
case "${status_of[build]}" in
  ok) ;;
  skipped*) [[ -x "$build_dir/kdlab_tests" ]] || built_why="no ${build_dir#"$repo"/}/kdlab_tests" ;;
  *) built_why="build ${status_of[build]%% *}" ;;
esac
run_stage discover "$built_why"
study_why=$built_why
[[ -n "$study_why" || -f "$fmnist_dir/train-images-idx3-ubyte.gz" ]] || study_why="no Fashion-MNIST in $fmnist_dir"
sanitizer_why=$built_why
[[ -n "$sanitizer_why" || -n "$(find_tool compute-sanitizer)" ]] || sanitizer_why="compute-sanitizer not found"
if ((dry_run)); then
  # What the real run would do with each GPU stage, as far as this machine can tell.
  gpu_why() { [[ -n "$built_why" ]] && echo "$built_why" || echo "dry run: needs a GPU${1:+; $1}"; }
  torch_here=$(python3 -c 'import torch; print("PyTorch", torch.__version__, "here")' 2>/dev/null || echo "no PyTorch here")
  run_stage cuda-tests "$(gpu_why "")"
  run_stage memcheck "$(gpu_why "${sanitizer_why:+"$sanitizer_why here"}")"
  run_stage racecheck "$(gpu_why "${sanitizer_why:+"$sanitizer_why here"}")"
  run_stage quick-study "$(gpu_why "${study_why:+then $study_why}")"
  run_stage bench "$(gpu_why "$torch_here")"
  run_stage bench-bn-two-launch "$(gpu_why "")"
  run_stage bench-conv-1x1-cublas "$(gpu_why "")"
  run_stage bench-cudnn-residual-separate "$(gpu_why "")"
  run_stage bench-conv-micro-4 "$(gpu_why "")"
  run_stage quick-study-cpu "dry run${study_why:+; then $study_why}"
else
  run_stage cuda-tests "$built_why"
  run_stage memcheck "$sanitizer_why"
  run_stage racecheck "$sanitizer_why"
  run_stage quick-study "$study_why"
  run_stage bench "$built_why"
  run_stage bench-bn-two-launch "$built_why"
  run_stage bench-conv-1x1-cublas "$built_why"
  run_stage bench-cudnn-residual-separate "$built_why"
  run_stage bench-conv-micro-4 "$built_why"
  run_stage quick-study-cpu "$study_why"  # also after a failed CUDA study: does the CPU one pass?
fi

# ---- summary: bench output and the toolchain first, the table LAST ----

total=$(awk -v ms=$(( $(now_ms) - t_start )) 'BEGIN { printf "%.0f", ms / 1000 }')
n_bad=0 n_ok=0 n_skip=0
for s in "${statuses[@]}"; do
  case "$s" in ok) n_ok=$((n_ok + 1)) ;; skipped*) n_skip=$((n_skip + 1)) ;; *) n_bad=$((n_bad + 1)) ;; esac
done
{
  echo "# gpu-check summary$( ((dry_run)) && echo " (dry run)")"
  echo
  echo "$(date -u +%FT%TZ), $(hostname), logs in $log_dir"
  if [[ -s "$log_dir/bench-output.txt" ]]; then
    echo
    echo "## kdlab bench --device cuda"
    echo
    echo '```'
    # The tables when the bench finished, else every row it printed before it was cut off.
    if grep -q '^GPU training-step time' "$log_dir/bench-output.txt"; then
      sed -n '/^GPU training-step time/,$p' "$log_dir/bench-output.txt" | grep -v '^[[:space:]]*$' | cut -c1-260
    else
      grep -v '^[[:space:]]*$' "$log_dir/bench-output.txt" | tail -n 30 | cut -c1-200
    fi
    echo '```'
  fi
  if [[ -f "$log_dir/build.log" ]]; then
    echo
    echo "## toolchain of the build"
    echo
    echo "- C++ compiler: $(at cxx "$log_dir/build.log")"
    echo "- nvcc: $(at nvcc "$log_dir/build.log"); its host compiler: $(at cuda-host "$log_dir/build.log")"
    echo "- cuDNN: $(at cudnn "$log_dir/build.log")"
    echo "- cuDNN the tests load: $(at cudnn-runtime "$log_dir/build.log")"
  fi
  if [[ -f "$log_dir/discover.log" ]]; then
    echo
    echo "## tests per stage (filter: count per suite)"
    echo
    for name in cuda-tests memcheck racecheck; do
      echo "- $name: $(grep -m1 "^@@filter $name " "$log_dir/discover.log" | cut -d' ' -f3- || true)"
    done
    echo "- *Cuda* tests not under memcheck: $(at not-memcheck "$log_dir/discover.log")"
  fi
  echo
  echo "## stages"
  echo
  echo "| stage | status | seconds | limit | key numbers |"
  echo "| --- | --- | ---: | ---: | --- |"
  for i in "${!names[@]}"; do
    echo "| ${names[$i]} | ${statuses[$i]} | ${seconds[$i]} | ${limits[$i]} | ${keys[$i]//|//} |"
  done
  echo
  if ((dry_run)); then
    echo "Not checked without a GPU: the *Cuda* tests' results, compute-sanitizer, the studies and"
    echo "the bench. The real run's stage limits sum to ${limit_sum} s of its ${real_budget} s budget."
    echo "gpu-check --dry-run: $n_ok stages ok, $n_bad failed, $n_skip not run; ${total} s"
  else
    echo "gpu-check: $n_ok stages ok, $n_bad failed, $n_skip skipped; ${total} s of a ${budget} s budget"
  fi
} >"$log_dir/summary.md"
if [[ -n "${GPU_CHECK_TARBALL:-}" ]]; then
  tar -czf "$GPU_CHECK_TARBALL" -C "$(dirname "$log_dir")" "$(basename "$log_dir")" 2>/dev/null ||
    echo "[gpu-check] could not write $GPU_CHECK_TARBALL"
fi
echo
cat "$log_dir/summary.md"
[[ $n_bad -eq 0 ]]
