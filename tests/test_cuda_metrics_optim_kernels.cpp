// Tests for the CUDA evaluation rows (kernels/cuda/metrics.cu) and optimizers
// (kernels/cuda/optimizer.cu). Host part (runs everywhere): the element updates of
// kernels/cuda/optimizer_math.h against ref:: over several steps, and the multi-tensor packing
// (every element of every tensor covered exactly once, empty tensors skipped, at most
// kMultiTensorChunk per pack).
// Device part (suites named Cuda): per-row stats, folded, against cpu::classifier_stats with and
// without a teacher; SGD (plain, weight decay, momentum, Nesterov, first step) and Adam over
// several steps; fused multi-tensor updates over more than kMultiTensorChunk tensors of odd sizes
// (0 and 1 included) against the per-tensor kernels.
// Tolerances: metrics rows are computed in double on both sides; counts must match exactly, sums
// to 1e-12 relative (exp/log may differ by an ulp between the GPU and glibc). Optimizers: the GPU
// rounds every operation separately, so it equals the host run of the same element code
// bitwise; against ref:: (which the host compiler may contract into FMA) 1e-6 relative in float,
// 1e-14 in double.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "base/check.h"
#include "kernels/cuda/optimizer_math.h"
#include "kernels/metrics.h"
#include "kernels/optimizer.h"
#include "tests/cuda_testing.h"
#include "tests/kernel_testing.h"

