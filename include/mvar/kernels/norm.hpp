// mvar/kernels/norm.hpp — LayerNorm without affine (the transformer's ln_wo_grad), AdaLN
// modulation, per-head L2 normalisation with the clamped temperature (SPEC §1.4, §1.5), and the
// VQVAE's GroupNorm (+ SiLU) that writes a convolution's padded input planes (SPEC §2.1).
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
#include "mvar/core/parallel.hpp"
#include "mvar/core/tensor_view.hpp"
#include "mvar/kernels/activations.hpp"
#include "mvar/kernels/lane_sum.hpp"
#include "mvar/kernels/padded_image.hpp"

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

/// The GroupNorm of the VQVAE (SPEC §2.1; official `nn.GroupNorm(32, C, eps=1e-6)`): `groups`
/// groups of C/groups consecutive channels, biased variance, per-channel affine weight / bias.
/// One implementation, used by the decoder, the encoder and group_norm() below:
///   statistics — per group, rows of ≤ 64k floats summed in float lanes (xsimd, lane_sum) and
///   accumulated in double; the variance is a second pass over deviations from the float mean,
///   corrected by the (double − float) mean difference; 1/√(var + eps) in double.
///   apply — y = x·a + b with a = inv·weight, b = bias − mean·inv·weight (float, one FMA).
/// Groups run in parallel (each writes its own pair), so any thread count gives the same bits.
namespace detail {

/// Per-group mean and 1/√(var + eps) of x [C, N] (contiguous rows).
inline void group_stats(ThreadPool& pool, TensorView<const float, 2> x, int groups, double eps, double* mean,
                        double* inv_std) {
  using B = xsimd::batch<float>;
  const std::ptrdiff_t C = x.extent(0), N = x.extent(1), cg = C / groups;
  MVAR_ASSERT(C % groups == 0 && x.stride(1) == 1);
  constexpr std::ptrdiff_t L = static_cast<std::ptrdiff_t>(B::size);
  const std::ptrdiff_t body = N - N % L;
  parallel_for(pool, groups, 1, [&](std::ptrdiff_t g0, std::ptrdiff_t g1) {
    for (std::ptrdiff_t g = g0; g < g1; ++g) {
      double s = 0;
      for (std::ptrdiff_t c = g * cg; c < (g + 1) * cg; ++c) {
        const float* r = x.row(c);
        B acc(0.0f);
        for (std::ptrdiff_t i = 0; i < body; i += L) acc += B::load_unaligned(r + i);
        double rs = lane_sum(acc);
        for (std::ptrdiff_t i = body; i < N; ++i) rs += r[i];
        s += rs;
      }
      const double m = s / double(cg * N);
      const float mf = float(m);
      double s2 = 0;
      for (std::ptrdiff_t c = g * cg; c < (g + 1) * cg; ++c) {
        const float* r = x.row(c);
        B acc(0.0f);
        const B mb(mf);
        for (std::ptrdiff_t i = 0; i < body; i += L) {
          const B d = B::load_unaligned(r + i) - mb;
          acc = xsimd::fma(d, d, acc);
        }
        double rs = lane_sum(acc);
        for (std::ptrdiff_t i = body; i < N; ++i) rs += double(r[i] - mf) * double(r[i] - mf);
        s2 += rs;
      }
      // Centre on the float mean: Σ(x − m_f)² = Σ(x − m)² + n(m − m_f)²; remove the second term.
      const double dm = m - double(mf);
      const double var = std::max(0.0, s2 / double(cg * N) - dm * dm);
      mean[g] = m;
      inv_std[g] = 1.0 / std::sqrt(var + eps);
    }
  });
}

}  // namespace detail

/// Largest group count group_norm_into / group_norm accept (the VAE uses 32).
inline constexpr int kMaxNormGroups = 256;

