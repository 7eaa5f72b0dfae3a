#!/usr/bin/env python3
"""Mutation proof for the CUDA kernels on the grid emulator.

Breaks one kernel at a time on purpose (a missing barrier, an off-by-one tail guard, a wrong
shuffle mask or offset, a dropped split-K slice, a schedule-dependent reduction order), rebuilds
the grid backend (libkdlab_grid.so), runs the kdlab_tests that cover that kernel on it
(KDLAB_GPU_BACKEND=grid), and requires them to FAIL; then puts
the source back. Prints one row per mutation with the test that caught it and the first line of
its complaint. Exit status 1 if any mutation survived (or no longer applies to the source).

  tools/grid_mutations.py [BUILD_DIR] [--only TEXT]
      BUILD_DIR defaults to build/ (configure it first: make build); --only keeps the mutations
      whose name holds TEXT.

Not part of `make test` (each mutation rebuilds a kernel file: minutes in all).
"""
import os
import re
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BN_ATOMIC_SUM = """{
    __shared__ double acc[2];
    if (threadIdx.x == 0) acc[0] = acc[1] = 0.0;
    __syncthreads();
    atomicAdd(&acc[0], s1);
    atomicAdd(&acc[1], s2);
    __syncthreads();
    s1 = acc[0];
    s2 = acc[1];
  }"""

