// mvar/kernels/norm.hpp — LayerNorm without affine (the transformer's ln_wo_grad), AdaLN
// modulation, and per-head L2 normalisation with the clamped temperature (SPEC §1.4, §1.5).
// Vectorised with xsimd: sums run in four fp32 batch accumulators per row (each lane adds only
// n/(4·lanes) terms) and are combined in double; the variance is a second pass over deviations
// from the mean, so the statistics stay within ≈ 1e-7 relative of a float64 computation.
//
// Template parameter Arch: xsimd architecture (default: what the consumer's flags enable).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <utility>

#include <xsimd/xsimd.hpp>

#include "mvar/core/assert.hpp"
#include "mvar/core/tensor_view.hpp"

namespace mvar {

namespace detail {

/// Σ x[i] and Σ (x[i] − c)² over n contiguous floats, vectorised with four independent batch
/// accumulators (each lane sums ≤ n / (4·lanes) terms, so the fp32 rounding stays ≈ 1e-7 relative
/// for rows of a few thousand); the lanes are combined in double.
template <class Arch>
double sum(const float* x, std::ptrdiff_t n) {
  using V = xsimd::batch<float, Arch>;
  constexpr std::ptrdiff_t L = V::size;
  V a0(0.f), a1(0.f), a2(0.f), a3(0.f);
  std::ptrdiff_t i = 0;
  for (; i + 4 * L <= n; i += 4 * L) {
    a0 += V::load_unaligned(x + i);
    a1 += V::load_unaligned(x + i + L);
    a2 += V::load_unaligned(x + i + 2 * L);
    a3 += V::load_unaligned(x + i + 3 * L);
  }
  double s = double(xsimd::hadd(a0)) + double(xsimd::hadd(a1)) + double(xsimd::hadd(a2)) + double(xsimd::hadd(a3));
  for (; i < n; ++i) s += x[i];
  return s;
}

template <class Arch>
double sum_sq_dev(const float* x, std::ptrdiff_t n, float c) {
  using V = xsimd::batch<float, Arch>;
  constexpr std::ptrdiff_t L = V::size;
  const V vc(c);
  V a0(0.f), a1(0.f), a2(0.f), a3(0.f);
  std::ptrdiff_t i = 0;
  for (; i + 4 * L <= n; i += 4 * L) {
    const V d0 = V::load_unaligned(x + i) - vc, d1 = V::load_unaligned(x + i + L) - vc;
    const V d2 = V::load_unaligned(x + i + 2 * L) - vc, d3 = V::load_unaligned(x + i + 3 * L) - vc;
    a0 = xsimd::fma(d0, d0, a0);
    a1 = xsimd::fma(d1, d1, a1);
    a2 = xsimd::fma(d2, d2, a2);
    a3 = xsimd::fma(d3, d3, a3);
  }
  double s = double(xsimd::hadd(a0)) + double(xsimd::hadd(a1)) + double(xsimd::hadd(a2)) + double(xsimd::hadd(a3));
  for (; i < n; ++i) s += double(x[i] - c) * double(x[i] - c);
  return s;
}

/// y[i] = (x[i] − c)·a + b over n contiguous floats (x and y may alias). Centring first keeps
/// the small deviations exact instead of cancelling x·a against −c·a.
template <class Arch>
void centre_scale(const float* x, float* y, std::ptrdiff_t n, float c, float a, float b) {
  using V = xsimd::batch<float, Arch>;
  constexpr std::ptrdiff_t L = V::size;
  std::ptrdiff_t i = 0;
  for (; i + L <= n; i += L) xsimd::fma(V::load_unaligned(x + i) - V(c), V(a), V(b)).store_unaligned(y + i);
  for (; i < n; ++i) y[i] = std::fma(x[i] - c, a, b);
}

/// Mean and 1/√(var + eps) of n floats: two passes (mean, then squared deviations from the fp32
/// mean, corrected by the mean of the deviations), statistics in double.
template <class Arch>
std::pair<float, float> mean_inv_std(const float* x, std::ptrdiff_t n, double eps) {
  const double mean = sum<Arch>(x, n) / double(n);
  const float m = float(mean);
  const double dm = mean - double(m);  // what the fp32 centre misses
  const double var = sum_sq_dev<Arch>(x, n, m) / double(n) - dm * dm;
  return {m, float(1.0 / std::sqrt(std::max(var, 0.0) + eps))};
}

}  // namespace detail

/// y[r, :] = (x[r, :] − mean) / √(var + eps), biased variance. x and y may alias.
template <class Arch = xsimd::default_arch>
void layer_norm(TensorView<const float, 2> x, TensorView<float, 2> y, float eps = 1e-6f) {
  MVAR_ASSERT(x.extent(0) == y.extent(0) && x.extent(1) == y.extent(1));
  MVAR_ASSERT(x.stride(1) == 1 && y.stride(1) == 1);
  const auto n = x.extent(1);
  for (std::ptrdiff_t r = 0; r < x.extent(0); ++r) {
    const float* xr = x.row(r);
    const auto [m, inv] = detail::mean_inv_std<Arch>(xr, n, double(eps));
    detail::centre_scale<Arch>(xr, y.row(r), n, m, inv, 0.0f);
  }
}

/// y[r, :] = x[r, :] ⊙ (1 + scale) + shift, one (scale, shift) pair for all rows. x, y may alias.
template <class Arch = xsimd::default_arch>
void modulate(TensorView<const float, 2> x, const float* scale, const float* shift, TensorView<float, 2> y) {
  using V = xsimd::batch<float, Arch>;
  constexpr std::ptrdiff_t L = V::size;
  MVAR_ASSERT(x.stride(1) == 1 && y.stride(1) == 1);
  MVAR_ASSERT(x.extent(0) == y.extent(0) && x.extent(1) == y.extent(1));
  const auto n = x.extent(1);
  for (std::ptrdiff_t r = 0; r < x.extent(0); ++r) {
    const float* xr = x.row(r);
    float* yr = y.row(r);
    std::ptrdiff_t i = 0;
    for (; i + L <= n; i += L)
      xsimd::fma(V::load_unaligned(xr + i), V::load_unaligned(scale + i) + V(1.0f), V::load_unaligned(shift + i))
          .store_unaligned(yr + i);
    for (; i < n; ++i) yr[i] = std::fma(xr[i], scale[i] + 1.0f, shift[i]);
  }
}

/// The float32 value of ln 100, the clamp of the per-head log-temperature (SPEC §5.3.19).
inline constexpr float kLn100 = 4.605170249938965f;

/// In place over x[N, heads·head_dim]: each head's slice v ← v / max(‖v‖₂, 1e-12) · mult[h]
/// (mult = exp(min(scale_mul_h, ln 100)) for q, 1 for k; mult == nullptr means all 1).
template <class Arch = xsimd::default_arch>
void l2_normalize_heads(TensorView<float, 2> x, int heads, const float* mult) {
  using V = xsimd::batch<float, Arch>;
  constexpr std::ptrdiff_t L = V::size;
  MVAR_ASSERT(x.stride(1) == 1 && x.extent(1) % heads == 0);
  const auto hd = x.extent(1) / heads;
  for (std::ptrdiff_t r = 0; r < x.extent(0); ++r) {
    float* xr = x.row(r);
    for (int h = 0; h < heads; ++h) {
      float* v = xr + h * hd;
      V a(0.f);
      std::ptrdiff_t i = 0;
      for (; i + L <= hd; i += L) {
        const V t = V::load_unaligned(v + i);
        a = xsimd::fma(t, t, a);
      }
      double s = xsimd::hadd(a);
      for (; i < hd; ++i) s += double(v[i]) * v[i];
      const float f = float(1.0 / std::max(std::sqrt(s), 1e-12)) * (mult ? mult[h] : 1.0f);
      i = 0;
      for (; i + L <= hd; i += L) (V::load_unaligned(v + i) * V(f)).store_unaligned(v + i);
      for (; i < hd; ++i) v[i] *= f;
    }
  }
}

/// GroupNorm over x[C, HW] (one image): `groups` groups of C/groups consecutive channels,
/// biased variance, eps, then per-channel affine weight/bias. x and y may alias.
/// Vectorised when HW is the unit-stride axis of both views (the VAE's NCHW activations).
template <class Arch = xsimd::default_arch>
void group_norm(TensorView<const float, 2> x, TensorView<float, 2> y, int groups, const float* weight,
                const float* bias, float eps = 1e-6f) {
  MVAR_ASSERT(x.extent(0) % groups == 0);
  MVAR_ASSERT(x.extent(0) == y.extent(0) && x.extent(1) == y.extent(1));
  const auto C = x.extent(0), HW = x.extent(1), cg = C / groups;
  const bool dense = x.stride(1) == 1 && y.stride(1) == 1;
  for (int g = 0; g < groups; ++g) {
    double s = 0, s2 = 0;
    for (std::ptrdiff_t c = g * cg; c < (g + 1) * cg; ++c) {
      if (dense) {
        s += detail::sum<Arch>(x.row(c), HW);
      } else {
        for (std::ptrdiff_t i = 0; i < HW; ++i) s += x(c, i);
      }
    }
    const double mean = s / double(cg * HW);
    const float m = float(mean);
    for (std::ptrdiff_t c = g * cg; c < (g + 1) * cg; ++c) {
      if (dense) {
        s2 += detail::sum_sq_dev<Arch>(x.row(c), HW, m);
      } else {
        for (std::ptrdiff_t i = 0; i < HW; ++i) s2 += double(x(c, i) - m) * double(x(c, i) - m);
      }
    }
    const double dm = mean - double(m);
    const double var = s2 / double(cg * HW) - dm * dm;
    const float inv = float(1.0 / std::sqrt(std::max(var, 0.0) + double(eps)));
    for (std::ptrdiff_t c = g * cg; c < (g + 1) * cg; ++c) {
      const float a = inv * weight[c];
      if (dense) {
        detail::centre_scale<Arch>(x.row(c), y.row(c), HW, m, a, bias[c]);
      } else {
        for (std::ptrdiff_t i = 0; i < HW; ++i) y(c, i) = std::fma(x(c, i) - m, a, bias[c]);
      }
    }
  }
}

}  // namespace mvar
