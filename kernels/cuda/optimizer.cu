// CUDA in-place SGD and Adam (contract: kernels/optimizer.h): param and the state buffers are
// updated in place, grad is read only. The device scalars (SGD's lr, Adam's lr and step) are
// read by each block when the launch runs, so a captured update replays with current values.
// Per-tensor and fused multi-tensor updates share one kernel per optimizer: a by-value
// MultiTensorArgs (pointers, sizes, block prefix offsets) per launch, each block updating
// kBlockElems consecutive elements of one tensor (coalesced, no reductions). A whole model's
// parameters (up to kMultiTensorChunk = 512 tensors; PreResNet-56 has ~170) go in one launch,
// whose argument (up to 24.6 KB) uses the 32 KB kernel-parameter space of CUDA 12.1+ on sm_70+;
// a few tensors (the per-tensor entries) take a small argument instead. Element maths:
// kernels/cuda/optimizer_math.h, the CPU's formulas in T with every operation separately rounded
// (no FMA contraction).
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/backend.h"
#include "base/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/optimizer_math.h"
#include "kernels/optimizer.h"

namespace kd {
namespace cuda {

namespace {

using optim_math::kBlockElems;
using optim_math::kPackMax;
constexpr int kThreads = 256;

// Kernel argument, by value, for up to Cap tensors. state1 is the momentum buffer or Adam's m,
// state2 Adam's v.
template <class T, int Cap>
struct MultiTensorArgs {
  int count;
  int64_t size[Cap];
  int64_t first_block[Cap + 1];
  T* param[Cap];
  const T* grad[Cap];
  T* state1[Cap];
  T* state2[Cap];
};
static_assert(sizeof(MultiTensorArgs<double, kPackMax>) <= 32764, "kernel argument too large");

// The element range [begin, end) of this block's tensor slot.
template <class T, int Cap>
__device__ int block_range(const MultiTensorArgs<T, Cap>& a, int64_t* begin, int64_t* end) {
  const int64_t block = blockIdx.x;
  const int t = optim_math::pack_slot_of_block(a.first_block, a.count, block);
  *begin = (block - a.first_block[t]) * kBlockElems;
  *end = min(a.size[t], *begin + kBlockElems);
  return t;
}

template <class T, int Cap>
__global__ void sgd_kernel(const MultiTensorArgs<T, Cap> a, optim_math::SgdCoefficients<T> c) {
  if (c.lr_device) c.lr = T(*c.lr_device);  // the value of this run, not of the capture
  int64_t begin, end;
  const int t = block_range(a, &begin, &end);
  T* param = a.param[t];
  const T* grad = a.grad[t];
  T* buf = a.state1[t];
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
    T p = param[i];
    T b = c.use_momentum && !c.first_step ? buf[i] : T(0);
    optim_math::sgd_element(c, p, grad[i], b);
    param[i] = p;
    if (c.use_momentum) buf[i] = b;
  }
}

template <class T, int Cap>
__global__ void adam_kernel(const MultiTensorArgs<T, Cap> a, optim_math::AdamCoefficients<T> c,
                            optim_math::AdamDeviceScalars d) {
  if (d.step || d.lr)  // the values of this run, not of the capture
    optim_math::adam_step_terms(d.lr ? *d.lr : d.host_lr, d.beta1, d.beta2,
                                d.step ? *d.step : d.host_step, &c.step_size, &c.bias2_sqrt);
  int64_t begin, end;
  const int t = block_range(a, &begin, &end);
  T* param = a.param[t];
  const T* grad = a.grad[t];
  T* m = a.state1[t];
  T* v = a.state2[t];
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
    T p = param[i], mi = m[i], vi = v[i];
    optim_math::adam_element(c, p, grad[i], mi, vi);
    param[i] = p;
    m[i] = mi;
    v[i] = vi;
  }
}

// Every pack of a multi-tensor update as MultiTensorArgs<T, Cap>, handed to
// `launch(args, blocks)` (generic over Cap). state2 may be null (SGD); state1 may be null when
// momentum is off.
template <class T, class Launch>
void launch_packs(int count, const int64_t* sizes, T* const* params, const T* const* grads,
                  T* const* state1, T* const* state2, Launch launch) {
  KD_CHECK(count <= 0 || (params && grads), "multi-tensor update: null pointer list");
  optim_math::launch_in_packs(count, sizes, "multi-tensor update", [&](const auto& plan, auto cap) {
    MultiTensorArgs<T, decltype(cap)::value> a{};
    a.count = plan.count;
    for (int s = 0; s < plan.count; ++s) {
      const int i = plan.tensor[s];
      KD_CHECK(params[i] && grads[i], "multi-tensor update: tensor " << i << " has a null pointer");
      a.size[s] = plan.size[s];
      a.param[s] = params[i];
      a.grad[s] = grads[i];
      a.state1[s] = state1 ? state1[i] : nullptr;
      a.state2[s] = state2 ? state2[i] : nullptr;
    }
    for (int s = 0; s <= plan.count; ++s) a.first_block[s] = plan.first_block[s];
    launch(a, static_cast<unsigned>(plan.blocks()));
  });
}

// Every non-empty tensor needs its state buffer (`what`) when `needed`.
template <class T>
void check_state(int count, const int64_t* sizes, T* const* bufs, bool needed, const char* what) {
  if (!needed || count <= 0) return;
  KD_CHECK(bufs != nullptr, "optimizer update: no " << what << " buffers");
  for (int i = 0; i < count; ++i)
    KD_CHECK(sizes[i] == 0 || bufs[i] != nullptr,
             "optimizer update: tensor " << i << " has no " << what << " buffer");
}

}  // namespace

