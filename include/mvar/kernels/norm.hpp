// mvar/kernels/norm.hpp — LayerNorm without affine (the transformer's ln_wo_grad), AdaLN
// modulation, and per-head L2 normalisation with the clamped temperature (SPEC §1.4, §1.5).
// Statistics are accumulated in double over one row: a row is ≤ 4096 values, so this costs
// nothing measurable and keeps the result within a float ulp of the float64 reference.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "mvar/core/assert.hpp"
#include "mvar/core/tensor_view.hpp"

namespace mvar {

/// y[r, :] = (x[r, :] − mean) / √(var + eps), biased variance. x and y may alias.
inline void layer_norm(TensorView<const float, 2> x, TensorView<float, 2> y, float eps = 1e-6f) {
  MVAR_ASSERT(x.extent(0) == y.extent(0) && x.extent(1) == y.extent(1));
  MVAR_ASSERT(x.stride(1) == 1 && y.stride(1) == 1);
  const auto n = x.extent(1);
  for (std::ptrdiff_t r = 0; r < x.extent(0); ++r) {
    const float* xr = x.row(r);
    float* yr = y.row(r);
    double s = 0, s2 = 0;
    for (std::ptrdiff_t i = 0; i < n; ++i) s += xr[i];
    const double mean = s / double(n);
    for (std::ptrdiff_t i = 0; i < n; ++i) {
      const double d = xr[i] - mean;
      s2 += d * d;
    }
    const float inv = float(1.0 / std::sqrt(s2 / double(n) + double(eps)));
    const float m = float(mean);
    for (std::ptrdiff_t i = 0; i < n; ++i) yr[i] = (xr[i] - m) * inv;
  }
}

/// y[r, :] = x[r, :] ⊙ (1 + scale) + shift, one (scale, shift) pair for all rows. x, y may alias.
inline void modulate(TensorView<const float, 2> x, const float* scale, const float* shift, TensorView<float, 2> y) {
  MVAR_ASSERT(x.stride(1) == 1 && y.stride(1) == 1);
  const auto n = x.extent(1);
  for (std::ptrdiff_t r = 0; r < x.extent(0); ++r) {
    const float* xr = x.row(r);
    float* yr = y.row(r);
    for (std::ptrdiff_t i = 0; i < n; ++i) yr[i] = xr[i] * (1.0f + scale[i]) + shift[i];
  }
}

/// The float32 value of ln 100, the clamp of the per-head log-temperature (SPEC §5.3.19).
inline constexpr float kLn100 = 4.605170249938965f;

/// In place over x[N, heads·head_dim]: each head's slice v ← v / max(‖v‖₂, 1e-12) · mult[h]
/// (mult = exp(min(scale_mul_h, ln 100)) for q, 1 for k).
inline void l2_normalize_heads(TensorView<float, 2> x, int heads, const float* mult) {
  MVAR_ASSERT(x.stride(1) == 1 && x.extent(1) % heads == 0);
  const auto hd = x.extent(1) / heads;
  for (std::ptrdiff_t r = 0; r < x.extent(0); ++r) {
    float* xr = x.row(r);
    for (int h = 0; h < heads; ++h) {
      float* v = xr + h * hd;
      double s = 0;
      for (std::ptrdiff_t i = 0; i < hd; ++i) s += double(v[i]) * v[i];
      const float f = float(1.0 / std::max(std::sqrt(s), 1e-12)) * (mult ? mult[h] : 1.0f);
      for (std::ptrdiff_t i = 0; i < hd; ++i) v[i] *= f;
    }
  }
}

/// GroupNorm over x[C, HW] (one image): `groups` groups of C/groups consecutive channels,
/// biased variance, eps, then per-channel affine weight/bias. x and y may alias.
inline void group_norm(TensorView<const float, 2> x, TensorView<float, 2> y, int groups, const float* weight,
                       const float* bias, float eps = 1e-6f) {
  MVAR_ASSERT(x.extent(0) % groups == 0);
  const auto C = x.extent(0), HW = x.extent(1), cg = C / groups;
  for (int g = 0; g < groups; ++g) {
    double s = 0, s2 = 0;
    for (std::ptrdiff_t c = g * cg; c < (g + 1) * cg; ++c)
      for (std::ptrdiff_t i = 0; i < HW; ++i) s += x(c, i);
    const double mean = s / double(cg * HW);
    for (std::ptrdiff_t c = g * cg; c < (g + 1) * cg; ++c)
      for (std::ptrdiff_t i = 0; i < HW; ++i) {
        const double d = x(c, i) - mean;
        s2 += d * d;
      }
    const float inv = float(1.0 / std::sqrt(s2 / double(cg * HW) + double(eps)));
    for (std::ptrdiff_t c = g * cg; c < (g + 1) * cg; ++c) {
      const float a = inv * weight[c], b = bias[c] - float(mean) * inv * weight[c];
      for (std::ptrdiff_t i = 0; i < HW; ++i) y(c, i) = x(c, i) * a + b;
    }
  }
}

}  // namespace mvar