namespace kd {
namespace {

using namespace kernel_testing;

template <class T>
double optim_tol() {
  return sizeof(T) == 4 ? 1e-6 : 1e-14;
}

const SgdParams kSgdCases[] = {
    {0.1, 0.0, 0.0, false},    // plain
    {0.05, 0.0, 1e-2, false},  // weight decay, no momentum
    {0.1, 0.9, 5e-4, false},   // momentum
    {0.1, 0.9, 5e-4, true},    // Nesterov
};
const AdamParams kAdam = {1e-3, 0.9, 0.999, 1e-8, 1e-4};
constexpr int kSteps = 4;

// State of one tensor through the steps: param, grad per step, momentum / m, v.
template <class T>
struct OptimState {
  std::vector<T> param, s1, s2;
  explicit OptimState(int64_t n, uint64_t seed)
      : param(uniform<T>(n, seed, -1, 1)), s1(n, T(0)), s2(n, T(0)) {}
};

template <class T>
std::vector<T> step_grad(int64_t n, uint64_t seed, int step) {
  return uniform<T>(n, seed * 100 + step, -2, 2);
}

// The element code run on the host: what the GPU must reproduce bit for bit.
template <class T>
void host_sgd(const SgdParams& h, bool first, const std::vector<T>& g, OptimState<T>* st) {
  const auto c = optim_math::sgd_coefficients<T>(h, first);
  for (size_t i = 0; i < g.size(); ++i) {
    T b = c.use_momentum && !first ? st->s1[i] : T(0);
    optim_math::sgd_element(c, st->param[i], g[i], b);
    if (c.use_momentum) st->s1[i] = b;
  }
}

template <class T>
void host_adam(const AdamParams& h, int64_t step, const std::vector<T>& g, OptimState<T>* st) {
  const auto c = optim_math::adam_coefficients<T>(h, step);
  for (size_t i = 0; i < g.size(); ++i)
    optim_math::adam_element(c, st->param[i], g[i], st->s1[i], st->s2[i]);
}

template <class T>
void check_element_math_against_ref() {
  const int64_t n = 257;
  for (const SgdParams& h : kSgdCases) {
    OptimState<T> mine(n, 1), ref_st(n, 1);
    for (int step = 0; step < kSteps; ++step) {
      const auto g = step_grad<T>(n, 1, step);
      host_sgd(h, step == 0, g, &mine);
      ref::sgd_update<T>(n, h, step == 0, ref_st.param.data(), g.data(), ref_st.s1.data());
    }
    expect_close(mine.param, ref_st.param, optim_tol<T>(), "sgd param");
    expect_close(mine.s1, ref_st.s1, optim_tol<T>(), "sgd momentum");
  }
  OptimState<T> mine(n, 2), ref_st(n, 2);
  for (int step = 1; step <= kSteps; ++step) {
    const auto g = step_grad<T>(n, 2, step);
    host_adam(kAdam, step, g, &mine);
    ref::adam_update<T>(n, kAdam, step, ref_st.param.data(), g.data(), ref_st.s1.data(),
                        ref_st.s2.data());
  }
  expect_close(mine.param, ref_st.param, optim_tol<T>(), "adam param");
  expect_close(mine.s2, ref_st.s2, optim_tol<T>(), "adam v");
}

TEST(OptimizerElementMath, MatchesRefOverSteps) {
  check_element_math_against_ref<float>();
  check_element_math_against_ref<double>();
}

// `count` tensor sizes, 0 and 1 among them, around the 2048-element block size.
std::vector<int64_t> awkward_sizes(int count) {
  std::vector<int64_t> sizes;
  for (int i = 0; i < count; ++i) {
    const int64_t pick[] = {0, 1, 3, 2047, 2048, 2049, 7, 0, 1, 5001, 64, 129};
    sizes.push_back(pick[i % 12] + (i % 5 == 4 ? 11 : 0));
  }
  return sizes;
}

TEST(MultiTensorPlan, CoversEveryElementOnce) {
  const std::vector<int64_t> sizes = awkward_sizes(2 * cuda::kMultiTensorChunk + 100);
  const auto packs = optim_math::plan_packs(int(sizes.size()), sizes.data());
  std::vector<std::vector<int>> seen(sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) seen[i].assign(sizes[i], 0);
  int packed = 0;
  for (const auto& p : packs) {
    ASSERT_GE(p.count, 1);
    ASSERT_LE(p.count, cuda::kMultiTensorChunk);
    packed += p.count;
    for (int64_t b = 0; b < p.blocks(); ++b) {
      const int slot = optim_math::pack_slot_of_block(p.first_block, p.count, b);
      const int64_t begin = (b - p.first_block[slot]) * optim_math::kBlockElems;
      ASSERT_LT(begin, p.size[slot]);
      for (int64_t e = begin; e < std::min(p.size[slot], begin + optim_math::kBlockElems); ++e)
        seen[p.tensor[slot]][e] += 1;
    }
  }
  int nonempty = 0;
  for (int64_t s : sizes) nonempty += s > 0;
  EXPECT_EQ(packed, nonempty);
  EXPECT_EQ(int(packs.size()), (nonempty + cuda::kMultiTensorChunk - 1) / cuda::kMultiTensorChunk);
  EXPECT_GE(packs.size(), 2u);
  for (size_t i = 0; i < sizes.size(); ++i)
    for (int64_t e = 0; e < sizes[i]; ++e)
      ASSERT_EQ(seen[i][e], 1) << "tensor " << i << " elem " << e;
  EXPECT_TRUE(optim_math::plan_packs(3, std::vector<int64_t>{0, 0, 0}.data()).empty());
}

// The driver both multi-tensor launchers (updates and casts) go through: a small argument for a
// few tensors, kPackMax slots otherwise, every pack once, and clear refusals.
TEST(MultiTensorPlan, LaunchInPacksPicksTheArgumentSizeAndVisitsEveryPack) {
  auto visit = [](const std::vector<int64_t>& sizes) {
    std::vector<std::pair<int, int>> calls;  // (tensors in the pack, the argument's slots)
    optim_math::launch_in_packs(int(sizes.size()), sizes.data(), "test",
                                [&](const optim_math::PackPlan& plan, auto cap) {
                                  calls.emplace_back(plan.count, decltype(cap)::value);
                                });
    return calls;
  };
  using Calls = std::vector<std::pair<int, int>>;
  EXPECT_EQ(visit({}), Calls{});
  EXPECT_EQ(visit({5}), (Calls{{1, optim_math::kSmallPack}}));
  EXPECT_EQ(visit({5, 0, 7, 1}), (Calls{{3, optim_math::kSmallPack}}));
  EXPECT_EQ(visit({5, 0, 7, 1, 2}), (Calls{{4, optim_math::kPackMax}}));
  const std::vector<int64_t> many(cuda::kMultiTensorChunk + 3, 10);
  EXPECT_EQ(visit(many), (Calls{{cuda::kMultiTensorChunk, optim_math::kPackMax},
                                {3, optim_math::kPackMax}}));
  auto error_of = [](auto call) -> std::string {
    try {
      call();
    } catch (const std::exception& e) {
      return e.what();
    }
    return "no error";
  };
  auto ignore = [](const optim_math::PackPlan&, auto) {};
  EXPECT_NE(error_of([&] { visit({4, -1}); }).find("tensor 1 has size -1"), std::string::npos);
  EXPECT_NE(error_of([&] { optim_math::launch_in_packs(-2, nullptr, "test", ignore); })
                .find("test: negative tensor count -2"),
            std::string::npos);
  EXPECT_NE(error_of([&] { optim_math::launch_in_packs(2, nullptr, "test", ignore); })
                .find("test: null size list"),
            std::string::npos);
}

// --- device ----------------------------------------------------------------------------------
using cuda_testing::DeviceArray;


template <class T>
void check_row_stats(int rows, int cols, uint64_t seed, bool with_teacher, bool coarse) {
  SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols) +
               (with_teacher ? " teacher" : "") + (coarse ? " ties" : ""));
  auto logits = uniform<T>(size_t(rows) * cols, seed, -5, 5);
  auto teacher = uniform<T>(size_t(rows) * cols, seed + 1, -5, 5);
  if (coarse) {  // integers: tied maxima, first maximum must win on both sides
    for (T& v : logits) v = T(std::floor(double(v)));
    for (T& v : teacher) v = T(std::floor(double(v)));
  }
  const auto labels = random_labels(rows, cols, seed + 2);
  const T* t = with_teacher ? teacher.data() : nullptr;
  DeviceArray<T> l_d(logits), t_d(teacher);
  DeviceArray<int32_t> lab_d(labels);
  DeviceArray<double> rows_d(std::vector<double>(size_t(rows) * kRowStatFields, 1e300));
  cuda_testing::gpu_kernels<T>().classifier_row_stats(rows, cols, l_d.get(), lab_d.get(),
                                with_teacher ? t_d.get() : nullptr, rows_d.get());
  const std::vector<double> got_rows = rows_d.host(),
                            want_rows = cpu_row_stats<T>(rows, cols, logits, labels, t);
  for (size_t i = 0; i < got_rows.size(); ++i) {
    const int field = int(i % kRowStatFields);
    if (field == 0 || field == 3) {
      ASSERT_EQ(got_rows[i], want_rows[i]) << "row " << i / kRowStatFields << " field " << field;
    } else {
      ASSERT_NEAR(got_rows[i], want_rows[i], 1e-12 * std::max(1.0, std::fabs(want_rows[i])))
          << "row " << i / kRowStatFields << " field " << field;
    }
  }
  ClassifierStats got, want;
  fold_row_stats(rows, got_rows.data(), with_teacher, &got);
  kernel_testing::classifier_stats<T>(cpu::classifier_row_stats<T>, rows, cols, logits.data(), labels.data(), t, &want);
  EXPECT_EQ(got.count, want.count);
  EXPECT_EQ(got.correct, want.correct);
  EXPECT_EQ(got.agree, want.agree);
  EXPECT_NEAR(got.nll_sum, want.nll_sum, 1e-12 * std::max(1.0, want.nll_sum));
  EXPECT_NEAR(got.kl_sum, want.kl_sum, 1e-12 * std::max(1.0, want.kl_sum));
  for (int b = 0; b < kEceBins; ++b) {
    EXPECT_EQ(got.bin_count[b], want.bin_count[b]) << "bin " << b;
    EXPECT_EQ(got.bin_correct_sum[b], want.bin_correct_sum[b]) << "bin " << b;
    EXPECT_NEAR(got.bin_conf_sum[b], want.bin_conf_sum[b],
                1e-12 * std::max(1.0, want.bin_conf_sum[b]));
  }
}