# (name, file, exact text, replacement, gtest filter of the tests that must catch it)
MUTATIONS = [
    ("conv: __syncthreads removed from the K-tile loop", "kernels/cuda/conv2d_tiles.cuh",
     "a_packs);\n"
     "    tables.fill(t + 2);\n"
     "    __syncthreads();\n",
     "a_packs);\n"
     "    tables.fill(t + 2);\n",
     "CudaConvKernels.*"),
    ("conv: K tile i's decomposed indices written to the other table buffer",
     "kernels/cuda/conv2d_tiles.cuh",
     "      buf[tile_index & 1].template entries<P>()[tid] =",
     "      buf[(tile_index + 1) & 1].template entries<P>()[tid] =",
     "CudaConvKernels.ForwardMatchesRefAndOracle:CudaConvKernels.Backward*"
     ":CudaConvTf32.EveryPassMatchesRefOnTf32RoundedInputs"),
    ("conv: no barrier between filling the first K-index tables and reading them",
     "kernels/cuda/conv2d_tiles.cuh",
     "  tables.fill(1);\n"
     "  __syncthreads();\n"
     "  if (kr.tiles > 0) {\n",
     "  tables.fill(1);\n"
     "  if (kr.tiles > 0) {\n",
     "CudaConvKernels.ForwardMatchesRefAndOracle:CudaConvKernels.Backward*"),
    ("tf32 conv: no barrier between filling the first K-index tables and reading them",
     "kernels/cuda/conv2d_tiles.cuh",
     "  tables.fill(1);\n"
     "  __syncthreads();\n"
     "  if (kr.tiles > 0)\n",
     "  tables.fill(1);\n"
     "  if (kr.tiles > 0)\n",
     "CudaConvTf32.EveryPassMatchesRefOnTf32RoundedInputs"),
    ("tf32 conv: tile t + 2's K-index table filled after the loop's last barrier",
     "kernels/cuda/conv2d_tiles.cuh",
     "    tables.fill(t + 2);\n"
     "    __syncthreads();\n"
     "  }\n"
     "  tc::cp_async_wait<0>();",
     "    __syncthreads();\n"
     "    tables.fill(t + 2);\n"
     "  }\n"
     "  tc::cp_async_wait<0>();",
     "CudaConvTf32.EveryPassMatchesRefOnTf32RoundedInputs"),
    ("bf16 conv under --tf32: the staged tensor-core program never launched (FMA instead)",
     "kernels/cuda/conv2d.cu",
     "  if constexpr (std::is_same_v<T, float>) {\n    if (use_tensor_cores())",
     "  if constexpr (std::is_same_v<T, float> && std::is_same_v<S, float>) {\n"
     "    if (use_tensor_cores())",
     "CudaConvBf16.Tf32ModeRunsTensorCoresWithTheSameContract"),
    ("bf16 conv under --tf32: __syncthreads removed from the staged K-tile loop",
     "kernels/cuda/conv2d_tiles.cuh",
     "    if (more) store(cur ^ 1);\n"
     "    tables.fill(t + 2);\n"
     "    __syncthreads();\n",
     "    if (more) store(cur ^ 1);\n"
     "    tables.fill(t + 2);\n",
     "CudaConvBf16.Tf32ModeRunsTensorCoresWithTheSameContract"),
    ("block_sum2: first __syncthreads removed", "kernels/cuda/reduce.cuh",
     "    part_b[warp] = b;\n  }\n  __syncthreads();\n",
     "    part_b[warp] = b;\n  }\n",
     "CudaNormKernels.*"),
    ("block_sum2: second __syncthreads removed", "kernels/cuda/reduce.cuh",
     "      total[1] = tb;\n    }\n  }\n  __syncthreads();\n",
     "      total[1] = tb;\n    }\n  }\n",
     "CudaNormKernels.*"),
    ("conv: off-by-one in the epilogue's column tail guard", "kernels/cuda/conv2d_block.h",
     "    if (col >= prm.g.n) continue;\n",
     "    if (col > prm.g.n) continue;\n",
     "CudaConvKernels.*"),
    ("pool: off-by-one in a grid-stride tail guard", "kernels/cuda/pool.cu",
     "  for (int64_t k = first_index(); k < total; k += grid_stride()) dx[k] += dy[k / hw] / T(hw);",
     "  for (int64_t k = first_index(); k <= total; k += grid_stride()) dx[k] += dy[k / hw] / T(hw);",
     "CudaPoolKernels.*"),
    ("warp_rows: shuffle mask without lane 31", "kernels/cuda/warp_rows.cuh",
     "constexpr unsigned kFullMask = 0xffffffffu;",
     "constexpr unsigned kFullMask = 0x7fffffffu;",
     "CudaLossKernels.LogSoftmaxAndCrossEntropyMatchRef"),
    ("warp_rows: butterfly starts at offset 8, not 16", "kernels/cuda/warp_rows.cuh",
     "  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);",
     "  for (int offset = kWarp / 4; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);",
     "CudaLossKernels.LogSoftmaxAndCrossEntropyMatchRef"),
    ("reduce: warp_sum shuffles down by 15, not 16", "kernels/cuda/reduce.cuh",
     "  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);",
     "  for (int offset = 15; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);",
     "CudaNormKernels.*"),
    ("conv: split-K drops the last slice", "kernels/cuda/conv2d_gather.h",
     "  for (int z = 1; z < slices; ++z) sum += ws[z * mn + e];",
     "  for (int z = 1; z < slices - 1; ++z) sum += ws[z * mn + e];",
     "CudaConvKernels.BackwardWeight*"),
    ("batchnorm: statistics summed in thread-arrival order (atomicAdd)",
     "kernels/cuda/normalization.cu",
     "  block_sum2<kStatThreads>(s1, s2);\n  if (!last_block_sum2(",
     "  " + BN_ATOMIC_SUM + "\n  if (!last_block_sum2(",
     "CudaNormKernels.BatchNorm*"),
    ("batchnorm, bf16: activations stored truncated, not rounded to nearest even",
     "kernels/bf16.h",
     "  if constexpr (std::is_same<S, bf16>::value) return to_bf16_rn(v);",
     "  if constexpr (std::is_same<S, bf16>::value)\n"
     "    return bf16{uint16_t(float_bits(float(v)) >> 16)};",
     "CudaNormKernels.Bf16*"),
    ("batchnorm, bf16: an accumulated dx is overwritten, not added to",
     "kernels/cuda/batchnorm_cluster.cuh",
     "    if (accumulate) d = w.load(static_cast<const S*>(dx));",
     "",
     "CudaNormKernels.Bf16*"),
    ("conv, bf16: the weight pass's fold overwrites dw instead of adding to it",
     "kernels/cuda/conv2d_tiles.cuh",
     "prm.fold_into[e] = narrow<S>(widen<T>(prm.fold_into[e]) + sum);",
     "prm.fold_into[e] = narrow<S>(sum);",
     "CudaConvBf16.*"),
    ("bf16: kernels widen a stored value with its last mantissa bit dropped", "kernels/bf16.h",
     "  return bf16_to<T>(v);\n}\ntemplate <class S, class T>",
     "  return bf16_to<T>(bf16{uint16_t(v.bits & 0xfffeu)});\n}\ntemplate <class S, class T>",
     "CudaConvBf16.*"),
    ("dropout: the last group's tail not clamped to n", "kernels/cuda/elementwise.cu",
     "  return g * 4 + 4 < n ? g * 4 + 4 : n;",
     "  return g * 4 + 4;",
     "CudaDropoutKernels.*"),
    ("dropout: every element of a group takes the block's first word", "kernels/cuda/elementwise.cu",
     "m[k] = r.v[k] >= mask.keep_threshold",
     "m[k] = r.v[0] >= mask.keep_threshold",
     "CudaDropoutKernels.*"),
    ("conv: the separate split-K fold assigns dw instead of adding to it", "kernels/cuda/conv2d.cu",
     "dw[e] = narrow<S>(widen<T>(dw[e]) + conv_gemm::splitk_sum(ws, slices, mn, e));",
     "dw[e] = narrow<S>(conv_gemm::splitk_sum(ws, slices, mn, e));",
     "CudaConvKernels.SeparateSplitK*:CudaConvBf16.SeparateSplitK*"),
    ("conv: a Micro-8 tile strides its micro-tile rows as a 4x4 tile does",
     "kernels/cuda/conv2d_block.h",
     "return tid / (Shape::kN / Shape::kMicro) + (Shape::kM / Shape::kMicro) * i;",
     "return tid / (Shape::kN / Shape::kMicro) + (Shape::kM / kMicro) * i;",
     "CudaConvMicroTiles.*"),
    ("conv: Micro-8 64x256 tiles never launched (64x64 instead)", "kernels/cuda/conv2d_block.h",
     "case FmaTile::Wide64: return f(WideTile64{});",
     "case FmaTile::Wide64: break;",
     "CudaConvMicroTiles.*"),
    ("conv: A's packs stored to the shared tile where one-by-one loads would go",
     "kernels/cuda/conv2d_block.h",
     "const TilePos pa = a_packs ? a_pack_pos(tid, i) : a_load_pos(tid, i);",
     "const TilePos pa = a_load_pos(tid, i);",
     "CudaConvMicroTiles.*"),
    ("conv: a narrow tile (16 or 32 rows) steps its columns by 64",
     "kernels/cuda/conv2d_tiles.cuh",
     "const int m0 = tile.y * Shape::kM, n0 = tile.x * Shape::kN",
     "const int m0 = tile.y * Shape::kM, n0 = tile.x * kTileN",
     "CudaConvKernels.ForwardMatchesRefAndOracle:CudaConvKernels.BackwardIn*"),
    ("cuDNN path: every block of the ReLU after cuDNN's batch norm adds to the batch count",
     "kernels/cuda/elementwise.cu",
     "if (counter && blockIdx.x == 0 && threadIdx.x == 0) *counter += 1;",
     "if (counter && threadIdx.x == 0) *counter += 1;",
     "CudaCudnnConv.LaunchesPerCall*:CudaCudnnBatchNorm.*"),
    ("emulated cuDNN: the residual fold drops the residual", "kernels/cuda_emu/cudnn_emu.cpp",
     "host_kernels<T>().conv2d_forward_residual(g, x, w, residual, y);",
     "host_kernels<T>().conv2d_forward(g, x, w, nullptr, y);",
     "CudaCudnnConv.*:CudaConvKernels.ForwardWithResidual*"),
    ("multi-tensor cast: every block casts with the first tensor's length", "kernels/cuda/cast.cu",
     "const int64_t end = min(a.size[t], begin + optim_math::kBlockElems);",
     "const int64_t end = min(a.size[0], begin + optim_math::kBlockElems);",
     "CudaCastKernels.MultiTensor*"),
]


