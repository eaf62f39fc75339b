// mvar/model/vqvae_encoder.hpp — VqvaeEncoder: RGB [3, S, S] in [−1, 1] → f [cvae, P, P],
// P = S / 2^(levels−1) (official basic_vae.py `Encoder` followed by vqvae.py's `quant_conv`; the
// first half of `VQVAE.img_to_idxBl`, whose second half is VectorQuantizer::encode):
//
//   conv_in (3×3, 3 → ch) → levels L = 0 … levels−1: num_res_blocks ResnetBlocks (ch·in_mult[L] →
//     ch·ch_mult[L], in_mult = (1, ch_mult…)), each followed by an AttnBlock on the last level when
//     using_sa; then Downsample2x (pad bottom/right by one zero, 3×3 stride-2 conv) on every level
//     but the last
//   → mid: ResnetBlock, AttnBlock (using_mid_sa), ResnetBlock → GroupNorm → SiLU → conv_out
//     (3×3, → cvae) → quant_conv (3×3, cvae → cvae).
//
// Weights: `encoder.*` and `quant_conv.*` under the official names, sized by the same VaeConfig
// as the decoder (the official VQVAE builds both halves from one ddconfig). Blocks and binding are
// the decoder's (model/vae_blocks.hpp); the downsampling conv is kernels/conv_stride2.hpp.
// Convolution forms follow the decoder's placement (Options): the 3×3 stride-1 layers that run at
// twice the latent side or more in Winograd fp32 form (F(4×4) for ≤ 160 channels at ≥ 64 px),
// the latent-side level, mid, conv_out and quant_conv direct. fp32 only: the tokens are an argmin
// over distances whose smallest margins (fixtures: 6e-4) a bf16 encoder would not respect.
// All scratch comes from a Workspace sized once by workspace_bytes(); encode() allocates nothing.
// Bitwise identical results for any thread count.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "mvar/core/assert.hpp"
#include "mvar/core/error.hpp"
#include "mvar/core/parallel.hpp"
#include "mvar/core/tensor_view.hpp"
#include "mvar/core/workspace.hpp"
#include "mvar/io/tensor_store.hpp"
#include "mvar/kernels/conv.hpp"
#include "mvar/kernels/conv_stride2.hpp"
#include "mvar/model/vae_blocks.hpp"
#include "mvar/model/vae_config.hpp"

namespace mvar {

class VqvaeEncoder {
 public:
  using index = std::ptrdiff_t;

  struct Options {
    /// 3×3 stride-1 layers at ≥ 2·latent_side px in the Winograd F(2×2)/F(4×4) form (AVX-512
    /// builds; results within a few float32 roundings of the direct form), the others direct.
    bool winograd = true;
    /// F(4×4, 3×3) for narrow layers (≤ 160 channels) at ≥ 64 px, as VqvaeDecoder::Options.
    bool large_tiles = true;
    /// The latent side P the encoder will mostly produce (16 for 256-px official images).
    int latent_side = 16;
  };

  /// Binds encoder.* and quant_conv.* for `cfg`; throws one mvar::Error listing every missing,
  /// mis-shaped or unexpected tensor (a VAE file without an encoder names them all).
  VqvaeEncoder(const TensorStore& vae, VaeConfig cfg) : VqvaeEncoder(vae, std::move(cfg), Options{}) {}
  VqvaeEncoder(const TensorStore& vae, VaeConfig cfg, Options opts) : VqvaeEncoder(vae, std::move(cfg), opts, false) {}

  /// Throws what the constructor would, without reading or packing a weight.
  static void check_weights(const TensorStore& vae, VaeConfig cfg) { VqvaeEncoder(vae, std::move(cfg), Options{}, true); }
  /// Whether the file holds an encoder at all (any `encoder.` key).
  static bool has_encoder(const TensorStore& vae) {
    for (const auto& t : vae.tensors())
      if (t.name.rfind("encoder.", 0) == 0) return true;
    return false;
  }

