// Helpers shared by the kernel tests (tests/test_*_kernels.cpp), which work on raw arrays with no
// engine types: seeded random inputs from the test stream, tolerance and bitwise comparisons,
// central-difference gradient error in double, and running code under several OpenMP thread
// counts.
#pragma once
#include <cblas.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "kernels/bf16.h"
#include "kernels/conv2d.h"
#include "kernels/metrics.h"
#include "base/philox.h"

namespace kd {
namespace kernel_testing {

// Under ThreadSanitizer (the grid-tsan tests, KDLAB_GRID_TSAN_BUILD) every access is
// instrumented and a kernel test runs about ten times slower than on the plain grid emulator. A
// race does not depend on how big a shape is, so there the slowest suites keep the first `quick`
// shapes of their list, which hold the awkward ones (tails, partial warps and tiles, uneven
// split-K); everywhere else they run them all. A convolution there also runs one image: the
// batch only lengthens the rows of the data passes and the reduction of the weight pass, whose
// split-K slices stay uneven (the 13x11 image's 143 = 64 + 64 + 15).
#if defined(KDLAB_GRID_TSAN_BUILD)
constexpr bool kRaceCheckBuild = true;
#else
constexpr bool kRaceCheckBuild = false;
#endif
template <class S>
S race_check_shape(const S& s) {
  return s;
}
inline ConvGeom race_check_shape(const ConvGeom& g) {
  ConvGeom one = g;
  one.n = std::min(g.n, 1);
  return one;
}
template <class S>
std::vector<S> shapes_for_build(const std::vector<S>& all, size_t quick) {
  if (!kRaceCheckBuild) return all;
  std::vector<S> out;
  for (size_t i = 0; i < all.size() && i < quick; ++i) out.push_back(race_check_shape(all[i]));
  return out;
}

// Convolution geometries for the conv tests (CPU, CUDA and the CUDA index maths), and their
// one-line description for failure messages.
inline ConvGeom geom(int n, int c, int h, int w, int k, int r, int s, int stride, int pad) {
  ConvGeom g;
  g.n = n, g.c = c, g.h = h, g.w = w, g.k = k, g.r = r, g.s = s, g.stride = stride, g.pad = pad;
  return g;
}
inline std::string describe(const ConvGeom& g) {
  return "n" + std::to_string(g.n) + " c" + std::to_string(g.c) + " " + std::to_string(g.h) + "x" +
         std::to_string(g.w) + " k" + std::to_string(g.k) + " " + std::to_string(g.r) + "x" +
         std::to_string(g.s) + " stride" + std::to_string(g.stride) + " pad" +
         std::to_string(g.pad);
}

// Runs a test as the engine runs the kernels (OpenBLAS single-threaded, OpenMP carrying the
// threads) and restores both thread counts when the test ends.
struct EngineThreading {
  int omp = omp_get_max_threads(), blas = openblas_get_num_threads();
  EngineThreading() { openblas_set_num_threads(1); }
  ~EngineThreading() {
    omp_set_num_threads(omp);
    openblas_set_num_threads(blas);
  }
};

// Uniform values in [lo, hi), drawn in double and rounded to T; `seed` separates arrays.
template <class T>
std::vector<T> uniform(size_t n, uint64_t seed, double lo, double hi) {
  std::vector<T> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = T(lo + (hi - lo) * philox_uniform_double(seed, kStreamTest, i));
  return v;
}

inline std::vector<int32_t> random_labels(int rows, int cols, uint64_t seed) {
  std::vector<int32_t> l(rows);
  for (int r = 0; r < rows; ++r) l[r] = int32_t(philox_below(seed, kStreamTest, r, cols));
  return l;
}

// |got - want| <= tol * max(1, |want|) everywhere; reports the first offending index.
template <class T>
void expect_close(const std::vector<T>& got, const std::vector<T>& want, double tol,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    const double scale = std::max(1.0, std::fabs(double(want[i])));
    ASSERT_LE(std::fabs(double(got[i]) - double(want[i])), tol * scale)
        << what << " at " << i << ": got " << got[i] << " want " << want[i];
  }
}

// max |got - want| <= tol * max(1, max |want|): for algorithms whose rounding error scales with
// the largest value rather than each element's own (Winograd convolutions, on our CPU and in
// cuDNN), where a small element may carry an error large for itself.
// NaN in got counts as the worst error.
template <class T, class U>
void expect_close_to_scale(const std::vector<T>& got, const std::vector<U>& want, double tol,
                           const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 1.0, worst = 0.0;
  size_t at = 0;
  for (const U& v : want) scale = std::max(scale, std::fabs(double(v)));
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(double(got[i]) - double(want[i]));
    if (!(err <= worst)) worst = err, at = i;
  }
  EXPECT_LE(worst, tol * scale) << what << " at " << at << ": got " << double(got[at])
                                << " want " << double(want[at]);
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

// A failure naming the first element whose bits differ.
template <class T>
void expect_bitwise(const std::vector<T>& a, const std::vector<T>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) {
      ADD_FAILURE() << what << ": element " << i << " differs: " << a[i] << " vs " << b[i];
      return;
    }
}

