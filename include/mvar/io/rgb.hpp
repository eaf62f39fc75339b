// mvar/io/rgb.hpp — conversions between the models' float images [3, H, W] in [−1, 1] and 8-bit
// RGB bytes (HWC, row-major): to_rgb8 (model output → bytes, SPEC §1.13) and rgb8_to_model
// (bytes → model input, the official `normalize_01_into_pm1(ToTensor(img))`: x/255·2 − 1).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

#include "mvar/core/error.hpp"
#include "mvar/core/tensor_view.hpp"

namespace mvar {

/// hwc[(y·W + x)·3 + c] = ⌊255 · (clamp(img[c, y, x], −1, 1) + 1) · 0.5⌋ — truncation, not rounding,
/// as both official scripts do (SPEC §1.13). img [3, H, W]; hwc holds H·W·3 bytes. A NaN pixel
/// is an mvar::Error (its float → byte conversion would be undefined); ±Inf clamp like any value.
inline void to_rgb8(TensorView<const float, 3> img, std::span<std::uint8_t> hwc) {
  const auto C = img.extent(0), H = img.extent(1), W = img.extent(2);
  if (C != 3 || static_cast<std::ptrdiff_t>(hwc.size()) != H * W * 3)
    throw Error(concat("to_rgb8: need img [3, H, W] and H·W·3 bytes, got [", C, ", ", H, ", ", W, "] and ", hwc.size(),
                       " bytes"));
  for (std::ptrdiff_t y = 0; y < H; ++y)
    for (std::ptrdiff_t x = 0; x < W; ++x)
      for (std::ptrdiff_t c = 0; c < 3; ++c) {
        if (std::isnan(img(c, y, x)))
          throw Error(concat("to_rgb8: pixel (channel ", c, ", row ", y, ", column ", x, ") is NaN — NaN/Inf in the weights?"));
        const float v = (std::clamp(img(c, y, x), -1.0f, 1.0f) + 1.0f) * 0.5f;
        hwc[static_cast<std::size_t>((y * W + x) * 3 + c)] = static_cast<std::uint8_t>(255.0f * v);
      }
}

/// img[c, y, x] = hwc[(y·W + x)·3 + c] / 255 · 2 − 1, computed in float32 as the official
/// ToTensor (÷255) then normalize_01_into_pm1 (·2 − 1). img [3, H, W]; hwc holds H·W·3 bytes.
inline void rgb8_to_model(std::span<const std::uint8_t> hwc, TensorView<float, 3> img) {
  const auto C = img.extent(0), H = img.extent(1), W = img.extent(2);
  if (C != 3 || static_cast<std::ptrdiff_t>(hwc.size()) != H * W * 3)
    throw Error(concat("rgb8_to_model: need img [3, H, W] and H·W·3 bytes, got [", C, ", ", H, ", ", W, "] and ",
                       hwc.size(), " bytes"));
  for (std::ptrdiff_t y = 0; y < H; ++y)
    for (std::ptrdiff_t x = 0; x < W; ++x)
      for (std::ptrdiff_t c = 0; c < 3; ++c)
        img(c, y, x) = float(hwc[static_cast<std::size_t>((y * W + x) * 3 + c)]) / 255.0f * 2.0f - 1.0f;
}

}  // namespace mvar