 private:
  VqvaeEncoder(const TensorStore& vae, VaeConfig cfg, Options opts, bool check_only) : cfg_(std::move(cfg)) {
    cfg_.validate();
    if (opts.latent_side < 1)
      throw Error(concat("VqvaeEncoder: Options::latent_side must be ≥ 1, got ", opts.latent_side));
    detail::VaeBinder bind(vae, "VqvaeEncoder", check_only);
    const int levels = cfg_.levels();
    conv_in_ = bind.conv("encoder.conv_in", cfg_.ch, 3, 3);
    levels_.resize(std::size_t(levels));
    index block_in = cfg_.ch;
    for (int L = 0; L < levels; ++L) {
      auto& lv = levels_[std::size_t(L)];
      block_in = index(cfg_.ch) * (L == 0 ? 1 : cfg_.ch_mult[std::size_t(L - 1)]);
      const index block_out = index(cfg_.ch) * cfg_.ch_mult[std::size_t(L)];
      for (int j = 0; j < cfg_.num_res_blocks; ++j) {
        lv.blocks.push_back(bind.resnet(concat("encoder.down.", L, ".block.", j), block_in, block_out));
        block_in = block_out;
        if (L == levels - 1 && cfg_.using_sa) lv.attn.push_back(bind.attn(concat("encoder.down.", L, ".attn.", j), block_in));
      }
      if (L != levels - 1) {
        lv.has_downsample = true;
        lv.downsample = bind.conv_stride2(concat("encoder.down.", L, ".downsample.conv"), block_in, block_in);
      }
    }
    mid1_ = bind.resnet("encoder.mid.block_1", block_in, block_in);
    if (cfg_.using_mid_sa) mid_attn_ = bind.attn("encoder.mid.attn_1", block_in);
    mid2_ = bind.resnet("encoder.mid.block_2", block_in, block_in);
    norm_out_ = bind.norm("encoder.norm_out", block_in);
    conv_out_ = bind.conv("encoder.conv_out", cfg_.cvae, block_in, 3);
    quant_conv_ = bind.conv("quant_conv", cfg_.cvae, cfg_.cvae, 3);
    bind.finish({"encoder.", "quant_conv."});
    if (opts.winograd && !check_only) {
      // Level L runs at P·2^(levels−1−L) px; the last level (the latent side) stays direct, as the
      // decoder's top level does in fp32.
      for (int L = 0; L < levels - 1; ++L) {
        const index side = index(opts.latent_side) << (levels - 1 - L);
        for (auto& b : levels_[std::size_t(L)].blocks) {
          detail::vae_enable_winograd(b.conv1, side, Precision::F32, opts.large_tiles);
          detail::vae_enable_winograd(b.conv2, side, Precision::F32, opts.large_tiles);
        }
      }
    }
  }

 public:
  const VaeConfig& config() const { return cfg_; }
  /// Latent side for an image side S (S must be a multiple of 2^(levels−1)).
  int latent_side(int image_side) const { return image_side >> (cfg_.levels() - 1); }
  int image_side(int latent_side) const { return cfg_.image_side(latent_side); }

  /// Bytes of the encoder's packed weights.
  std::size_t conv_bytes() const {
    std::size_t n = 0;
    walk(1, [&](const Conv2d& c, index) { n += c.bytes(); }, [&](const Conv2dStride2& c, index) { n += c.bytes(); },
         [](index, index) {});
    return n;
  }

  /// Bytes of scratch encode() takes for an image side S.
  std::size_t workspace_bytes(int image_side) const {
    const Sizes z = sizes(image_side);
    return 2 * Workspace::round(z.act * sizeof(float)) + Workspace::round(z.planes * sizeof(float)) +
           Workspace::round(std::max<std::size_t>(z.attn, 1) * sizeof(float)) + 4 * kAlignment;
  }

  /// FLOP of one encode (2 per multiply-add: convolutions and attention products).
  double flop(int image_side) const {
    double f = 0;
    walk(image_side, [&](const Conv2d& c, index side) { f += c.flop(side, side); },
         [&](const Conv2dStride2& c, index out_side) { f += c.flop(out_side, out_side); },
         [&](index c, index n) { f += 2.0 * 2.0 * double(n) * double(n) * double(c); });
    return f;
  }

