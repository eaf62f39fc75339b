// mvar/kernels/conv_stride2.hpp — the VQVAE encoder's downsampling convolution (official
// basic_vae.py `Downsample2x`): pad the image by one zero row at the bottom and one zero column at
// the right (F.pad(x, (0, 1, 0, 1))), then a 3×3 convolution with stride 2 and no padding:
//
//   out[o, y, x] = b[o] + Σ_c Σ_{ky,kx ∈ 0..2} w[o, c, ky, kx] · in[c, 2y + ky, 2x + kx],
//   in[·, H, ·] = in[·, ·, W] = 0,   out [Co, H/2, W/2] (H, W even).
//
// Form. The input is split once into its four phases P_ab[c, i, j] = in[c, 2i + a, 2j + b]
// (a, b ∈ {0, 1}), each a PaddedImage of H/2 × W/2 with a zero border — so tap (ky, kx) reads
// phase (ky mod 2, kx mod 2) at (y + ⌊ky/2⌋, x + ⌊kx/2⌋), and the row/column past the end is the
// phase planes' zero border, exactly the official bottom/right padding. The nine taps are nine
// 1×1 convolutions (kernels/conv.hpp's packed kernel, K = Cin) over views of the phases shifted
// by (⌊ky/2⌋, ⌊kx/2⌋), each adding into the output in tap order: the exact stride-2 work
// (9·Cin·Co multiply-adds per output pixel, a quarter of a stride-1 conv subsampled afterwards),
// no im2col buffer. The shifted views read at most one row + one column beyond a plane's interior:
// inside its border and slack (PaddedImage::kSlack ≥ the widest tile), so always in bounds.
// Threading: each 1×1 convolution and the phase split write disjoint outputs in a fixed order —
// identical bits for any thread count.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "mvar/core/assert.hpp"
#include "mvar/core/error.hpp"
#include "mvar/core/parallel.hpp"
#include "mvar/core/tensor_view.hpp"
#include "mvar/kernels/conv.hpp"
#include "mvar/kernels/padded_image.hpp"

namespace mvar {

class Conv2dStride2 {
 public:
  using index = std::ptrdiff_t;

  Conv2dStride2() = default;
  /// weight [out, in, 3, 3], bias [out] (or empty).
  Conv2dStride2(TensorView<const float, 4> weight, std::span<const float> bias)
      : co_(weight.extent(0)), ci_(weight.extent(1)) {
    if (weight.extent(2) != 3 || weight.extent(3) != 3)
      throw Error(concat("Conv2dStride2: kernel must be 3×3, got ", weight.extent(2), "×", weight.extent(3)));
    const std::vector<float> zero(static_cast<std::size_t>(co_), 0.0f);
    for (int t = 0; t < 9; ++t) {
      // [out, in, 1, 1] view of tap t (strides of the [out, in, 3, 3] tensor).
      const TensorView<const float, 4> tap(&weight(0, 0, t / 3, t % 3), {co_, ci_, 1, 1},
                                           {weight.stride(0), weight.stride(1), 1, 1});
      taps_[t] = Conv2d(tap, t == 0 ? bias : std::span<const float>(zero));
    }
  }

  index out_channels() const { return co_; }
  index in_channels() const { return ci_; }
  /// Multiply-adds × 2 of one forward pass producing an H × W output.
  double flop(index out_height, index out_width) const { return 2.0 * double(co_ * ci_ * 9) * double(out_height * out_width); }
  std::size_t bytes() const {
    std::size_t n = 0;
    for (const auto& c : taps_) n += c.bytes();
    return n;
  }
  /// Floats of phase scratch forward() takes for an H × W input.
  static std::size_t scratch_floats(index channels, index height, index width) {
    return 4 * PaddedImage::floats(channels, height / 2, width / 2);
  }

  /// out [Co, H/2, W/2] = conv(pad(in)); in [Ci, H, W] (unit innermost stride, H and W even);
  /// scratch: scratch_floats(Ci, H, W) floats.
  void forward(ThreadPool& pool, TensorView<const float, 3> in, TensorView<float, 3> out, float* scratch) const {
    const index H = in.extent(1), W = in.extent(2), h = H / 2, w = W / 2;
    MVAR_ASSERT(in.extent(0) == ci_ && H % 2 == 0 && W % 2 == 0 && in.stride(2) == 1);
    MVAR_ASSERT(out.extent(0) == co_ && out.extent(1) == h && out.extent(2) == w && out.stride(2) == 1);
    const std::size_t phase_floats = PaddedImage::floats(ci_, h, w);
    PaddedImage phase[4];
    for (int p = 0; p < 4; ++p) phase[p] = PaddedImage(scratch + p * phase_floats, ci_, h, w);
    parallel_for(pool, ci_, 4, [&](index c0, index c1) {
      for (index c = c0; c < c1; ++c)
        for (int p = 0; p < 4; ++p) {
          const auto dst = phase[p].interior();
          const index a = p / 2, b = p % 2;
          for (index i = 0; i < h; ++i) {
            const float* src = &in(c, 2 * i + a, b);
            float* d = &dst(c, i, 0);
            for (index j = 0; j < w; ++j) d[j] = src[2 * j];
          }
          phase[p].zero_border(c);
        }
    });
    for (int t = 0; t < 9; ++t) {
      const int ky = t / 3, kx = t % 3;
      const PaddedImage& ph = phase[(ky % 2) * 2 + kx % 2];
      const PaddedImage shifted(ph.data() + (ky / 2) * ph.row_stride() + kx / 2, ci_, h, w);
      if (t == 0)
        taps_[t].forward(pool, shifted, out);
      else
        taps_[t].forward(pool, shifted, out, out);
    }
  }

 private:
  index co_ = 0, ci_ = 0;
  Conv2d taps_[9];
};

}  // namespace mvar
