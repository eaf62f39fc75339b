// tests/reference/vae_ref.hpp — naive float64 references for the VQVAE side: 2-D convolution
// (cross-correlation, zero padding), bicubic and area resampling written straight from SPEC §5.1/§5.2,
// GroupNorm, SiLU and the decoder's single-head attention block. Plain loops, no blocking, no SIMD:
// obviously correct and slow. Images are [C, H, W] row-major std::vectors.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace mvar::ref {

/// out[co, y, x] = b[co] + Σ_ci Σ_ky Σ_kx w[co, ci, ky, kx] · in[ci, y + ky − pad, x + kx − pad].
inline std::vector<double> conv2d(const std::vector<float>& in, int ci, int h, int w, const std::vector<float>& wt,
                                  const std::vector<float>& bias, int co, int k) {
  const int pad = k / 2;
  std::vector<double> out(std::size_t(co) * h * w);
  for (int o = 0; o < co; ++o)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        double s = bias.empty() ? 0.0 : bias[o];
        for (int c = 0; c < ci; ++c)
          for (int ky = 0; ky < k; ++ky)
            for (int kx = 0; kx < k; ++kx) {
              const int yy = y + ky - pad, xx = x + kx - pad;
              if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
              s += double(wt[((std::size_t(o) * ci + c) * k + ky) * k + kx]) * in[(std::size_t(c) * h + yy) * w + xx];
            }
        out[(std::size_t(o) * h + y) * w + x] = s;
      }
  return out;
}

/// Keys cubic kernel, A = −0.75, evaluated at distance d (SPEC §5.1's K1/K2 pieces).
inline double keys_cubic(double d) {
  const double A = -0.75;
  d = std::abs(d);
  if (d <= 1) return ((A + 2) * d - (A + 3)) * d * d + 1;
  if (d < 2) return ((A * d - 5 * A) * d + 8 * A) * d - 4 * A;
  return 0;
}

/// Bicubic resize [C, h, w] → [C, H, W], align_corners = False, border clamp, in float64.
inline std::vector<double> bicubic(const std::vector<float>& in, int C, int h, int w, int H, int W) {
  std::vector<double> out(std::size_t(C) * H * W);
  auto axis = [](int o, int n_in, int n_out, int k, int& idx) {
    const double src = (o + 0.5) * double(n_in) / double(n_out) - 0.5;
    const int i0 = int(std::floor(src));
    idx = std::clamp(i0 - 1 + k, 0, n_in - 1);
    return keys_cubic(src - (i0 - 1 + k));
  };
  for (int c = 0; c < C; ++c)
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        double s = 0;
        for (int ky = 0; ky < 4; ++ky) {
          int iy, ix;
          const double wy = axis(y, h, H, ky, iy);
          for (int kx = 0; kx < 4; ++kx) {
            const double wx = axis(x, w, W, kx, ix);
            s += wy * wx * in[(std::size_t(c) * h + iy) * w + ix];
          }
        }
        out[(std::size_t(c) * H + y) * W + x] = s;
      }
  return out;
}

/// Area (adaptive average) resize [C, H, W] → [C, h, w]: cell i averages [⌊iH/h⌋, ⌈(i+1)H/h⌉).
inline std::vector<double> area(const std::vector<float>& in, int C, int H, int W, int h, int w) {
  std::vector<double> out(std::size_t(C) * h * w);
  for (int c = 0; c < C; ++c)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        const int y0 = int(std::floor(double(y) * H / h)), y1 = int(std::ceil(double(y + 1) * H / h));
        const int x0 = int(std::floor(double(x) * W / w)), x1 = int(std::ceil(double(x + 1) * W / w));
        double s = 0;
        for (int yy = y0; yy < y1; ++yy)
          for (int xx = x0; xx < x1; ++xx) s += in[(std::size_t(c) * H + yy) * W + xx];
        out[(std::size_t(c) * h + y) * w + x] = s / double((y1 - y0) * (x1 - x0));
      }
  return out;
}

}  // namespace mvar::ref
