// mvar/model/vqvae.hpp — VqvaeDecoder: f̂ [cvae, P, P] → RGB [3, P·2^(levels−1), same] (SPEC §2,
// official `Decoder` of basic_vae.py preceded by `post_quant_conv`), with its placement of the
// Winograd convolution forms (Options). Blocks and binding: model/vae_blocks.hpp; 8-bit RGB: io/rgb.hpp.
//
//   post_quant_conv (3×3) → conv_in (3×3) → mid: ResnetBlock, AttnBlock (using_mid_sa), ResnetBlock
//   → levels L = levels−1 … 0: num_res_blocks+1 ResnetBlocks (each followed by an AttnBlock on the
//     lowest-resolution level when using_sa), then nearest ×2 + 3×3 conv on every level but 0
//   → GroupNorm → SiLU → conv_out (3×3, → 3 channels).
//   ResnetBlock(x) = shortcut(x) + conv2(SiLU(GN2(conv1(SiLU(GN1(x)))))), shortcut = 1×1 conv if
//   the channel count changes; AttnBlock(x) = x + proj_out(attention(qkv(GN(x)))), one head,
//   scores scaled by C^−½, softmax over keys. GroupNorm: 32 groups, eps 1e-6, affine.
//
// Every activation is one image [C, h, w]. GroupNorm(+SiLU) and the nearest ×2 write straight into
// the padded planes the next convolution reads (kernels/conv.hpp), so no separate padding or
// upsampling pass exists. All scratch comes from a Workspace sized once by workspace_bytes();
// decode() allocates nothing.
// Bitwise identical results for any thread count: every parallel loop writes disjoint outputs
// and reduces in a fixed order.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mvar/core/assert.hpp"
#include "mvar/core/error.hpp"
#include "mvar/core/parallel.hpp"
#include "mvar/core/tensor_view.hpp"
#include "mvar/core/workspace.hpp"
#include "mvar/io/tensor_store.hpp"
#include "mvar/kernels/conv.hpp"
#include "mvar/model/vae_blocks.hpp"
#include "mvar/model/vae_config.hpp"

namespace mvar {

class VqvaeDecoder {
 public:
  using index = std::ptrdiff_t;

  /// How the decoder convolves (see the constructor).
  struct Options {
    /// The 3×3 convolutions that run at twice the latent side or more (every level below the top
    /// one, all upsampling convolutions, conv_out) run in the Winograd F(2×2, 3×3) form instead
    /// of the direct one (kernels/winograd.hpp; AVX-512 builds): 2.25× fewer FLOPs, results
    /// within a few float32 roundings of the direct convolution, 16/9 of those layers' weight
    /// memory. The top level (the widest channels at the smallest side) stays direct in fp32.
    bool winograd = true;
    /// Precision of the Winograd products: BF16 rounds the transformed filters and inputs to bf16
    /// (AVX512-BF16 builds; fp32 sums) and extends the Winograd form to the top level's resnet
    /// blocks: about 1.5× faster again, half those layers' memory, and values about 2⁻⁸
    /// relative off (an 8-bit image moves by a level here and there).
    Precision precision = Precision::F32;
    /// fp32 Winograd layers with at most 160 input and output channels that run at ≥ 64 px for
    /// latent_side (the official decoder's two finest levels and conv_out) use F(4×4, 3×3): 2.25
    /// products per output instead of 4, 1.4–1.5× faster there, 36/16 of those layers' filter
    /// memory (+24 MiB for the official decoder), and about 7× F(2×2)'s rounding error (still
    /// ≈ 1e-5 of the output's scale). Wider layers keep F(2×2): their F(4×4) filters and scratch
    /// (36 planes of products) outgrow the caches; so do narrower images (a 16-tile group spans
    /// 64 columns; docs/performance.md, "Measured design choices").
    bool large_tiles = true;
    /// The latent side P the decoder will mostly decode (the model's last patch_nums entry; 16 for
    /// the official models): it fixes which layers run at ≥ 64 px for large_tiles. Decoding another
    /// side gives the same results, only possibly in the slower form for its widths.
    int latent_side = 16;
  };

