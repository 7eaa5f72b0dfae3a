// Linear CKA (see cka.h). The Gram form is kept (rather than the cheaper feature-space form
// ||Yc^T Xc||_F^2) so that the code reads as the paper's formula; n is a test batch (128), so the
// n x n matrices are small.
#include "engine/cka.h"

#include <cmath>

namespace kd {

std::vector<double> centered_gram(const std::vector<double>& x, int64_t n, int64_t p) {
  KD_CHECK(n >= 1 && p >= 1 && int64_t(x.size()) == n * p,
           "centered_gram: " << x.size() << " values for [" << n << ", " << p << "]");
  std::vector<double> gram(size_t(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) {
      double dot = 0;
      for (int64_t k = 0; k < p; ++k) dot += x[size_t(i * p + k)] * x[size_t(j * p + k)];
      gram[size_t(i * n + j)] = gram[size_t(j * n + i)] = dot;
    }
  // H K H with H = I - 11^T/n: subtract each row's mean and each column's mean, add back the
  // grand mean (K is symmetric, so row and column means coincide).
  std::vector<double> mean(size_t(n), 0.0);
  double grand = 0;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) mean[size_t(i)] += gram[size_t(i * n + j)];
    grand += mean[size_t(i)];
    mean[size_t(i)] /= double(n);
  }
  grand /= double(n) * double(n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      gram[size_t(i * n + j)] += grand - mean[size_t(i)] - mean[size_t(j)];
  return gram;
}

namespace {
// sum_ij A_ij B_ij: HSIC of two centered Gram matrices (the normalisation by (n-1)^2 cancels in
// the CKA ratio, as in the paper's code, which omits it).
double hsic(const std::vector<double>& a, const std::vector<double>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += a[i] * b[i];
  return sum;
}
}  // namespace

double linear_cka(const std::vector<double>& x, int64_t n, int64_t p,
                  const std::vector<double>& y, int64_t q) {
  KD_CHECK(n >= 2, "linear_cka: needs at least 2 examples, got " << n);
  std::vector<double> kx = centered_gram(x, n, p);
  std::vector<double> ky = centered_gram(y, n, q);
  const double xx = hsic(kx, kx), yy = hsic(ky, ky);
  KD_CHECK(xx > 0 && yy > 0, "linear_cka: a representation has no variance across the "
                                 << n << " examples (CKA is undefined)");
  return hsic(kx, ky) / (std::sqrt(xx) * std::sqrt(yy));
}

double linear_cka(const Tensor& x, const Tensor& y) {
  KD_CHECK(x.dim() == 2 && y.dim() == 2 && x.size(0) == y.size(0),
           "linear_cka: expected [n, p] and [n, q], got " << describe(x) << " and " << describe(y));
  auto as_double = [](const Tensor& t) {
    KD_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64,
             "linear_cka: expected floating features, got " << describe(t));
    if (t.dtype() == DType::F64) return t.to_vector<double>();
    const std::vector<float> values = t.to_vector<float>();  // exact widening below
    return std::vector<double>(values.begin(), values.end());
  };
  return linear_cka(as_double(x), x.size(0), x.size(1), as_double(y), y.size(1));
}

}  // namespace kd