TEST(CudaMetricsKernels, RowStatsFoldToCpuStats) {
  KD_REQUIRE_CUDA();
  using RowsCols = std::vector<int>;
  const std::vector<RowsCols> shapes = kernel_testing::shapes_for_build(
      std::vector<RowsCols>{{1, 1}, {1, 2}, {7, 33}, {37, 10}, {19, 1000}, {3000, 10}}, 4);
  uint64_t seed = 500;
  for (auto& s : shapes) {
    for (bool teacher : {false, true}) {
      for (bool coarse : {false, true}) {
        check_row_stats<float>(s[0], s[1], seed += 3, teacher, coarse);
        check_row_stats<double>(s[0], s[1], seed += 3, teacher, coarse);
      }
    }
  }
}

// The device contract for a label outside [0, cols): that row's nll is NaN and it is not
// correct; no error (checking would cost a copy) and no read out of bounds.
TEST(CudaMetricsKernels, OutOfRangeLabelGivesNaNNll) {
  KD_REQUIRE_CUDA();
  const int rows = 37, cols = 7;
  const auto logits = uniform<float>(size_t(rows) * cols, 900, -3, 3);
  auto labels = random_labels(rows, cols, 901);
  labels[4] = cols;
  labels[9] = -1;
  DeviceArray<float> l_d(logits);
  DeviceArray<int32_t> lab_d(labels);
  DeviceArray<double> rows_d(size_t(rows) * kRowStatFields);
  cuda_testing::gpu_kernels<float>().classifier_row_stats(rows, cols, l_d.get(), lab_d.get(), nullptr, rows_d.get());
  const std::vector<double> got = rows_d.host();
  for (int r : {4, 9}) {
    EXPECT_TRUE(std::isnan(got[size_t(r) * kRowStatFields + 1])) << "row " << r;
    EXPECT_EQ(got[size_t(r) * kRowStatFields + 0], 0.0) << "row " << r;
  }
  EXPECT_FALSE(std::isnan(got[size_t(5) * kRowStatFields + 1]));
}