  /// Binds post_quant_conv.* and decoder.* (official names, SPEC §2.3) for `cfg`; throws one
  /// mvar::Error listing every missing, mis-shaped or unexpected tensor.
  VqvaeDecoder(const TensorStore& vae, VaeConfig cfg) : VqvaeDecoder(vae, std::move(cfg), Options{}) {}
  VqvaeDecoder(const TensorStore& vae, VaeConfig cfg, Options opts) : VqvaeDecoder(vae, std::move(cfg), opts, false) {}

  /// Throws what the constructor would (the same mvar::Error listing every missing, mis-shaped or
  /// unexpected tensor) without reading or packing a weight: milliseconds, no memory. For a
  /// program that builds the decoder only after sampling (so the two never share the memory) and
  /// wants a bad VAE file refused before the sampling work.
  static void check_weights(const TensorStore& vae, VaeConfig cfg) { VqvaeDecoder(vae, std::move(cfg), Options{}, true); }

 private:
  VqvaeDecoder(const TensorStore& vae, VaeConfig cfg, Options opts, bool check_only) : cfg_(std::move(cfg)) {
    cfg_.validate();
    if (opts.latent_side < 1)
      throw Error(concat("VqvaeDecoder: Options::latent_side must be ≥ 1, got ", opts.latent_side));
    detail::VaeBinder bind(vae, "VqvaeDecoder", check_only);
    const int levels = cfg_.levels();
    index block_in = index(cfg_.ch) * cfg_.ch_mult.back();
    post_quant_ = bind.conv("post_quant_conv", cfg_.cvae, cfg_.cvae, 3);
    conv_in_ = bind.conv("decoder.conv_in", block_in, cfg_.cvae, 3);
    mid1_ = bind.resnet("decoder.mid.block_1", block_in, block_in);
    if (cfg_.using_mid_sa) mid_attn_ = bind.attn("decoder.mid.attn_1", block_in);
    mid2_ = bind.resnet("decoder.mid.block_2", block_in, block_in);
    levels_.resize(std::size_t(levels));
    for (int L = levels - 1; L >= 0; --L) {
      auto& lv = levels_[std::size_t(L)];
      const index block_out = index(cfg_.ch) * cfg_.ch_mult[std::size_t(L)];
      for (int j = 0; j <= cfg_.num_res_blocks; ++j) {
        lv.blocks.push_back(bind.resnet(concat("decoder.up.", L, ".block.", j), block_in, block_out));
        block_in = block_out;
        if (L == levels - 1 && cfg_.using_sa) lv.attn.push_back(bind.attn(concat("decoder.up.", L, ".attn.", j), block_in));
      }
      if (L != 0) {
        lv.has_upsample = true;
        lv.upsample = bind.conv(concat("decoder.up.", L, ".upsample.conv"), block_in, block_in, 3);
      }
    }
    norm_out_ = bind.norm("decoder.norm_out", block_in);
    conv_out_ = bind.conv("decoder.conv_out", 3, block_in, 3);
    bind.finish({"decoder.", "post_quant_conv."});
    if (opts.winograd && !check_only) {
      // The top level (the latent side, 16 px for the official VAE) only with bf16 products: in
      // fp32 the Winograd form is no faster than the direct kernel there (few tile groups, large
      // transformed filters streamed per panel; docs/performance.md, "Measured design choices").
      const bool top = opts.precision == Precision::BF16;
      // side: the layer's image side at opts.latent_side (level L runs at P·2^(levels−1−L)).
      auto wino = [&](Conv2d& c, index side) { detail::vae_enable_winograd(c, side, opts.precision, opts.large_tiles); };
      auto side_of = [&](int L) { return index(opts.latent_side) << (levels - 1 - L); };
      auto res = [&](detail::VaeResnetBlock& b, index side) { wino(b.conv1, side), wino(b.conv2, side); };
      if (top) res(mid1_, side_of(levels - 1)), res(mid2_, side_of(levels - 1));
      for (int L = 0; L < levels; ++L) {
        auto& lv = levels_[std::size_t(L)];
        if (L < levels - 1 || top)
          for (auto& b : lv.blocks) res(b, side_of(L));
        if (lv.has_upsample) wino(lv.upsample, side_of(L - 1));
      }
      wino(conv_out_, side_of(0));
    }
  }

