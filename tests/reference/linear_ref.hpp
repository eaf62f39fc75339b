// tests/reference/linear_ref.hpp — naive dense layer for tests: y = x·wᵀ + b with plain loops and
// double accumulation (the "exact" answer the fp32 kernels are compared with), plus the error
// bound each product should meet.
#pragma once

#include <cmath>
#include <cstddef>

#include "mvar/core/tensor_view.hpp"

namespace mvar::ref {

/// y[m, n] = Σ_k x[m, k]·w[n, k] (+ bias[n]) in double; also returns, through abs_dot (if not
/// null, same shape as y), Σ_k |x[m, k]·w[n, k]| + |bias[n]|, the scale of the rounding error.
inline void linear(TensorView<const float, 2> x, TensorView<const float, 2> w, const float* bias,
                   TensorView<double, 2> y, TensorView<double, 2>* abs_dot = nullptr) {
  const std::ptrdiff_t M = x.extent(0), K = x.extent(1), N = w.extent(0);
  for (std::ptrdiff_t m = 0; m < M; ++m)
    for (std::ptrdiff_t n = 0; n < N; ++n) {
      double s = 0, a = 0;
      for (std::ptrdiff_t k = 0; k < K; ++k) {
        const double p = double(x(m, k)) * double(w(n, k));
        s += p;
        a += std::fabs(p);
      }
      if (bias) {
        s += bias[n];
        a += std::fabs(double(bias[n]));
      }
      y(m, n) = s;
      if (abs_dot) (*abs_dot)(m, n) = a;
    }
}

/// The same loops in float, k in order — the "naive triple loop" the benchmarks compare with.
inline void linear_naive_f32(TensorView<const float, 2> x, TensorView<const float, 2> w,
                             const float* bias, TensorView<float, 2> y) {
  const std::ptrdiff_t M = x.extent(0), K = x.extent(1), N = w.extent(0);
  for (std::ptrdiff_t m = 0; m < M; ++m) {
    const float* xr = x.row(m);
    for (std::ptrdiff_t n = 0; n < N; ++n) {
      const float* wr = w.row(n);
      float s = 0;
      for (std::ptrdiff_t k = 0; k < K; ++k) s += xr[k] * wr[k];
      y(m, n) = bias ? s + bias[n] : s;
    }
  }
}

}  // namespace mvar::ref