template <class T>
void check_single_tensor_updates() {
  const int64_t n = 5001;  // several blocks, ragged last block
  for (const SgdParams& h : kSgdCases) {
    SCOPED_TRACE("sgd momentum " + std::to_string(h.momentum) + " nesterov " +
                 std::to_string(h.nesterov));
    OptimState<T> host(n, 3), ref_st(n, 3);
    // NaN in the buffer: the first step must overwrite it without reading it.
    DeviceArray<T> p_d(host.param), b_d(std::vector<T>(n, T(NAN)));
    for (int step = 0; step < kSteps; ++step) {
      const auto g = step_grad<T>(n, 3, step);
      DeviceArray<T> g_d(g);
      cuda_testing::gpu_kernels<T>().sgd_update(n, h, step == 0, p_d.get(), g_d.get(),
                          h.momentum != 0 ? b_d.get() : nullptr);
      host_sgd(h, step == 0, g, &host);
      ref::sgd_update<T>(n, h, step == 0, ref_st.param.data(), g.data(), ref_st.s1.data());
    }
    EXPECT_TRUE(same_bits(p_d.host(), host.param)) << "param vs host element code";
    if (h.momentum != 0) {
      EXPECT_TRUE(same_bits(b_d.host(), host.s1)) << "momentum vs host";
    }
    expect_close(p_d.host(), ref_st.param, optim_tol<T>(), "sgd param vs ref");
  }
  OptimState<T> host(n, 4), ref_st(n, 4);
  DeviceArray<T> p_d(host.param), m_d(n), v_d(n);
  for (int step = 1; step <= kSteps; ++step) {
    const auto g = step_grad<T>(n, 4, step);
    DeviceArray<T> g_d(g);
    cuda_testing::gpu_kernels<T>().adam_update(n, kAdam, step, p_d.get(), g_d.get(), m_d.get(), v_d.get());
    host_adam(kAdam, step, g, &host);
    ref::adam_update<T>(n, kAdam, step, ref_st.param.data(), g.data(), ref_st.s1.data(),
                        ref_st.s2.data());
  }
  EXPECT_TRUE(same_bits(p_d.host(), host.param)) << "adam param vs host element code";
  EXPECT_TRUE(same_bits(m_d.host(), host.s1) && same_bits(v_d.host(), host.s2)) << "adam moments";
  expect_close(p_d.host(), ref_st.param, optim_tol<T>(), "adam param vs ref");
  expect_close(v_d.host(), ref_st.s2, optim_tol<T>(), "adam v vs ref");

  // The step and the learning rate read from device memory (AdamParams::step_device,
  // lr_device; the host's step argument is a wrong placeholder): the same bits as the host's.
  OptimState<T> dev_host(n, 4);
  DeviceArray<T> q_d(dev_host.param), m2_d(n), v2_d(n);
  DeviceArray<int64_t> step_d(std::vector<int64_t>{0});
  DeviceArray<double> lr_d(std::vector<double>{0});
  AdamParams on_device = kAdam;
  on_device.lr = 99.0;  // ignored: lr_device wins
  on_device.step_device = step_d.get();
  on_device.lr_device = lr_d.get();
  for (int step = 1; step <= kSteps; ++step) {
    const auto g = step_grad<T>(n, 4, step);
    DeviceArray<T> g_d(g);
    AdamParams h = kAdam;
    h.lr = kAdam.lr * step;  // a new rate every step
    const int64_t step64 = step;
    cuda_testing::gpu().copy_host_to_device(step_d.get(), &step64, sizeof(int64_t));
    cuda_testing::gpu().copy_host_to_device(lr_d.get(), &h.lr, sizeof(double));
    cuda_testing::gpu_kernels<T>().adam_update(n, on_device, 1000, q_d.get(), g_d.get(),
                                               m2_d.get(), v2_d.get());
    host_adam(h, step, g, &dev_host);
  }
  EXPECT_TRUE(same_bits(q_d.host(), dev_host.param)) << "adam with device scalars vs host";
}

