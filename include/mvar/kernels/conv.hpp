// mvar/kernels/conv.hpp — 2-D convolution of one image [C, H, W] for the VQ stage and the VQVAE
// decoder (SPEC §1.11, §2.1): cross-correlation, weights [out, in, k, k] with k = 3 (zero padding
// 1) or k = 1, stride 1, plus bias and an optional residual; and nearest ×2 upsampling.
//
// Layout. Convolution inputs live in a PaddedImage: every channel plane is stored with a one-pixel
// zero border, (H + 2) rows of W + 2 floats, followed by zero slack. Seen as one flat array per
// plane, output pixel (y, x) sits at q = (y + 1)(W + 2) + x + 1 and its 3×3 taps sit at the fixed
// offsets q + (ky − 1)(W + 2) + kx − 1. So the convolution is a sum of shifted 1-D products over
// the flat index — an implicit GEMM, M = out channels, N = flat positions, K = in channels × taps —
// with no border tests: tiles run straight across row ends, and the two border columns they
// compute on the way are simply not stored. (2/(W+2) wasted work: 11% at W = 16, 0.8% at 256.)
// Producers (zero-padding copy, nearest ×2, the decoder's fused GroupNorm+SiLU) write the padded
// planes directly, so no separate im2col or padding pass exists.
//
// Kernel. A register tile holds kConvMR = 8 output channels × NV vectors of flat positions; each
// K step loads NV input vectors and broadcasts 8 weights from a packed panel [in][tap][8] (packed
// once when a Conv2d is built; out-channel counts that are not a multiple of 8 are zero-padded and
// the extra rows are not stored). AVX-512: NV = 3 → 24 zmm accumulators, 48 pixels per tile.
// The vector type is a template parameter (xsimd::batch of the build's arch, or plain float for
// the scalar path the tests also check).
//
// Threading. Tasks are (group of tiles along the flat axis, block of 8 output channels); the task
// list depends only on the problem, each output element is written by exactly one task, and the K
// sum inside a tile runs in a fixed order — identical bits for any thread count.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "mvar/core/assert.hpp"
#include "mvar/core/buffer.hpp"
#include "mvar/core/error.hpp"
#include "mvar/core/parallel.hpp"
#include "mvar/core/tensor_view.hpp"
#include "mvar/kernels/padded_image.hpp"
#include "mvar/kernels/precision.hpp"
#include "mvar/kernels/winograd.hpp"

namespace mvar {

namespace detail {

/// Output channels per register tile (and per packed weight panel).
inline constexpr int kConvMR = 8;

/// What the conv kernel needs from a vector type: lanes, unaligned load/store, multiply-add.
template <class V>
struct ConvSimd {
  static constexpr int lanes = static_cast<int>(V::size);
  // Vectors per tile: 24 accumulators fit AVX-512's 32 registers; 16-register ISAs take 8 × 1.
  static constexpr int nv = lanes >= 16 ? 3 : 1;
  static V load(const float* p) { return V::load_unaligned(p); }
  static void store(const V& v, float* p) { v.store_unaligned(p); }
  static V madd(const V& a, const V& b, const V& c) { return xsimd::fma(a, b, c); }
};
template <>
struct ConvSimd<float> {  // the scalar path
  static constexpr int lanes = 1;
  static constexpr int nv = 4;
  static float load(const float* p) { return *p; }
  static void store(float v, float* p) { *p = v; }
  static float madd(float a, float b, float c) { return a * b + c; }
};

/// One register tile: tmp[m][j] = Σ_c Σ_t w[c][t][m] · x[c·plane + off_t + j], m < 8, j < NR, where
/// off_t = (ky − 1)·row + kx − 1 for the 3×3 taps t = 3·ky + kx (Taps = 9), or 0 (Taps = 1).
/// The three tap rows are addressed from one pointer plus row/2·row, so the nine offsets become
/// constant displacements instead of nine live registers.
template <class V, int Taps>
inline void conv_tile(const float* w, const float* x, std::ptrdiff_t plane, std::ptrdiff_t row,
                      std::ptrdiff_t in_channels, float* tmp) {
  using S = ConvSimd<V>;
  constexpr int MR = kConvMR, NV = S::nv, L = S::lanes;
  constexpr int KY = Taps == 9 ? 3 : 1, KX = KY;
  V acc[MR][NV];
  for (int m = 0; m < MR; ++m)
    for (int v = 0; v < NV; ++v) acc[m][v] = V(0.0f);
  if constexpr (Taps == 9) x -= row + 1;
  for (std::ptrdiff_t c = 0; c < in_channels; ++c, x += plane) {
#pragma GCC unroll 3
    for (int ky = 0; ky < KY; ++ky) {
      const float* xr = x + ky * row;
#pragma GCC unroll 3
      for (int kx = 0; kx < KX; ++kx, w += MR) {
        V xv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) xv[v] = S::load(xr + kx + v * L);
#pragma GCC unroll 8
        for (int m = 0; m < MR; ++m) {
          const V wm(w[m]);
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) acc[m][v] = S::madd(wm, xv[v], acc[m][v]);
        }
      }
    }
  }
  for (int m = 0; m < MR; ++m)
    for (int v = 0; v < NV; ++v) S::store(acc[m][v], tmp + m * (NV * L) + v * L);
}

}  // namespace detail

