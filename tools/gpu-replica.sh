#!/usr/bin/env bash
# A replica of the lent GPU machine's software layout, for running the parts of
# tools/gpu-check.sh that need no GPU (environment, build, test discovery: `--dry-run`) before a
# device session spends its minutes on them. Needs root (debootstrap, chroot, mounts), a Debian
# mirror and PyPI. The replica lives outside the repository:
#
#   DIR/root        Debian trixie (debootstrap, minbase): a newer glibc and gcc than Debian 12's,
#                   python3, but none of kdlab's build libraries (OpenBLAS, GTest, CLI11,
#                   nlohmann-json, stb, zlib headers) and no Fashion-MNIST
#   DIR/root/opt/torch/.venv   a venv like the machine's PyTorch one, with PyPI's cmake and
#                   ninja and cuDNN only as the nvidia-cudnn-cu13 wheel; no torch (the stages
#                   that would use it need a GPU anyway); first on PATH, so `python3` is this one
#   DIR/cuda-13.0   the host's /usr/local/cuda toolkit as hard links, less every cuDNN header
#                   and library, mounted read-only at /usr/local/cuda-13.0 (/usr/local/cuda links
#                   to it), as on a machine where cuDNN is only the wheel
#
# A command runs in private mount and network namespaces (no network, as there; the mounts vanish
# with it) with the repository copy mounted at /repo:
#
#   tools/gpu-replica.sh build [DIR]                   make or refresh the replica (default
#                                                      /opt/h200-replica; GPU_REPLICA_DIR too)
#   tools/gpu-replica.sh snapshot DEST [REV [PATH...]] a copy of the repository at REV (default
#                                                      HEAD) in DEST, then the working tree's
#                                                      PATHs over it, then .gpu-deps made by
#                                                      tools/gpu-deps.sh (as a device call carries)
#   tools/gpu-replica.sh run REPO_COPY COMMAND...      run COMMAND (bash -c) in the replica, in
#                                                      /repo; GPU_REPLICA_FRESH=1 empties the
#                                                      replica's /tmp first (a fresh machine)
#
# e.g.  tools/gpu-replica.sh build
#       tools/gpu-replica.sh snapshot /tmp/gc-snap HEAD tools apps/bench_gpu.cpp
#       tools/gpu-replica.sh run /tmp/gc-snap 'tools/gpu-check.sh --dry-run'
#
# What it cannot show: the GPU itself, the driver, nvidia-smi, compute-sanitizer (none is
# installed here), the machine's Firecracker kernel and its 16 cores, or its exact distribution
# (its Python is 3.12, this venv's is trixie's 3.13).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() { echo "gpu-replica: $*" >&2; exit 2; }
[[ $(id -u) == 0 ]] || die "needs root (debootstrap, chroot, mount)"