def run(cmd, **kw):
    return subprocess.run(cmd, cwd=REPO, text=True, capture_output=True, **kw)


def first_complaint(output):
    """The first failed test and the most telling line of its output."""
    failed = re.findall(r"^\[  FAILED  \] (\S+)", output, re.M)
    lines = [l.strip() for l in output.splitlines() if l.strip()]
    telling = [l for l in lines if "grid emulator" in l or "wrote past" in l or "exception" in l]
    if not telling:  # an assertion: the line after gtest's "file:line: Failure"
        telling = [lines[i + 1] for i, l in enumerate(lines[:-1]) if l.endswith("Failure")]
    detail = telling[0] if telling else (lines[-1] if lines else "")
    detail = detail.replace('C++ exception with description "', "").replace("|", "/")
    return (failed[0] if failed else "(crashed)"), detail[:200]


def main():
    args = sys.argv[1:]
    only = None
    if "--only" in args:
        i = args.index("--only")
        if i + 1 >= len(args):
            sys.exit("grid_mutations.py: --only needs a text to match mutation names against")
        only = args[i + 1]
        del args[i:i + 2]
    build = os.path.abspath(args[0] if args else os.path.join(REPO, "build"))
    if not os.path.isfile(os.path.join(build, "CMakeCache.txt")):
        sys.exit(f"grid_mutations.py: {build} is not a configured build folder (run make build)")
    mutations = [m for m in MUTATIONS if only is None or only in m[0]]
    binary = os.path.join(build, "kdlab_tests")
    rows, survived = [], 0
    for name, path, old, new, test_filter in mutations:
        full = os.path.join(REPO, path)
        source = open(full).read()
        if source.count(old) != 1:
            rows.append((name, "NO LONGER APPLIES", f"the text to break was not found once in {path}"))
            survived += 1
            continue
        backup = full + ".mutation-backup"
        shutil.copy2(full, backup)
        try:
            with open(full, "w") as f:
                f.write(source.replace(old, new))
            built = run(["cmake", "--build", build, "--target", "kdlab_grid", "-j",
                         str(os.cpu_count() or 2)])
            if built.returncode != 0:
                rows.append((name, "caught at build", built.stdout.splitlines()[-1:]))
                continue
            env = dict(os.environ, KDLAB_PROGRESS="off", KDLAB_GPU_BACKEND="grid")
            tested = run([binary, f"--gtest_filter={test_filter}", "--gtest_brief=1"], env=env,
                         timeout=1800)
            if tested.returncode == 0:
                rows.append((name, "SURVIVED", f"{test_filter} passed"))
                survived += 1
            else:
                rows.append((name,) + first_complaint(tested.stdout + tested.stderr))
        finally:
            shutil.move(backup, full)
            os.utime(full, None)  # make sure the next build recompiles the restored file
    run(["cmake", "--build", build, "--target", "kdlab_grid", "-j", str(os.cpu_count() or 2)])
    print("| mutation | caught by | first complaint |")
    print("|---|---|---|")
    for name, test, detail in rows:
        print(f"| {name} | {test} | {detail} |")
    print(f"\n{len(mutations) - survived} of {len(mutations)} mutations caught")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