/// One convolution layer with its weights packed for the kernel (packed once, at construction).
class Conv2d {
 public:
  using index = std::ptrdiff_t;

  Conv2d() = default;
  /// weight [out, in, k, k], k ∈ {1, 3}; bias [out] or empty (no bias). The 3×3 case pads by 1.
  Conv2d(TensorView<const float, 4> weight, std::span<const float> bias)
      : co_(weight.extent(0)), ci_(weight.extent(1)), k_(weight.extent(2)) {
    if ((k_ != 1 && k_ != 3) || weight.extent(3) != k_)
      throw Error(concat("Conv2d: kernel must be 1×1 or 3×3, got ", weight.extent(2), "×", weight.extent(3)));
    if (!bias.empty() && static_cast<index>(bias.size()) != co_)
      throw Error(concat("Conv2d: bias has ", bias.size(), " values, expected ", co_));
    constexpr int MR = detail::kConvMR;
    const index blocks = (co_ + MR - 1) / MR, taps = k_ * k_;
    packed_ = Buffer<float>(static_cast<std::size_t>(blocks * ci_ * taps * MR));  // zeroed: pad rows
    for (index o = 0; o < co_; ++o) {  // each filter read front to back
      float* dst = packed_.data() + (o / MR) * ci_ * taps * MR + o % MR;
      if (weight.is_contiguous()) {
        const float* src = weight.data() + o * ci_ * taps;
        for (index i = 0; i < ci_ * taps; ++i) dst[i * MR] = src[i];
      } else {
        for (index c = 0; c < ci_; ++c)
          for (index t = 0; t < taps; ++t) dst[(c * taps + t) * MR] = weight(o, c, t / k_, t % k_);
      }
    }
    bias_.assign(static_cast<std::size_t>(co_), 0.0f);
    std::copy(bias.begin(), bias.end(), bias_.begin());
  }

