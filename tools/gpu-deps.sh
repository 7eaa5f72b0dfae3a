#!/usr/bin/env bash
# Prepares .gpu-deps/ (git-ignored) for a lent GPU machine: that machine has CUDA, CMake and
# PyTorch but none of kdlab's Debian build libraries, no Fashion-MNIST and no network. Run this
# here (it downloads .deb files with `apt-get download`, installs nothing) and carry `.gpu-deps`
# with the device call; tools/gpu-check.sh unpacks the packages into a private prefix (dpkg -x,
# never into /) and points CMake, the compiler and the loader at it. About 15 MB of packages and
# 30 MB of data.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="$repo/.gpu-deps"
packages=(libopenblas-dev libopenblas-pthread-dev libopenblas0 libopenblas0-pthread libgfortran5
          libquadmath0 libcli11-dev nlohmann-json3-dev libstb-dev libstb0 zlib1g-dev libgtest-dev)
rm -rf "$out"
mkdir -p "$out/debs" "$out/fashion-mnist"
(cd "$out/debs" && apt-get download "${packages[@]}")
fmnist=${KDLAB_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
if compgen -G "$fmnist/*-ubyte.gz" >/dev/null; then
  cp "$fmnist"/*-ubyte.gz "$out/fashion-mnist/"
else
  echo "gpu-deps: no Fashion-MNIST in $fmnist (the GPU study stages will be skipped)" >&2
fi
du -sh "$out"/*