// GCC 12 reports -Wmaybe-uninitialized inside its own AVX-512 intrinsics (_mm512_undefined_ps) when
// xsimd's exp is inlined here; a false positive, silenced for this function only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
/// dst = act(GroupNorm(x)) with act = SiLU (silu_after) or identity; x [C, H, W] contiguous, dst
/// [C, H, W] with unit column stride (e.g. a PaddedImage's interior). on_channel(c), if given, runs
/// right after channel c is written, on the same thread (the VAE zeroes the padded border there).
template <class OnChannel>
void group_norm_into(ThreadPool& pool, TensorView<const float, 3> x, int groups, const float* weight, const float* bias,
                     double eps, bool silu_after, TensorView<float, 3> dst, const OnChannel& on_channel) {
  using B = xsimd::batch<float>;
  const std::ptrdiff_t C = x.extent(0), H = x.extent(1), W = x.extent(2);
  MVAR_ASSERT(x.is_contiguous() && groups >= 1 && groups <= kMaxNormGroups && C % groups == 0);
  MVAR_ASSERT(dst.extent(0) == C && dst.extent(1) == H && dst.extent(2) == W && dst.stride(2) == 1);
  double mean[kMaxNormGroups], inv[kMaxNormGroups];
  detail::group_stats(pool, x.template reshape<2>({C, H * W}), groups, eps, mean, inv);
  const std::ptrdiff_t cg = C / groups;
  constexpr std::ptrdiff_t L = static_cast<std::ptrdiff_t>(B::size);
  const std::ptrdiff_t body = W - W % L;
  parallel_for(pool, C, 4, [&](std::ptrdiff_t c0, std::ptrdiff_t c1) {
    for (std::ptrdiff_t c = c0; c < c1; ++c) {
      const auto g = c / cg;
      const float a = float(inv[g] * weight[c]);
      const float b = float(bias[c] - mean[g] * inv[g] * weight[c]);
      const B av(a), bv(b);
      for (std::ptrdiff_t y = 0; y < H; ++y) {
        const float* s = &x(c, y, 0);
        float* d = &dst(c, y, 0);
        std::ptrdiff_t i = 0;
        if (silu_after) {
          for (; i < body; i += L) silu(xsimd::fma(B::load_unaligned(s + i), av, bv)).store_unaligned(d + i);
          for (; i < W; ++i) d[i] = silu(s[i] * a + b);
        } else {
          for (; i < body; i += L) xsimd::fma(B::load_unaligned(s + i), av, bv).store_unaligned(d + i);
          for (; i < W; ++i) d[i] = s[i] * a + b;
        }
      }
      on_channel(c);
    }
  });
}
#pragma GCC diagnostic pop

/// out.interior() = act(GroupNorm(x)), and out's borders zeroed: the producer of a convolution's
/// padded input planes (kernels/conv.hpp).
inline void group_norm_to_planes(ThreadPool& pool, TensorView<const float, 3> x, int groups, const float* weight,
                                 const float* bias, double eps, bool silu_after, const PaddedImage& out) {
  MVAR_ASSERT(out.channels() == x.extent(0) && out.height() == x.extent(1) && out.width() == x.extent(2));
  group_norm_into(pool, x, groups, weight, bias, eps, silu_after, out.interior(),
                  [&](std::ptrdiff_t c) { out.zero_border(c); });
}

/// y = GroupNorm(x) over x [C, HW] (one image), single-threaded; contiguous x, y with unit column
/// stride (may alias x). The same arithmetic as group_norm_into.
inline void group_norm(TensorView<const float, 2> x, TensorView<float, 2> y, int groups, const float* weight,
                       const float* bias, double eps = 1e-6) {
  MVAR_ASSERT(x.extent(0) == y.extent(0) && x.extent(1) == y.extent(1));
  ThreadPool serial(1);
  const std::ptrdiff_t C = x.extent(0), N = x.extent(1);
  group_norm_into(serial, x.template reshape<3>({C, 1, N}), groups, weight, bias, eps, false,
                  TensorView<float, 3>(y.data(), {C, 1, N}, {y.stride(0), N, y.stride(1)}), [](std::ptrdiff_t) {});
}

}  // namespace mvar