  /// Replaces the direct form of a 3×3 layer by its Winograd F(2×2, 3×3) form (winograd.hpp),
  /// which forward() then takes for every image shape: 16/9 of the direct weights' memory in
  /// fp32, 8/9 in bf16 (Precision::BF16: bf16 products with fp32 sums, AVX512-BF16 builds; fp32
  /// elsewhere — winograd_precision() says which). tile = 4 asks for F(4×4, 3×3) instead: 2.25
  /// products per output instead of 4, 36/9 of the direct weights' memory, fp32 only (with BF16
  /// the tile stays 2; winograd_tile() says which). Returns whether the layer now runs Winograd:
  /// false for 1×1 layers and non-AVX-512 builds, which keep the direct kernel.
  bool enable_winograd(Precision precision = Precision::F32, int tile = 2) {
    if (tile != 2 && tile != 4) throw Error(concat("Conv2d::enable_winograd: tile must be 2 or 4, got ", tile));
#if defined(MVAR_HAS_WINOGRAD)
    if (k_ != 3 || uses_winograd()) return uses_winograd();
    constexpr int MR = detail::kConvMR;
    static_assert(MR == detail::Wino::MR, "Winograd and direct kernels share the 8-channel blocks");
    const index blocks = (co_ + MR - 1) / MR;
#if defined(MVAR_HAS_WINOGRAD_BF16)
    if (precision == Precision::BF16) tile = 2;
#else
    precision = Precision::F32;
#endif
    const index xi = (tile + 2) * (tile + 2);
    Buffer<float> u(static_cast<std::size_t>(xi * blocks * ci_ * MR));  // pad rows: zero filters, zero U
    for (index b = 0; b < blocks; ++b)
      for (index c = 0; c < ci_; ++c) {
        const float* g = packed_.data() + (b * ci_ + c) * 9 * MR;
        float* dst = u.data() + (b * ci_ + c) * MR;
        if (tile == 4)
          detail::winograd4_filters8(g, dst, blocks * ci_ * MR);
        else
          detail::winograd_filters8(g, dst, blocks * ci_ * MR);
      }
#if defined(MVAR_HAS_WINOGRAD_BF16)
    if (precision == Precision::BF16) {
      wino_bf16_ = Buffer<std::uint32_t>(static_cast<std::size_t>(16 * blocks * ((ci_ + 1) / 2) * MR));
      detail::winograd_filters_bf16(u.data(), ci_, co_, wino_bf16_.data());
    } else {
      wino_ = std::move(u);
    }
#else
    wino_ = std::move(u);
#endif
    wino_tile_ = tile;
    packed_ = Buffer<float>();  // the direct form is no longer used
    return true;
#else
    (void)precision;
    return false;
#endif
  }
  /// Whether forward() runs the Winograd form (enable_winograd succeeded).
  bool uses_winograd() const { return !wino_.empty() || !wino_bf16_.empty(); }
  /// Output tile of the Winograd form: 2 (F(2×2, 3×3)) or 4 (F(4×4, 3×3)); 0 when the layer runs direct.
  int winograd_tile() const { return uses_winograd() ? wino_tile_ : 0; }
  /// Precision of the Winograd products (F32 when the layer runs direct).
  Precision winograd_precision() const { return wino_bf16_.empty() ? Precision::F32 : Precision::BF16; }
  /// Bytes of packed weights held (the direct or the Winograd form) and bias.
  std::size_t bytes() const {
    return packed_.bytes() + wino_.bytes() + wino_bf16_.bytes() + bias_.size() * sizeof(float);
  }

  index out_channels() const { return co_; }
  index in_channels() const { return ci_; }
  index kernel_size() const { return k_; }
  /// Multiply-adds × 2 of one forward pass over an H × W image.
  double flop(index height, index width) const { return 2.0 * double(co_ * ci_ * k_ * k_) * double(height * width); }