suite=${GPU_REPLICA_SUITE:-trixie}
mirror=${GPU_REPLICA_MIRROR:-http://deb.debian.org/debian}
cuda_src=${GPU_REPLICA_CUDA:-/usr/local/cuda}
# What the machine's image has that minbase lacks: a host compiler for nvcc, python3 for the
# venv, make, and the small tools gpu-check.sh calls.
packages=g++,make,python3,python3-venv,hostname,procps,xz-utils,file

build() {
  local dir=$1 root=$1/root
  mkdir -p "$dir"
  if [[ ! -x "$root/usr/bin/python3" ]]; then
    rm -rf "$root"
    debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror"
  fi
  # The toolkit without cuDNN: hard links cost no space (same file system) and leave the host's
  # copy alone when the replica's is pruned. A copy where links are refused.
  local real
  real=$(readlink -f "$cuda_src")
  rm -rf "$dir/cuda-13.0"
  cp -al "$real" "$dir/cuda-13.0" 2>/dev/null || cp -a "$real" "$dir/cuda-13.0"
  find "$dir/cuda-13.0" \( -name 'cudnn*.h' -o -name 'libcudnn*' -o -name '*cudnn*dist-info' \) \
    -prune -exec rm -rf {} +
  mkdir -p "$root/usr/local/cuda-13.0"
  ln -sfn cuda-13.0 "$root/usr/local/cuda"
  # PyTorch's venv: PyPI's cmake, ninja and cuDNN wheel, fetched here (the replica has no network
  # when it runs) and installed offline inside it.
  local wheels=$dir/wheels
  mkdir -p "$wheels"
  python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --python-version 3.13 --implementation cp -d "$wheels" cmake ninja nvidia-cudnn-cu13
  rm -rf "$root/wheels"; mkdir -p "$root/wheels"
  cp -l "$wheels"/*.whl "$root/wheels/" 2>/dev/null || cp "$wheels"/*.whl "$root/wheels/"
  in_root "$dir" / '
    set -e
    [[ -x /opt/torch/.venv/bin/python3 ]] || python3 -m venv /opt/torch/.venv
    /opt/torch/.venv/bin/python3 -m pip install -q --no-index --no-deps --upgrade /wheels/*.whl
    rm -rf /wheels'
  in_root "$dir" / '
    echo "replica: $(. /etc/os-release; echo $PRETTY_NAME), $(ldd --version | head -1)"
    echo "  g++: $(command -v g++) $(g++ -dumpfullversion); python3: $(command -v python3) $(python3 -V)"
    echo "  cmake: $(command -v cmake) $(cmake --version | head -1); ninja $(ninja --version)"
    echo "  nvcc: $(/usr/local/cuda/bin/nvcc --version | grep -o "release [0-9.]*"); cudnn.h in the toolkit: $(ls /usr/local/cuda/include/cudnn.h 2>/dev/null || echo none)"
    echo "  cuDNN wheel: $(python3 -m pip show nvidia-cudnn-cu13 | grep ^Version)"
    ls /usr/include/cblas.h /usr/include/gtest /usr/include/x86_64-linux-gnu/cblas.h 2>/dev/null || echo "  no build libraries (as on the machine)"'
}

# in_root DIR REPO_COPY SCRIPT: the script in the replica, without network, with the toolkit and
# the repository copy mounted; the mounts live in a private namespace and end with it.
in_root() {
  local dir=$1 copy=$2 script=$3 root=$1/root
  [[ -d "$root/usr" ]] || die "no replica in $dir (run: $0 build $dir)"
  mkdir -p "$root/repo"
  unshare --mount --net --fork bash -euo pipefail -c '
    root=$1 dir=$2 copy=$3; shift 3
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount -t tmpfs tmpfs "$root/dev/shm"
    mount --bind "$dir/cuda-13.0" "$root/usr/local/cuda-13.0"
    mount -o remount,bind,ro "$root/usr/local/cuda-13.0"
    [[ "$copy" == / ]] || mount --bind "$copy" "$root/repo"
    ip link set lo up 2>/dev/null || true
    exec chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
      PATH=/opt/torch/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      bash -c "cd /repo && $*"' _ "$root" "$dir" "$copy" "$script"
}

snapshot() {
  local dest=$1 rev=${2:-HEAD}
  shift 2 || shift $#
  mkdir -p "$dest"
  # A new copy of the sources; the build folder, logs and carried packages stay (a warm machine).
  find "$dest" -mindepth 1 -maxdepth 1 ! -name build-gpu ! -name gpu-check-logs ! -name .gpu-deps \
    -exec rm -rf {} +
  git -C "$repo" archive "$rev" | tar -x -C "$dest"
  local p
  for p in "$@"; do
    (cd "$repo" && git ls-files -co --exclude-standard -- "$p") | while read -r f; do
      mkdir -p "$dest/$(dirname "$f")"; cp -p "$repo/$f" "$dest/$f"
    done
  done
  [[ -d "$dest/.gpu-deps/debs" ]] || bash "$dest/tools/gpu-deps.sh"
  echo "gpu-replica: $dest holds $rev$( (($#)) && echo " + working tree's $*")"
}

cmd=${1:-}; shift || true
dir=${GPU_REPLICA_DIR:-/opt/h200-replica}
case "$cmd" in
  build) build "${1:-$dir}" ;;
  snapshot) [[ $# -ge 1 ]] || die "usage: $0 snapshot DEST [REV [PATH...]]"; snapshot "$@" ;;
  run)
    [[ $# -ge 2 ]] || die "usage: $0 run REPO_COPY COMMAND..."
    copy=$(cd "$1" && pwd); shift
    [[ "${GPU_REPLICA_FRESH:-0}" == 1 ]] && find "$dir/root/tmp" -mindepth 1 -delete
    in_root "$dir" "$copy" "$*" ;;
  *) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; [[ "$cmd" == -h || "$cmd" == --help ]] ;;
esac