TEST(CudaOptimizerKernels, SgdAndAdamMatchRef) {
  KD_REQUIRE_CUDA();
  check_single_tensor_updates<float>();
  check_single_tensor_updates<double>();
}

// DeviceArray(vector) would copy one element from an empty vector's null data.
template <class T>
std::unique_ptr<DeviceArray<T>> upload(const std::vector<T>& v) {
  return v.empty() ? std::make_unique<DeviceArray<T>>(size_t(0))
                   : std::make_unique<DeviceArray<T>>(v);
}

// Device copies of one state per tensor; empty tensors get null pointers (never touched).
template <class T>
struct DeviceStates {
  std::vector<std::unique_ptr<DeviceArray<T>>> p, s1, s2;
  std::vector<T*> pp, ps1, ps2;
  explicit DeviceStates(const std::vector<OptimState<T>>& st) {
    for (const auto& s : st) {
      p.push_back(upload(s.param));
      s1.push_back(upload(s.s1));
      s2.push_back(upload(s.s2));
      const bool empty = s.param.empty();
      pp.push_back(empty ? nullptr : p.back()->get());
      ps1.push_back(empty ? nullptr : s1.back()->get());
      ps2.push_back(empty ? nullptr : s2.back()->get());
    }
  }
};

// sizes: a model's worth (one launch) or more than a launch holds (several). per_tensor also
// runs the one-tensor kernel on every tensor and asks for the same bits; the long lists skip it
// because a thousand launches a step is minutes on the grid emulator.
template <class T>
void check_multi_tensor(bool adam, const std::vector<int64_t>& sizes, bool per_tensor) {
  const int count = int(sizes.size());
  SCOPED_TRACE(std::string(adam ? "adam" : "sgd nesterov") + ", " + std::to_string(count) +
               " tensors");
  const int nonempty = int(std::count_if(sizes.begin(), sizes.end(), [](int64_t s) { return s > 0; }));
  const SgdParams& h = kSgdCases[3];
  std::vector<OptimState<T>> host, ref_st;
  for (int i = 0; i < count; ++i) {
    host.emplace_back(sizes[i], 600 + i);
    ref_st.emplace_back(sizes[i], 600 + i);
  }
  // The per-tensor kernel's copies, only when it runs.
  DeviceStates<T> multi(host), single(per_tensor ? host : std::vector<OptimState<T>>{});
  for (int step = 1; step <= kSteps; ++step) {
    std::vector<std::vector<T>> g(count);
    std::vector<std::unique_ptr<DeviceArray<T>>> g_d;
    std::vector<const T*> pg;
    for (int i = 0; i < count; ++i) {
      g[i] = step_grad<T>(sizes[i], 700 + i, step);
      g_d.push_back(upload(g[i]));
      pg.push_back(sizes[i] ? g_d.back()->get() : nullptr);
    }
    const uint64_t before = cuda_testing::gpu().launch_count();
    if (adam) {
      cuda_testing::gpu_kernels<T>().adam_update_multi(count, sizes.data(), multi.pp.data(), pg.data(), multi.ps1.data(),
                                 multi.ps2.data(), kAdam, step);
    } else {
      cuda_testing::gpu_kernels<T>().sgd_update_multi(count, sizes.data(), multi.pp.data(), pg.data(), multi.ps1.data(),
                                h, step == 1);
    }
    // One launch per kMultiTensorChunk non-empty tensors.
    EXPECT_EQ(cuda_testing::gpu().launch_count() - before,
              uint64_t((nonempty + cuda::kMultiTensorChunk - 1) / cuda::kMultiTensorChunk));
    for (int i = 0; i < count; ++i) {
      if (adam) {
        if (per_tensor)
          cuda_testing::gpu_kernels<T>().adam_update(sizes[i], kAdam, step, single.pp[i], pg[i],
                                                     single.ps1[i], single.ps2[i]);
        host_adam(kAdam, step, g[i], &host[i]);
        ref::adam_update<T>(sizes[i], kAdam, step, ref_st[i].param.data(), g[i].data(),
                            ref_st[i].s1.data(), ref_st[i].s2.data());
      } else {
        if (per_tensor)
          cuda_testing::gpu_kernels<T>().sgd_update(sizes[i], h, step == 1, single.pp[i], pg[i],
                                                    single.ps1[i]);
        host_sgd(h, step == 1, g[i], &host[i]);
        ref::sgd_update<T>(sizes[i], h, step == 1, ref_st[i].param.data(), g[i].data(),
                           ref_st[i].s1.data());
      }
    }
  }
  for (int i = 0; i < count; ++i) {
    SCOPED_TRACE("tensor " + std::to_string(i) + " of size " + std::to_string(sizes[i]));
    const auto got = multi.p[i]->host();
    if (per_tensor) {
      EXPECT_TRUE(same_bits(got, single.p[i]->host())) << "multi vs per-tensor";
    }
    EXPECT_TRUE(same_bits(got, host[i].param)) << "multi vs host element code";
    EXPECT_TRUE(same_bits(multi.s1[i]->host(), host[i].s1)) << "state";
    if (adam) {
      EXPECT_TRUE(same_bits(multi.s2[i]->host(), host[i].s2)) << "v";
    }
    expect_close(got, ref_st[i].param, optim_tol<T>(), "param vs ref");
  }
}

