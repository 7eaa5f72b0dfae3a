#!/usr/bin/env bash
# Installs the Debian packages kdlab needs, skipping what is present (idempotent). Uses sudo when
# not root. python3-torch is optional (golden files and the speed baseline only): pass --with-torch.
# --with-sanitize adds the clang toolchain of the sanitizer build and the fuzzers (make sanitize,
# make fuzz, .ci/run): clang (clang++), libclang-rt-14-dev (the ASan, UBSan and libFuzzer
# runtimes), libomp-dev (OpenMP for clang: libgomp is g++'s), llvm-14 (llvm-symbolizer-14, so
# sanitizer reports name functions and lines).
set -euo pipefail
packages=(cmake g++ make libopenblas-dev libcli11-dev nlohmann-json3-dev libstb-dev zlib1g-dev
          libgtest-dev libbenchmark-dev gnuplot-nox dataset-fashion-mnist
          slurmctld slurmd slurm-client munge)  # Slurm: the study test's one-node cluster
for arg in "$@"; do
  case "$arg" in
    --with-torch) packages+=(python3-torch python3-numpy) ;;
    --with-sanitize) packages+=(clang libclang-rt-14-dev libomp-dev llvm-14) ;;
    *) echo "install-deps: unknown option $arg (expected --with-torch, --with-sanitize)" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "deps: installing ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
