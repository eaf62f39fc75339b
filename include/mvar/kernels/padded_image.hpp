// mvar/kernels/padded_image.hpp — PaddedImage: a non-owning view of one image [C, H, W] whose
// channel planes each carry a one-pixel zero border and zero slack (the layout kernels/conv.hpp's
// implicit-GEMM convolution reads without border tests; see there). Producers — the zero-padding
// copy, nearest ×2, the fused GroupNorm(+SiLU) of kernels/norm.hpp — write interior() and call
// zero_border().
#pragma once

#include <algorithm>
#include <cstddef>

#include "mvar/core/tensor_view.hpp"

namespace mvar {

/// Non-owning view of an image [C, H, W] stored with a one-pixel zero border per channel plane
/// (see the header comment). Producers write interior() and call zero_border().
class PaddedImage {
 public:
  using index = std::ptrdiff_t;
  /// Zero floats after each plane's (H+2)(W+2) values: the widest conv tile may read this far.
  static constexpr index kSlack = 64;

  PaddedImage() = default;
  PaddedImage(float* data, index channels, index height, index width)
      : data_(data), c_(channels), h_(height), w_(width) {}

  static index plane_stride(index height, index width) {
    return ((height + 2) * (width + 2) + kSlack + 15) / 16 * 16;  // 64-byte multiple
  }
  /// Floats needed for C planes of H × W.
  static std::size_t floats(index channels, index height, index width) {
    return static_cast<std::size_t>(channels * plane_stride(height, width));
  }

  float* data() const { return data_; }
  index channels() const { return c_; }
  index height() const { return h_; }
  index width() const { return w_; }
  index row_stride() const { return w_ + 2; }
  index plane_stride() const { return plane_stride(h_, w_); }
  float* plane(index c) const { return data_ + c * plane_stride(); }

  /// The image without its border: [C, H, W] with strides (plane, W + 2, 1).
  TensorView<float, 3> interior() const {
    return TensorView<float, 3>(data_ + row_stride() + 1, {c_, h_, w_}, {plane_stride(), row_stride(), 1});
  }

  /// Zeroes the border and the slack of plane c (the interior is left alone).
  void zero_border(index c) const {
    float* p = plane(c);
    const index rs = row_stride();
    std::fill(p, p + rs, 0.0f);                                            // top row
    for (index r = 1; r <= h_; ++r) p[r * rs] = p[r * rs + rs - 1] = 0.0f;  // side columns
    std::fill(p + (h_ + 1) * rs, p + plane_stride(), 0.0f);               // bottom row + slack
  }

 private:
  float* data_ = nullptr;
  index c_ = 0, h_ = 0, w_ = 0;
};

}  // namespace mvar
