// Emulated cuda:: and cudnn:: kernels for the elementwise, convolution, linear, pooling,
// normalization and optimizer contracts (kernels/*.h): each runs its cpu:: twin on the host
// memory that the emulated device hands out, with the same assign/accumulate rules, inside an
// emu::Launch (counted; its pointer arguments must be device blocks, opened in guard mode). The
// multi-tensor optimizer updates loop the per-tensor cpu:: update after the real wrapper's
// checks, and count one launch per pack of kMultiTensorChunk tensors.
#include <cstdint>
#include <vector>

#include "kernels/check.h"
#include "kernels/conv2d.h"
#include "kernels/cuda/runtime.h"
#include "kernels/cuda_emu/emu.h"
#include "kernels/elementwise.h"
#include "kernels/linear.h"
#include "kernels/normalization.h"
#include "kernels/optimizer.h"
#include "kernels/pool.h"

namespace kd {

// Defines NS::name<T>(params) as an emulated launch of cpu::name<T>(args), whose pointer
// arguments are the device blocks the launch opens.
#define KD_EMU_UNPAREN(...) __VA_ARGS__
#define KD_EMU_FORWARD(NS, name, params, args)                                   \
  namespace NS {                                                                 \
  template <class T>                                                             \
  void name params {                                                             \
    cuda::emu::Launch launch(#NS "::" #name, KD_EMU_UNPAREN args);               \
    cpu::name<T> args;                                                           \
  }                                                                              \
  }

#define KD_EMU_ELEMENTWISE(NS)                                                                    \
  KD_EMU_FORWARD(NS, relu_forward, (int64_t n, const T* x, T* y), (n, x, y))                      \
  KD_EMU_FORWARD(NS, relu_backward, (int64_t n, const T* y, const T* dy, T* dx), (n, y, dy, dx))  \
  KD_EMU_FORWARD(NS, add_forward, (int64_t n, const T* a, const T* b, T* y), (n, a, b, y))        \
  KD_EMU_FORWARD(NS, accumulate, (int64_t n, T alpha, const T* src, T* dst), (n, alpha, src, dst)) \
  KD_EMU_FORWARD(NS, fill, (int64_t n, T value, T* dst), (n, value, dst))                         \
  KD_EMU_FORWARD(NS, scale, (int64_t n, T alpha, T* dst), (n, alpha, dst))
KD_EMU_ELEMENTWISE(cuda)

#define KD_EMU_CONV(NS)                                                                         \
  KD_EMU_FORWARD(NS, conv2d_forward,                                                            \
                 (const ConvGeom& g, const T* x, const T* w, const T* bias, T* y),              \
                 (g, x, w, bias, y))                                                            \
  KD_EMU_FORWARD(NS, conv2d_backward_data, (const ConvGeom& g, const T* dy, const T* w, T* dx), \
                 (g, dy, w, dx))                                                                \
  KD_EMU_FORWARD(NS, conv2d_backward_weight,                                                    \
                 (const ConvGeom& g, const T* x, const T* dy, T* dw, T* dbias),                 \
                 (g, x, dy, dw, dbias))
KD_EMU_CONV(cuda)
KD_EMU_CONV(cudnn)

KD_EMU_FORWARD(cuda, linear_forward,
               (const LinearGeom& g, const T* x, const T* w, const T* bias, T* y),
               (g, x, w, bias, y))
KD_EMU_FORWARD(cuda, linear_backward_data, (const LinearGeom& g, const T* dy, const T* w, T* dx),
               (g, dy, w, dx))
KD_EMU_FORWARD(cuda, linear_backward_weight,
               (const LinearGeom& g, const T* x, const T* dy, T* dw, T* dbias),
               (g, x, dy, dw, dbias))

KD_EMU_FORWARD(cuda, avg_pool2d_forward, (const PoolGeom& g, const T* x, T* y), (g, x, y))
KD_EMU_FORWARD(cuda, avg_pool2d_backward, (const PoolGeom& g, const T* dy, T* dx), (g, dy, dx))
KD_EMU_FORWARD(cuda, max_pool2d_forward, (const PoolGeom& g, const T* x, T* y, int32_t* argmax),
               (g, x, y, argmax))
KD_EMU_FORWARD(cuda, max_pool2d_backward,
               (const PoolGeom& g, const T* dy, const int32_t* argmax, T* dx), (g, dy, argmax, dx))
KD_EMU_FORWARD(cuda, global_avg_pool_forward, (int n, int c, int hw, const T* x, T* y),
               (n, c, hw, x, y))
KD_EMU_FORWARD(cuda, global_avg_pool_backward, (int n, int c, int hw, const T* dy, T* dx),
               (n, c, hw, dy, dx))

#define KD_EMU_BATCHNORM(NS)                                                                   \
  KD_EMU_FORWARD(NS, batchnorm_forward_train,                                                  \
                 (const NormGeom& g, const T* x, const T* gamma, const T* beta, T eps,         \
                  T momentum, T* y, T* save_mean, T* save_invstd, T* running_mean,             \
                  T* running_var),                                                             \
                 (g, x, gamma, beta, eps, momentum, y, save_mean, save_invstd, running_mean,   \
                  running_var))                                                                \
  KD_EMU_FORWARD(NS, batchnorm_forward_eval,                                                   \
                 (const NormGeom& g, const T* x, const T* gamma, const T* beta,                \
                  const T* running_mean, const T* running_var, T eps, T* y),                   \
                 (g, x, gamma, beta, running_mean, running_var, eps, y))                       \
  KD_EMU_FORWARD(NS, batchnorm_backward_train,                                                 \
                 (const NormGeom& g, const T* x, const T* dy, const T* gamma,                  \
                  const T* save_mean, const T* save_invstd, T* dx, T* dgamma, T* dbeta),       \
                 (g, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta))
KD_EMU_BATCHNORM(cuda)
KD_EMU_BATCHNORM(cudnn)
KD_EMU_FORWARD(cuda, batchnorm_backward_eval,
               (const NormGeom& g, const T* x, const T* dy, const T* gamma,
                const T* running_mean, const T* running_var, T eps, T* dx, T* dgamma, T* dbeta),
               (g, x, dy, gamma, running_mean, running_var, eps, dx, dgamma, dbeta))
KD_EMU_FORWARD(cuda, groupnorm_forward,
               (const NormGeom& g, const T* x, const T* gamma, const T* beta, T eps, T* y,
                T* save_mean, T* save_invstd),
               (g, x, gamma, beta, eps, y, save_mean, save_invstd))
KD_EMU_FORWARD(cuda, groupnorm_backward,
               (const NormGeom& g, const T* x, const T* dy, const T* gamma, const T* save_mean,
                const T* save_invstd, T* dx, T* dgamma, T* dbeta),
               (g, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta))

KD_EMU_FORWARD(cuda, sgd_update,
               (int64_t n, const SgdParams& h, bool first_step, T* param, const T* grad,
                T* momentum_buf),
               (n, h, first_step, param, grad, momentum_buf))
KD_EMU_FORWARD(cuda, adam_update,
               (int64_t n, const AdamParams& h, int64_t step, T* param, const T* grad, T* m, T* v),
               (n, h, step, param, grad, m, v))

#undef KD_EMU_FORWARD
#undef KD_EMU_UNPAREN

namespace cuda {

void counter_add(int64_t* counter, int64_t delta) {
  emu::Launch launch("cuda::counter_add", counter);
  cpu::counter_add(counter, delta);
}

namespace {

// The real wrapper's checks (kernels/cuda/optimizer.cu): lists present, every non-empty tensor
// with its pointers and, when needed, its state buffers.
template <class T>
bool check_multi(const char* what, int count, const int64_t* sizes, T* const* params,
                 const T* const* grads) {
  KD_CHECK(count >= 0, what << ": negative tensor count " << count);
  if (count == 0) return false;
  KD_CHECK(sizes && params && grads, what << ": null size or pointer list");
  for (int i = 0; i < count; ++i)
    KD_CHECK(sizes[i] == 0 || (params[i] && grads[i]),
             what << ": tensor " << i << " has a null pointer");
  return true;
}

template <class T>
void check_state(int count, const int64_t* sizes, T* const* bufs, const char* what) {
  KD_CHECK(bufs != nullptr, "optimizer update: no " << what << " buffers");
  for (int i = 0; i < count; ++i)
    KD_CHECK(sizes[i] == 0 || bufs[i] != nullptr,
             "optimizer update: tensor " << i << " has no " << what << " buffer");
}

void count_pack_launches(int count) {
  for (int packed = 0; packed < count; packed += kMultiTensorChunk) count_launch();
}

// Every device array of a multi-tensor update (the lists themselves are host arrays).
template <class T>
std::vector<const void*> device_arrays(int count, T* const* params, const T* const* grads,
                                       T* const* a, T* const* b) {
  std::vector<const void*> out;
  for (int i = 0; i < count; ++i) {
    out.push_back(params[i]);
    out.push_back(grads[i]);
    if (a) out.push_back(a[i]);
    if (b) out.push_back(b[i]);
  }
  return out;
}

}  // namespace

template <class T>
void sgd_update_multi(int count, const int64_t* sizes, T* const* params, const T* const* grads,
                      T* const* momentum_bufs, const SgdParams& h, bool first_step) {
  if (!check_multi("sgd_update_multi", count, sizes, params, grads)) return;
  if (h.momentum != 0) check_state(count, sizes, momentum_bufs, "momentum");
  emu::DeviceAccess access("cuda::sgd_update_multi",
                           device_arrays<T>(count, params, grads, momentum_bufs, nullptr));
  count_pack_launches(count);
  for (int i = 0; i < count; ++i)
    if (sizes[i] > 0)
      cpu::sgd_update<T>(sizes[i], h, first_step, params[i], grads[i],
                         momentum_bufs ? momentum_bufs[i] : nullptr);
}

template <class T>
void adam_update_multi(int count, const int64_t* sizes, T* const* params, const T* const* grads,
                       T* const* m, T* const* v, const AdamParams& h, int64_t step) {
  if (!check_multi("adam_update_multi", count, sizes, params, grads)) return;
  check_state(count, sizes, m, "first-moment");
  check_state(count, sizes, v, "second-moment");
  emu::DeviceAccess access("cuda::adam_update_multi", device_arrays<T>(count, params, grads, m, v));
  count_pack_launches(count);
  for (int i = 0; i < count; ++i)
    if (sizes[i] > 0) cpu::adam_update<T>(sizes[i], h, step, params[i], grads[i], m[i], v[i]);
}

}  // namespace cuda

#define KD_EMU_INSTANTIATE(T)                                                                   \
  template void cuda::relu_forward<T>(int64_t, const T*, T*);                                   \
  template void cuda::relu_backward<T>(int64_t, const T*, const T*, T*);                        \
  template void cuda::add_forward<T>(int64_t, const T*, const T*, T*);                          \
  template void cuda::accumulate<T>(int64_t, T, const T*, T*);                                  \
  template void cuda::fill<T>(int64_t, T, T*);                                                  \
  template void cuda::scale<T>(int64_t, T, T*);                                                 \
  template void cuda::conv2d_forward<T>(const ConvGeom&, const T*, const T*, const T*, T*);     \
  template void cuda::conv2d_backward_data<T>(const ConvGeom&, const T*, const T*, T*);         \
  template void cuda::conv2d_backward_weight<T>(const ConvGeom&, const T*, const T*, T*, T*);   \
  template void cudnn::conv2d_forward<T>(const ConvGeom&, const T*, const T*, const T*, T*);    \
  template void cudnn::conv2d_backward_data<T>(const ConvGeom&, const T*, const T*, T*);        \
  template void cudnn::conv2d_backward_weight<T>(const ConvGeom&, const T*, const T*, T*, T*);  \
  template void cuda::linear_forward<T>(const LinearGeom&, const T*, const T*, const T*, T*);   \
  template void cuda::linear_backward_data<T>(const LinearGeom&, const T*, const T*, T*);       \
  template void cuda::linear_backward_weight<T>(const LinearGeom&, const T*, const T*, T*, T*); \
  template void cuda::avg_pool2d_forward<T>(const PoolGeom&, const T*, T*);                     \
  template void cuda::avg_pool2d_backward<T>(const PoolGeom&, const T*, T*);                    \
  template void cuda::max_pool2d_forward<T>(const PoolGeom&, const T*, T*, int32_t*);           \
  template void cuda::max_pool2d_backward<T>(const PoolGeom&, const T*, const int32_t*, T*);    \
  template void cuda::global_avg_pool_forward<T>(int, int, int, const T*, T*);                  \
  template void cuda::global_avg_pool_backward<T>(int, int, int, const T*, T*);                 \
  template void cuda::sgd_update<T>(int64_t, const SgdParams&, bool, T*, const T*, T*);         \
  template void cuda::adam_update<T>(int64_t, const AdamParams&, int64_t, T*, const T*, T*, T*); \
  template void cuda::sgd_update_multi<T>(int, const int64_t*, T* const*, const T* const*,      \
                                          T* const*, const SgdParams&, bool);                   \
  template void cuda::adam_update_multi<T>(int, const int64_t*, T* const*, const T* const*,     \
                                           T* const*, T* const*, const AdamParams&, int64_t);   \
  template void cuda::groupnorm_forward<T>(const NormGeom&, const T*, const T*, const T*, T, T*, \
                                           T*, T*);                                             \
  template void cuda::groupnorm_backward<T>(const NormGeom&, const T*, const T*, const T*,      \
                                            const T*, const T*, T*, T*, T*);                    \
  template void cuda::batchnorm_backward_eval<T>(const NormGeom&, const T*, const T*, const T*, \
                                                 const T*, const T*, T, T*, T*, T*);
#define KD_EMU_INSTANTIATE_BN(NS, T)                                                           \
  template void NS::batchnorm_forward_train<T>(const NormGeom&, const T*, const T*, const T*,  \
                                               T, T, T*, T*, T*, T*, T*);                      \
  template void NS::batchnorm_forward_eval<T>(const NormGeom&, const T*, const T*, const T*,   \
                                              const T*, const T*, T, T*);                      \
  template void NS::batchnorm_backward_train<T>(const NormGeom&, const T*, const T*, const T*, \
                                                const T*, const T*, T*, T*, T*);
KD_EMU_INSTANTIATE(float)
KD_EMU_INSTANTIATE(double)
KD_EMU_INSTANTIATE_BN(cuda, float)
KD_EMU_INSTANTIATE_BN(cuda, double)
KD_EMU_INSTANTIATE_BN(cudnn, float)
KD_EMU_INSTANTIATE_BN(cudnn, double)
#undef KD_EMU_INSTANTIATE
#undef KD_EMU_INSTANTIATE_BN
#undef KD_EMU_ELEMENTWISE
#undef KD_EMU_CONV
#undef KD_EMU_BATCHNORM

}  // namespace kd