 public:
  /// Widest layer (input and output channels) and smallest image side that Options::large_tiles
  /// runs in F(4×4, 3×3).
  static constexpr index kLargeTileChannels = detail::kVaeLargeTileChannels, kLargeTileMinSide = detail::kVaeLargeTileMinSide;

  /// Bytes of the decoder's packed convolution weights (direct and Winograd forms).
  std::size_t conv_bytes() const {
    std::size_t n = 0;
    walk(1, [&](const Conv2d& c, index) { n += c.bytes(); }, [](index, index) {});
    return n;
  }

  /// How the large 3×3 convolutions run: "direct", "winograd" (F(2×2, 3×3) throughout),
  /// "winograd-f4" (F(4×4, 3×3) on the narrow layers, F(2×2) on the others) or "winograd-bf16"
  /// (what the build granted of the Options asked for).
  const char* conv_form() const {
    bool wino = false, bf16 = false, f4 = false;
    walk(1, [&](const Conv2d& c, index) {
      wino = wino || c.uses_winograd();
      bf16 = bf16 || (c.uses_winograd() && c.winograd_precision() == Precision::BF16);
      f4 = f4 || c.winograd_tile() == 4;
    }, [](index, index) {});
    return bf16 ? "winograd-bf16" : f4 ? "winograd-f4" : wino ? "winograd" : "direct";
  }

  const VaeConfig& config() const { return cfg_; }
  int image_side(int latent_side) const { return cfg_.image_side(latent_side); }

  /// Bytes of scratch decode() takes for a latent side P.
  std::size_t workspace_bytes(int latent_side) const {
    const Sizes z = sizes(latent_side);
    return 2 * Workspace::round(z.act * sizeof(float)) + Workspace::round(z.planes * sizeof(float)) +
           Workspace::round(z.attn * sizeof(float)) + 4 * kAlignment;
  }

  /// FLOP of one decode (2 per multiply-add: convolutions and attention products).
  double flop(int latent_side) const {
    double f = 0;
    walk(latent_side, [&](const Conv2d& c, index side) { f += c.flop(side, side); },
         [&](index c, index n) { f += 2.0 * 2.0 * double(n) * double(n) * double(c); });
    return f;
  }