  /// out = conv(in) + bias (+ residual, when residual.data() is non-null). out [Co, H, W] with unit
  /// innermost stride; residual may be out itself (each element is read, then written, by the
  /// same task), but out must not overlap in.
  template <class V = xsimd::batch<float>>
  void forward(ThreadPool& pool, const PaddedImage& in, TensorView<float, 3> out,
               TensorView<const float, 3> residual = {}) const {
    using S = detail::ConvSimd<V>;
    constexpr int MR = detail::kConvMR, NR = S::nv * S::lanes;
    static_assert(NR <= PaddedImage::kSlack, "conv tile wider than the padded planes' slack");
    const index H = in.height(), W = in.width(), Wp = in.row_stride(), ps = in.plane_stride();
    MVAR_ASSERT(in.channels() == ci_);
    MVAR_ASSERT(out.extent(0) == co_ && out.extent(1) == H && out.extent(2) == W && out.stride(2) == 1);
    MVAR_ASSERT(!residual.data() || (residual.extent(0) == co_ && residual.extent(1) == H &&
                                     residual.extent(2) == W && residual.stride(2) == 1));
    // Flat positions from the first to one past the last interior pixel (rows 1..H).
#if defined(MVAR_HAS_WINOGRAD)
    if (uses_winograd()) {
      if constexpr (!std::is_same_v<V, xsimd::batch<float>>)
        throw Error("Conv2d: a layer in Winograd form runs only with the build's default vector type");
      detail::WinogradIo io;
      io.in = in.data();
      io.in_plane = ps;
      io.out = out.data();
      io.out_plane = out.stride(0);
      io.out_row = out.stride(1);
      if (residual.data()) {
        io.res = residual.data();
        io.res_plane = residual.stride(0);
        io.res_row = residual.stride(1);
      }
#if defined(MVAR_HAS_WINOGRAD_BF16)
      if (!wino_bf16_.empty()) return detail::winograd_conv3x3_bf16(pool, io, ci_, co_, H, W, wino_bf16_.data(), bias_.data());
#endif
      if (wino_tile_ == 4) return detail::winograd_conv3x3<4>(pool, io, ci_, co_, H, W, wino_.data(), bias_.data());
      return detail::winograd_conv3x3<2>(pool, io, ci_, co_, H, W, wino_.data(), bias_.data());
    }
#endif
    const index q_begin = Wp + 1, q_end = (H + 1) * Wp - 1;
    const index tiles = (q_end - q_begin + NR - 1) / NR;
    const index tiles_per_task = std::max<index>(1, 384 / NR);  // ~384 positions per task
    const index groups = (tiles + tiles_per_task - 1) / tiles_per_task;
    const index blocks = (co_ + MR - 1) / MR;
    const index taps = k_ * k_;
    parallel_for(pool, groups * blocks, 1, [&](index t0, index t1) {
      alignas(64) float tmp[MR * NR];
      for (index task = t0; task < t1; ++task) {
        const index g = task / blocks, b = task % blocks;
        const float* w = packed_.data() + b * ci_ * taps * MR;
        const index rows = std::min<index>(MR, co_ - b * MR);
        const index tile_end = std::min(tiles, (g + 1) * tiles_per_task);
        for (index tile = g * tiles_per_task; tile < tile_end; ++tile) {
          const index q0 = q_begin + tile * NR;
          if (k_ == 3)
            detail::conv_tile<V, 9>(w, in.data() + q0, ps, Wp, ci_, tmp);
          else
            detail::conv_tile<V, 1>(w, in.data() + q0, ps, Wp, ci_, tmp);
          store_tile(tmp, NR, q0, std::min(q_end, q0 + NR), Wp, b * MR, rows, out, residual);
        }
      }
    });
  }

 private:
  // Writes the interior positions of flat range [q0, qe) of a tile: row-segment by row-segment,
  // skipping the two border columns.
  void store_tile(const float* tmp, index nr, index q0, index qe, index Wp, index co0, index rows,
                  TensorView<float, 3> out, TensorView<const float, 3> residual) const {
    for (index q = q0; q < qe;) {
      const index r = q / Wp, col = q - r * Wp;
      if (col == 0 || col == Wp - 1) {
        ++q;
        continue;
      }
      const index len = std::min(qe - q, Wp - 1 - col);
      for (index m = 0; m < rows; ++m) {
        const float* src = tmp + m * nr + (q - q0);
        float* dst = &out(co0 + m, r - 1, col - 1);
        const float b = bias_[static_cast<std::size_t>(co0 + m)];
        if (residual.data()) {
          const float* res = &residual(co0 + m, r - 1, col - 1);
          for (index i = 0; i < len; ++i) dst[i] = res[i] + (src[i] + b);
        } else {
          for (index i = 0; i < len; ++i) dst[i] = src[i] + b;
        }
      }
      q += len;
    }
  }

