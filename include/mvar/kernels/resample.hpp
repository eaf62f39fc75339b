// mvar/kernels/resample.hpp — the two resamplings of the VQ stage (SPEC §1.11, §5.1, §5.2), on
// images [C, h, w] (any sizes, any strides with a unit innermost stride not required):
//
//   bicubic_resize — F.interpolate(mode='bicubic', align_corners=False): Keys cubic convolution
//                    with A = −0.75, taps clamped to the border, no antialiasing, no output clamp.
//   area_resize    — F.interpolate(mode='area') = adaptive average pooling: output cell i averages
//                    input rows [⌊i·h/p⌋, ⌈(i+1)·h/p⌉) (windows overlap for non-divisors).
//
// Both are tiny (≤ 32×16×16 per call in the model) and run single-threaded; they never allocate.
#pragma once

#include <cmath>
#include <cstddef>

#include "mvar/core/assert.hpp"
#include "mvar/core/tensor_view.hpp"

namespace mvar {

/// The four taps of bicubic interpolation for one output index on one axis.
struct CubicTaps {
  std::ptrdiff_t index[4];  // source indices, already clamped to [0, in − 1]
  float weight[4];
};

/// [begin, end) of the source rows (or columns) averaged by output cell i of an area resize.
struct AreaWindow {
  std::ptrdiff_t begin, end;
};

/// Taps for output index o of an axis resized in → out (SPEC §5.1). Coordinates are float32, as
/// in PyTorch: src = (o + 0.5)·(in/out) − 0.5, not clamped to 0 (cubic mode differs from linear
/// here); taps i0−1 … i0+2 with i0 = ⌊src⌋, each clamped to the border (replication).
inline CubicTaps cubic_taps(std::ptrdiff_t o, std::ptrdiff_t in, std::ptrdiff_t out) {
  MVAR_ASSERT(in >= 1 && out >= 1 && o >= 0 && o < out);
  constexpr float A = -0.75f;  // Keys' parameter used by PyTorch
  const float scale = float(in) / float(out);
  const float src = (float(o) + 0.5f) * scale - 0.5f;
  const float f = std::floor(src);
  const float t = src - f;
  // K1 covers |x| ≤ 1, K2 covers 1 < |x| < 2 (the Keys kernel on its two pieces).
  const auto k1 = [](float x) { return ((A + 2) * x - (A + 3)) * x * x + 1; };
  const auto k2 = [](float x) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; };
  CubicTaps taps{};
  taps.weight[0] = k2(t + 1);
  taps.weight[1] = k1(t);
  taps.weight[2] = k1(1 - t);
  taps.weight[3] = k2(2 - t);
  const auto i0 = static_cast<std::ptrdiff_t>(f);
  for (int k = 0; k < 4; ++k) {
    std::ptrdiff_t i = i0 - 1 + k;
    taps.index[k] = i < 0 ? 0 : (i > in - 1 ? in - 1 : i);
  }
  return taps;
}

/// Window of output cell i for an adaptive average over in → out (SPEC §5.2, integer math).
inline AreaWindow area_window(std::ptrdiff_t i, std::ptrdiff_t in, std::ptrdiff_t out) {
  MVAR_ASSERT(in >= 1 && out >= 1 && i >= 0 && i < out);
  return {i * in / out, ((i + 1) * in + out - 1) / out};
}

/// out[c] = bicubic(in[c]) for every channel; out's extents choose the size. The interpolation
/// runs along x for each of the four source rows first, then along y over those four results,
/// summing taps in order (the order of PyTorch's kernel). in and out must not overlap.
inline void bicubic_resize(TensorView<const float, 3> in, TensorView<float, 3> out) {
  MVAR_ASSERT(in.extent(0) == out.extent(0));
  const auto C = in.extent(0), h = in.extent(1), w = in.extent(2);
  const auto H = out.extent(1), W = out.extent(2);
  for (std::ptrdiff_t oy = 0; oy < H; ++oy) {
    const CubicTaps ty = cubic_taps(oy, h, H);
    for (std::ptrdiff_t ox = 0; ox < W; ++ox) {
      const CubicTaps tx = cubic_taps(ox, w, W);
      for (std::ptrdiff_t c = 0; c < C; ++c) {
        float rows[4];
        for (int k = 0; k < 4; ++k) {
          const std::ptrdiff_t y = ty.index[k];
          rows[k] = in(c, y, tx.index[0]) * tx.weight[0] + in(c, y, tx.index[1]) * tx.weight[1] +
                    in(c, y, tx.index[2]) * tx.weight[2] + in(c, y, tx.index[3]) * tx.weight[3];
        }
        out(c, oy, ox) =
            rows[0] * ty.weight[0] + rows[1] * ty.weight[1] + rows[2] * ty.weight[2] + rows[3] * ty.weight[3];
      }
    }
  }
}

/// out[c] = adaptive average of in[c] over the windows of area_window on both axes; the divisor
/// is the window's height × width. in → out of the same size is an exact copy.
inline void area_resize(TensorView<const float, 3> in, TensorView<float, 3> out) {
  MVAR_ASSERT(in.extent(0) == out.extent(0));
  const auto C = in.extent(0), H = in.extent(1), W = in.extent(2);
  const auto h = out.extent(1), w = out.extent(2);
  for (std::ptrdiff_t c = 0; c < C; ++c)
    for (std::ptrdiff_t oy = 0; oy < h; ++oy) {
      const AreaWindow wy = area_window(oy, H, h);
      for (std::ptrdiff_t ox = 0; ox < w; ++ox) {
        const AreaWindow wx = area_window(ox, W, w);
        float sum = 0;
        for (std::ptrdiff_t y = wy.begin; y < wy.end; ++y)
          for (std::ptrdiff_t x = wx.begin; x < wx.end; ++x) sum += in(c, y, x);
        out(c, oy, ox) = sum / float((wy.end - wy.begin) * (wx.end - wx.begin));
      }
    }
}

}  // namespace mvar