template <class T>
void sgd_update_multi(int count, const int64_t* sizes, T* const* params, const T* const* grads,
                      T* const* momentum_bufs, const SgdParams& h, bool first_step) {
  check_state(count, sizes, momentum_bufs, h.momentum != 0, "momentum");
  const optim_math::SgdCoefficients<T> c = optim_math::sgd_coefficients<T>(h, first_step);
  launch_packs(count, sizes, params, grads, momentum_bufs, static_cast<T* const*>(nullptr),
               [&](const auto& a, unsigned blocks) {
                 constexpr int cap = std::extent_v<decltype(a.param)>;
                 KD_LAUNCH((sgd_kernel<T, cap>), blocks, kThreads, 0, a, c);
               });
}

template <class T>
void adam_update_multi(int count, const int64_t* sizes, T* const* params, const T* const* grads,
                       T* const* m, T* const* v, const AdamParams& h, int64_t step) {
  check_state(count, sizes, m, true, "first-moment");
  check_state(count, sizes, v, true, "second-moment");
  // With a device step the host's step is a placeholder; the kernel forms the terms itself.
  const optim_math::AdamCoefficients<T> c =
      optim_math::adam_coefficients<T>(h, h.step_device ? 1 : step);
  const optim_math::AdamDeviceScalars d{h.lr_device, h.step_device, h.lr, h.beta1, h.beta2, step};
  launch_packs(count, sizes, params, grads, m, v, [&](const auto& a, unsigned blocks) {
    constexpr int cap = std::extent_v<decltype(a.param)>;
    KD_LAUNCH((adam_kernel<T, cap>), blocks, kThreads, 0, a, c, d);
  });
}

template <class T>
void sgd_update(int64_t n, const SgdParams& h, bool first_step, T* param, const T* grad,
                T* momentum_buf) {
  T* const bufs[1] = {momentum_buf};
  sgd_update_multi<T>(1, &n, &param, &grad, bufs, h, first_step);
}

template <class T>
void adam_update(int64_t n, const AdamParams& h, int64_t step, T* param, const T* grad, T* m,
                 T* v) {
  adam_update_multi<T>(1, &n, &param, &grad, &m, &v, h, step);
}

KD_DEFINE_REGISTRAR(register_optim, KD_OPTIM_KERNELS)
KD_DEFINE_REGISTRAR(register_optim_multi, KD_OPTIM_MULTI_KERNELS)

}  // namespace cuda
}  // namespace kd