  index co_ = 0, ci_ = 0, k_ = 0;
  Buffer<float> packed_;  // [ceil(co/8)][ci][k·k][8]; emptied by enable_winograd
  Buffer<float> wino_;    // empty, or [(tile+2)²][ceil(co/8)][ci][8]: U_ξ = G g Gᵀ (enable_winograd)
  int wino_tile_ = 2;
  Buffer<std::uint32_t> wino_bf16_;  // empty, or the bf16 form: [16][ceil(co/8)][ceil(ci/2)][8] pairs
  std::vector<float> bias_;
};

/// Copies in [C, H, W] (any strides) into the interior of out and zeroes its border, channels
/// spread over the pool.
inline void pad_copy(ThreadPool& pool, TensorView<const float, 3> in, const PaddedImage& out) {
  MVAR_ASSERT(in.extent(0) == out.channels() && in.extent(1) == out.height() && in.extent(2) == out.width());
  const auto dst = out.interior();
  const bool rows = in.stride(2) == 1;
  parallel_for(pool, in.extent(0), 8, [&](std::ptrdiff_t c0, std::ptrdiff_t c1) {
    for (std::ptrdiff_t c = c0; c < c1; ++c) {
      for (std::ptrdiff_t y = 0; y < in.extent(1); ++y) {
        if (rows) {
          std::memcpy(&dst(c, y, 0), &in(c, y, 0), sizeof(float) * std::size_t(in.extent(2)));
        } else {
          for (std::ptrdiff_t x = 0; x < in.extent(2); ++x) dst(c, y, x) = in(c, y, x);
        }
      }
      out.zero_border(c);
    }
  });
}

/// Nearest-neighbour ×2 (out[y, x] = in[⌊y/2⌋, ⌊x/2⌋], SPEC §2.1) of in [C, H, W] (unit innermost
/// stride) into the interior of out [C, 2H, 2W], border zeroed — the input of the upsampling
/// block's 3×3 conv. Each source row is widened once and the result copied to the second row.
inline void upsample_nearest2x(ThreadPool& pool, TensorView<const float, 3> in, const PaddedImage& out) {
  MVAR_ASSERT(in.extent(0) == out.channels() && 2 * in.extent(1) == out.height() &&
              2 * in.extent(2) == out.width());
  MVAR_ASSERT(in.stride(2) == 1 || in.extent(2) <= 1);
  const auto dst = out.interior();
  const std::ptrdiff_t W = in.extent(2);
  parallel_for(pool, in.extent(0), 8, [&](std::ptrdiff_t c0, std::ptrdiff_t c1) {
    for (std::ptrdiff_t c = c0; c < c1; ++c) {
      for (std::ptrdiff_t y = 0; y < in.extent(1); ++y) {
        const float* __restrict s = &in(c, y, 0);
        float* __restrict d = &dst(c, 2 * y, 0);
        for (std::ptrdiff_t x = 0; x < W; ++x) d[2 * x] = d[2 * x + 1] = s[x];
        std::memcpy(&dst(c, 2 * y + 1, 0), d, sizeof(float) * std::size_t(2 * W));
      }
      out.zero_border(c);
    }
  });
}

/// Nearest-neighbour ×2 between plain images: out [C, 2H, 2W].
inline void upsample_nearest2x(TensorView<const float, 3> in, TensorView<float, 3> out) {
  MVAR_ASSERT(in.extent(0) == out.extent(0) && 2 * in.extent(1) == out.extent(1) && 2 * in.extent(2) == out.extent(2));
  for (std::ptrdiff_t c = 0; c < out.extent(0); ++c)
    for (std::ptrdiff_t y = 0; y < out.extent(1); ++y)
      for (std::ptrdiff_t x = 0; x < out.extent(2); ++x) out(c, y, x) = in(c, y / 2, x / 2);
}

}  // namespace mvar