  /// rgb [3, S, S] (S = P·2^(levels−1)) = decoder(post_quant_conv(fhat [cvae, P, P])), not clamped.
  void decode(ThreadPool& pool, TensorView<const float, 3> fhat, TensorView<float, 3> rgb, Workspace& ws) const {
    const index P = fhat.extent(1);
    MVAR_ASSERT(fhat.extent(0) == cfg_.cvae && fhat.extent(2) == P);
    MVAR_ASSERT(rgb.extent(0) == 3 && rgb.extent(1) == image_side(int(P)) && rgb.extent(2) == image_side(int(P)));
    const Sizes z = sizes(int(P));
    const std::size_t mark = ws.mark();
    float* act_a = ws.take<float>(z.act);
    float* act_b = ws.take<float>(z.act);
    const detail::VaeScratch s{ws.take<float>(z.planes), ws.take<float>(std::max<std::size_t>(z.attn, 1))};

    index side = P, C = cfg_.cvae;
    pad_copy(pool, fhat, PaddedImage(s.planes, C, side, side));
    post_quant_.forward(pool, PaddedImage(s.planes, C, side, side), view(act_a, C, side));
    pad_copy(pool, view(act_a, C, side), PaddedImage(s.planes, C, side, side));
    C = conv_in_.out_channels();
    conv_in_.forward(pool, PaddedImage(s.planes, cfg_.cvae, side, side), view(act_b, C, side));
    float* cur = act_b;
    float* spare = act_a;
    detail::vae_resnet(pool, mid1_, cur, spare, side, s);
    if (cfg_.using_mid_sa) detail::vae_attention(pool, mid_attn_, cur, side, s);
    detail::vae_resnet(pool, mid2_, cur, spare, side, s);
    for (int L = cfg_.levels() - 1; L >= 0; --L) {
      const auto& lv = levels_[std::size_t(L)];
      for (std::size_t j = 0; j < lv.blocks.size(); ++j) {
        detail::vae_resnet(pool, lv.blocks[j], cur, spare, side, s);
        if (!lv.attn.empty()) detail::vae_attention(pool, lv.attn[j], cur, side, s);
      }
      if (lv.has_upsample) {
        C = lv.upsample.out_channels();
        const PaddedImage up(s.planes, C, 2 * side, 2 * side);
        upsample_nearest2x(pool, view(cur, C, side), up);
        side *= 2;
        lv.upsample.forward(pool, up, view(spare, C, side));
        std::swap(cur, spare);
      }
    }
    C = conv_out_.in_channels();
    const PaddedImage pl(s.planes, C, side, side);
    detail::vae_norm_to_planes(pool, view(cur, C, side), norm_out_, true, pl);
    conv_out_.forward(pool, pl, rgb);
    ws.release(mark);
  }

 private:
  struct Sizes {
    std::size_t act = 0, planes = 0, attn = 0;  // floats
  };
  static TensorView<float, 3> view(float* p, index c, index side) { return TensorView<float, 3>(p, {c, side, side}); }

  // Calls conv_fn(conv, side) for every convolution and attn_fn(C, N) for every attention block,
  // in execution order.
  template <class ConvFn, class AttnFn>
  void walk(int latent_side, ConvFn conv_fn, AttnFn attn_fn) const {
    index side = latent_side;
    conv_fn(post_quant_, side);
    conv_fn(conv_in_, side);
    auto res = [&](const detail::VaeResnetBlock& r) {
      conv_fn(r.conv1, side);
      conv_fn(r.conv2, side);
      if (r.cin != r.cout) conv_fn(r.nin_shortcut, side);
    };
    auto att = [&](const detail::VaeAttnBlock& a) {
      conv_fn(a.qkv, side);
      conv_fn(a.proj_out, side);
      attn_fn(a.c, side * side);
    };
    res(mid1_);
    if (cfg_.using_mid_sa) att(mid_attn_);
    res(mid2_);
    for (int L = cfg_.levels() - 1; L >= 0; --L) {
      const auto& lv = levels_[std::size_t(L)];
      for (std::size_t j = 0; j < lv.blocks.size(); ++j) {
        res(lv.blocks[j]);
        if (!lv.attn.empty()) att(lv.attn[j]);
      }
      if (lv.has_upsample) {
        side *= 2;
        conv_fn(lv.upsample, side);
      }
    }
    conv_fn(conv_out_, side);
  }

  Sizes sizes(int latent_side) const {
    Sizes z;
    walk(latent_side,
         [&](const Conv2d& c, index side) {
           z.act = std::max(z.act, std::size_t(std::max(c.in_channels(), c.out_channels()) * side * side));
           z.planes = std::max(z.planes, PaddedImage::floats(c.in_channels(), side, side));
         },
         [&](index c, index n) { z.attn = std::max(z.attn, detail::vae_attn_floats(c, n)); });
    return z;
  }

  VaeConfig cfg_;
  Conv2d post_quant_, conv_in_;
  detail::VaeResnetBlock mid1_, mid2_;
  detail::VaeAttnBlock mid_attn_;
  std::vector<detail::VaeLevel> levels_;
  detail::VaeNorm norm_out_;
  Conv2d conv_out_;
};

}  // namespace mvar