TEST(CudaOptimizerKernels, MultiTensorEqualsPerTensor) {
  KD_REQUIRE_CUDA();
  const std::vector<int64_t> sizes = awkward_sizes(70);
  // Under the race check the multi-tensor launches alone: the 70 one-tensor launches a step are
  // the one-tensor kernels that SgdAndAdamMatchRef already runs there.
  const bool per_tensor = !kernel_testing::kRaceCheckBuild;
  check_multi_tensor<float>(false, sizes, per_tensor);
  check_multi_tensor<float>(true, sizes, per_tensor);
  check_multi_tensor<double>(false, sizes, per_tensor);
  check_multi_tensor<double>(true, sizes, per_tensor);
}

// A list longer than one launch's argument holds goes out in several launches.
TEST(CudaOptimizerKernels, MoreTensorsThanOneLaunchHoldsAreSplit) {
  KD_REQUIRE_CUDA();
  // Small tensors keep the grid emulator quick; empties still fall out of the count.
  std::vector<int64_t> sizes;
  for (int i = 0; i < cuda::kMultiTensorChunk + 40; ++i) sizes.push_back(i % 7 == 3 ? 0 : 1 + i % 5);
  check_multi_tensor<float>(true, sizes, false);
  check_multi_tensor<double>(false, sizes, false);
}

}  // namespace
}  // namespace kd
