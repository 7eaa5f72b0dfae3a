// Linear CKA (centered kernel alignment, Kornblith et al. 2019), the representation-similarity
// metric of the paper's Table 1, computed exactly as the paper's code does (yuanli2333's CKA.py,
// linear_CKA): Gram matrices K = X X^T and L = Y Y^T over the n rows (examples), each centered on
// both sides with H = I - 11^T/n, HSIC(K, L) = sum_ij (HKH)_ij (HLH)_ij, and
//   CKA(X, Y) = HSIC(K, L) / sqrt(HSIC(K, K) * HSIC(L, L)).
// X is [n, p] and Y is [n, q]: the same n examples, any feature counts. Everything in double.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace kd {

// x: n*p row-major values, y: n*q. Throws kd::Error when n < 2 or when either side has no
// variance across the rows (HSIC(K, K) = 0: CKA is 0/0, undefined).
double linear_cka(const std::vector<double>& x, int64_t n, int64_t p,
                  const std::vector<double>& y, int64_t q);

// 2-D tensors of any floating dtype on any device (copied to the host and widened to double).
double linear_cka(const Tensor& x, const Tensor& y);

// The centered Gram matrix H (X X^T) H of x [n, p], n*n row-major: exposed for the tests.
std::vector<double> centered_gram(const std::vector<double>& x, int64_t n, int64_t p);

}  // namespace kd
