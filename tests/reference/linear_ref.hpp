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

// fp32 error budget. Any summation order of the K products and the bias (K + 1 terms, FMA or
// not) is within γ_{K+1} · Σ|terms| of the exact sum, γ_n = n·u / (1 − n·u), u = 2⁻²⁴ (Higham,
// "Accuracy and Stability of Numerical Algorithms", §3.1). The bound is rigorous, so it never
// fails a correct kernel; a wrong kernel (a dropped, duplicated or misplaced product) errs by
// about Σ|terms| / K, which is larger than γ_{K+1} · Σ|terms| for every K tested (≤ 1031:
// 1/K ≥ 9.7e-4 vs γ ≤ 6.2e-5).
inline constexpr double kUnitRoundoff = 0x1p-24;
inline double fp32_bound(std::ptrdiff_t K, double abs_sum) {
  const double n = double(K + 1);
  return n * kUnitRoundoff / (1 - n * kUnitRoundoff) * abs_sum;
}

// bf16 budget (PackedLinear, Precision::BF16): x and w are each rounded to bf16 (8 significant
// bits, round to nearest even: relative error ≤ u_bf16 = 2⁻⁸), so each product is off by
// ≤ ((1 + u_bf16)² − 1)·|x·w|; the products (exact in fp32: 8 × 8 significant bits) are then
// summed in fp32 (γ_{K+1} as above, on magnitudes ≤ (1 + u_bf16)²·|x·w|). Rigorous again; a
// dropped product errs by ~Σ|terms|/K, above this budget (≈ 7.8e-3) only for K < 128 — so the
// sharp bf16 shapes keep K ≤ 64; the d16 shapes (K = 1024, 4096) check the bound only.
inline constexpr double kBf16Roundoff = 0x1p-8;
inline double bf16_bound(std::ptrdiff_t K, double abs_sum) {
  const double g = (1 + kBf16Roundoff) * (1 + kBf16Roundoff);
  return (g - 1) * abs_sum + fp32_bound(K, g * abs_sum);
}

}  // namespace mvar::ref