// The CPU convolution algorithm (--cpu-conv) for this scope.
class ScopedConvAlgorithm {
 public:
  explicit ScopedConvAlgorithm(cpu::ConvAlgorithm a) : saved_(cpu::conv_algorithm()) {
    cpu::set_conv_algorithm(a);
  }
  ~ScopedConvAlgorithm() { cpu::set_conv_algorithm(saved_); }

 private:
  cpu::ConvAlgorithm saved_;
};

// Float operands of one convolution, uniform in [-1, 1]: x, w, bias and a dy of y's shape.
struct ConvProblem {
  std::vector<float> x, w, bias, dy;
};
inline size_t conv_x_size(const ConvGeom& g) { return size_t(g.n) * g.c * g.h * g.w; }
inline size_t conv_w_size(const ConvGeom& g) { return size_t(g.k) * g.c * g.r * g.s; }
inline size_t conv_y_size(const ConvGeom& g) { return size_t(g.n) * g.k * g.p() * g.q(); }
inline ConvProblem conv_problem(const ConvGeom& g) {
  return {uniform<float>(conv_x_size(g), 1, -1, 1), uniform<float>(conv_w_size(g), 2, -1, 1),
          uniform<float>(size_t(g.k), 3, -1, 1), uniform<float>(conv_y_size(g), 4, -1, 1)};
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// ||numeric - analytic|| / ||numeric||, numeric by central differences of f at x with h = 1e-6.
inline double gradient_error(const std::function<double(const std::vector<double>&)>& f,
                             const std::vector<double>& x, const std::vector<double>& analytic) {
  const double h = 1e-6;
  double err2 = 0, num2 = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    std::vector<double> xp = x, xm = x;
    xp[i] += h;
    xm[i] -= h;
    const double numeric = (f(xp) - f(xm)) / (2 * h);
    err2 += (numeric - analytic[i]) * (numeric - analytic[i]);
    num2 += numeric * numeric;
  }
  return std::sqrt(err2 / num2);
}

// Runs f(threads) under 1, 2 and 3 OpenMP threads (3 > cores on small machines, an uneven split),
// then restores the previous setting.
inline void for_thread_counts(const std::function<void(int)>& f) {
  const int saved = omp_get_max_threads();
  for (int t : {1, 2, 3}) {
    omp_set_num_threads(t);
    f(t);
  }
  omp_set_num_threads(saved);
}

// ClassifierStats holds only 8-byte fields, so there is no padding to compare.
inline bool same_bits(const ClassifierStats& a, const ClassifierStats& b) {
  static_assert(sizeof(ClassifierStats) == 8 * (5 + 3 * kEceBins), "unexpected padding");
  return std::memcmp(&a, &b, sizeof(ClassifierStats)) == 0;
}

// The per-row values as the CPU computes them (kernels/metrics.h).
template <class T>
inline std::vector<double> cpu_row_stats(int rows, int cols, const std::vector<T>& logits,
                                         const std::vector<int32_t>& labels, const T* teacher) {
  std::vector<double> out(size_t(rows) * kRowStatFields);
  cpu::classifier_row_stats<T>(rows, cols, logits.data(), labels.data(), teacher, out.data());
  return out;
}

// A batch's ClassifierStats the way evaluation builds them: a backend's per-row values, folded.
template <class T, class RowStats>
inline void classifier_stats(RowStats row_stats, int rows, int cols, const T* logits,
                             const int32_t* labels, const T* teacher, ClassifierStats* stats) {
  std::vector<double> per_row(size_t(rows > 0 ? rows : 0) * kRowStatFields);
  row_stats(rows, cols, logits, labels, teacher, per_row.data());
  fold_row_stats(rows, per_row.data(), teacher != nullptr, stats);
}

// The loss contract writes the value to a one-element array and reads the upstream gradient
// from one (kernels/loss.h); host tests call it with plain values through these.
template <class T, class Fn, class... A>
T value_of(Fn fn, A... args) {
  T out{};
  fn(args..., &out);
  return out;
}
template <class T>
struct Scalar {
  T value;
  const T* ptr() const { return &value; }  // valid until the end of the full expression
};

// bf16 arrays for the _bf16 kernels' tests: values rounded once (kernels/bf16.h), widened
// exactly, and their bits for a bitwise comparison.
template <class T>
std::vector<bf16> rounded(const std::vector<T>& v) {
  std::vector<bf16> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = to_bf16_rn(v[i]);
  return out;
}
template <class T>
std::vector<T> widened(const std::vector<bf16>& v) {
  std::vector<T> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = bf16_to<T>(v[i]);
  return out;
}
inline std::vector<uint16_t> bits(const std::vector<bf16>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = v[i].bits;
  return out;
}

}  // namespace kernel_testing
}  // namespace kd