  /// f [cvae, P, P] = quant_conv(encoder(img [3, S, S])), S = P·2^(levels−1). img in [−1, 1]
  /// (rgb8_to_model); nothing is clamped.
  void encode(ThreadPool& pool, TensorView<const float, 3> img, TensorView<float, 3> f, Workspace& ws) const {
    const index S = img.extent(1), P = latent_side(int(S));
    if (img.extent(0) != 3 || img.extent(2) != S || S < 1 || image_side(int(P)) != S)
      throw Error(concat("VqvaeEncoder: the image must be [3, S, S] with S a positive multiple of ",
                         1 << (cfg_.levels() - 1), ", got [", img.extent(0), ", ", img.extent(1), ", ", img.extent(2), "]"));
    MVAR_ASSERT(f.extent(0) == cfg_.cvae && f.extent(1) == P && f.extent(2) == P && f.stride(2) == 1);
    const Sizes z = sizes(int(S));
    const std::size_t mark = ws.mark();
    float* act_a = ws.take<float>(z.act);
    float* act_b = ws.take<float>(z.act);
    const detail::VaeScratch s{ws.take<float>(z.planes), ws.take<float>(std::max<std::size_t>(z.attn, 1))};

    index side = S;
    pad_copy(pool, img, PaddedImage(s.planes, 3, side, side));
    index C = conv_in_.out_channels();
    conv_in_.forward(pool, PaddedImage(s.planes, 3, side, side), view(act_b, C, side));
    float* cur = act_b;
    float* spare = act_a;
    for (int L = 0; L < cfg_.levels(); ++L) {
      const auto& lv = levels_[std::size_t(L)];
      for (std::size_t j = 0; j < lv.blocks.size(); ++j) {
        detail::vae_resnet(pool, lv.blocks[j], cur, spare, side, s);
        if (!lv.attn.empty()) detail::vae_attention(pool, lv.attn[j], cur, side, s);
      }
      if (lv.has_downsample) {
        C = lv.downsample.out_channels();
        lv.downsample.forward(pool, view(cur, C, side), view(spare, C, side / 2), s.planes);
        side /= 2;
        std::swap(cur, spare);
      }
    }
    detail::vae_resnet(pool, mid1_, cur, spare, side, s);
    if (cfg_.using_mid_sa) detail::vae_attention(pool, mid_attn_, cur, side, s);
    detail::vae_resnet(pool, mid2_, cur, spare, side, s);
    C = conv_out_.in_channels();
    const PaddedImage pl(s.planes, C, side, side);
    detail::vae_norm_to_planes(pool, view(cur, C, side), norm_out_, true, pl);
    conv_out_.forward(pool, pl, view(spare, cfg_.cvae, side));
    const PaddedImage pq(s.planes, cfg_.cvae, side, side);
    pad_copy(pool, view(spare, cfg_.cvae, side), pq);
    quant_conv_.forward(pool, pq, f);
    ws.release(mark);
  }

 private:
  struct Level {
    std::vector<detail::VaeResnetBlock> blocks;
    std::vector<detail::VaeAttnBlock> attn;  // empty, or one per block
    bool has_downsample = false;
    Conv2dStride2 downsample;
  };
  struct Sizes {
    std::size_t act = 0, planes = 0, attn = 0;  // floats
  };

  static TensorView<float, 3> view(float* p, index c, index side) { return TensorView<float, 3>(p, {c, side, side}); }

  // In execution order: conv_fn(conv, side) for every stride-1 convolution, down_fn(conv, out_side)
  // for every downsampling one, attn_fn(C, N) for every attention block.
  template <class ConvFn, class DownFn, class AttnFn>
  void walk(int image_side, ConvFn conv_fn, DownFn down_fn, AttnFn attn_fn) const {
    index side = image_side;
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
    for (int L = 0; L < cfg_.levels(); ++L) {
      const auto& lv = levels_[std::size_t(L)];
      for (std::size_t j = 0; j < lv.blocks.size(); ++j) {
        res(lv.blocks[j]);
        if (!lv.attn.empty()) att(lv.attn[j]);
      }
      if (lv.has_downsample) {
        down_fn(lv.downsample, side / 2);
        side /= 2;
      }
    }
    res(mid1_);
    if (cfg_.using_mid_sa) att(mid_attn_);
    res(mid2_);
    conv_fn(conv_out_, side);
    conv_fn(quant_conv_, side);
  }

  Sizes sizes(int image_side) const {
    Sizes z;
    walk(image_side,
         [&](const Conv2d& c, index side) {
           z.act = std::max(z.act, std::size_t(std::max(c.in_channels(), c.out_channels()) * side * side));
           z.planes = std::max(z.planes, PaddedImage::floats(c.in_channels(), side, side));
         },
         [&](const Conv2dStride2& c, index out_side) {
           z.act = std::max(z.act, std::size_t(c.in_channels() * 4 * out_side * out_side));
           z.planes = std::max(z.planes, Conv2dStride2::scratch_floats(c.in_channels(), 2 * out_side, 2 * out_side));
         },
         [&](index c, index n) { z.attn = std::max(z.attn, detail::vae_attn_floats(c, n)); });
    return z;
  }

  VaeConfig cfg_;
  Conv2d conv_in_;
  std::vector<Level> levels_;
  detail::VaeResnetBlock mid1_, mid2_;
  detail::VaeAttnBlock mid_attn_;
  detail::VaeNorm norm_out_;
  Conv2d conv_out_, quant_conv_;
};

}  // namespace mvar
