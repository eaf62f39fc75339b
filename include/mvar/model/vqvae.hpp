// mvar/model/vqvae.hpp — VqvaeDecoder: f̂ [cvae, P, P] → RGB [3, P·2^(levels−1), same] (SPEC §2,
// official `Decoder` of basic_vae.py preceded by `post_quant_conv`), and to_rgb8 (SPEC §1.13).
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
#include <set>
#include <span>
#include <string>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "mvar/core/assert.hpp"
#include "mvar/core/error.hpp"
#include "mvar/core/parallel.hpp"
#include "mvar/core/tensor_view.hpp"
#include "mvar/core/workspace.hpp"
#include "mvar/io/tensor_store.hpp"
#include "mvar/kernels/activations.hpp"
#include "mvar/kernels/conv.hpp"
#include "mvar/model/vae_config.hpp"

namespace mvar {

namespace detail {

inline constexpr int kVaeGroups = 32;      // GroupNorm groups (SPEC §2.1)
inline constexpr double kVaeNormEps = 1e-6;

struct VaeNorm {
  std::vector<float> weight, bias;
};

struct VaeResnetBlock {
  std::ptrdiff_t cin = 0, cout = 0;
  VaeNorm norm1, norm2;
  Conv2d conv1, conv2, nin_shortcut;  // nin_shortcut only when cin != cout
};

struct VaeAttnBlock {
  std::ptrdiff_t c = 0;
  VaeNorm norm;
  Conv2d qkv, proj_out;
};

struct VaeLevel {
  std::vector<VaeResnetBlock> blocks;
  std::vector<VaeAttnBlock> attn;  // empty, or one per block
  bool has_upsample = false;
  Conv2d upsample;
};

/// Binds tensors under official names, remembering every name it asked for.
/// With check_only, binds nothing: every name and shape is checked, no weight is read or packed.
class VaeBinder {
 public:
  VaeBinder(const TensorStore& store, std::string what, bool check_only = false)
      : store_(store), check_(store, std::move(what)), check_only_(check_only) {}

  Conv2d conv(const std::string& prefix, std::int64_t co, std::int64_t ci, std::int64_t k) {
    const TensorRef* w = get(prefix + ".weight", {co, ci, k, k});
    const TensorRef* b = get(prefix + ".bias", {co});
    if (!w || !b || check_only_) return {};
    const std::vector<float> bf = b->to_float();
    // float32 in the file (aligned): packed straight from the mapped bytes, else via a copy.
    std::vector<float> wf;
    const float* wp = reinterpret_cast<const float*>(w->data);
    if (w->dtype != DType::F32 || reinterpret_cast<std::uintptr_t>(w->data) % alignof(float) != 0) {
      wf = w->to_float();
      wp = wf.data();
    } else {
      store_.prefault(*w);
    }
    Conv2d c(TensorView<const float, 4>(wp, {co, ci, k, k}), bf);
    store_.release_pages(*w);  // the conv keeps its own packed copy: drop the mapped file pages
    return c;
  }
  VaeNorm norm(const std::string& prefix, std::int64_t c) {
    const TensorRef* w = get(prefix + ".weight", {c});
    const TensorRef* b = get(prefix + ".bias", {c});
    if (!w || !b || check_only_) return {};
    return {w->to_float(), b->to_float()};
  }
  VaeResnetBlock resnet(const std::string& prefix, std::int64_t cin, std::int64_t cout) {
    VaeResnetBlock r;
    r.cin = cin, r.cout = cout;
    r.norm1 = norm(prefix + ".norm1", cin);
    r.conv1 = conv(prefix + ".conv1", cout, cin, 3);
    r.norm2 = norm(prefix + ".norm2", cout);
    r.conv2 = conv(prefix + ".conv2", cout, cout, 3);
    if (cin != cout) r.nin_shortcut = conv(prefix + ".nin_shortcut", cout, cin, 1);
    return r;
  }
  VaeAttnBlock attn(const std::string& prefix, std::int64_t c) {
    VaeAttnBlock a;
    a.c = c;
    a.norm = norm(prefix + ".norm", c);
    a.qkv = conv(prefix + ".qkv", 3 * c, c, 1);
    a.proj_out = conv(prefix + ".proj_out", c, c, 1);
    return a;
  }
  /// Notes every key under one of `prefixes` that was never asked for (a configuration mismatch),
  /// then throws one error listing all problems, if any.
  void finish(const std::vector<std::string>& prefixes) {
    for (const auto& t : store_.tensors())
      for (const auto& p : prefixes)
        if (t.name.rfind(p, 0) == 0 && !asked_.count(t.name))
          check_.note(concat("unexpected '", t.name, "' ", t.shape_string(),
                             " (does the VaeConfig match the file?)"));
    check_.throw_if_any();
  }

 private:
  const TensorRef* get(const std::string& name, const std::vector<std::int64_t>& shape) {
    asked_.insert(name);
    return check_.get(name, shape);
  }
  const TensorStore& store_;
  WeightChecker check_;
  bool check_only_ = false;
  std::set<std::string> asked_;
};

/// Sum of a batch's lanes in lane order (xsimd 8.1's hadd trips GCC 12's -Wmaybe-uninitialized).
template <class B>
double lane_sum(const B& v) {
  alignas(64) float lanes[B::size];
  v.store_aligned(lanes);
  double s = 0;
  for (std::size_t i = 0; i < B::size; ++i) s += lanes[i];
  return s;
}

/// Per-group mean and 1/√(var + eps) of x [C, h·w] (contiguous), float rows summed into double.
inline void group_stats(ThreadPool& pool, TensorView<const float, 2> x, double* mean, double* inv_std) {
  using B = xsimd::batch<float>;
  const std::ptrdiff_t C = x.extent(0), N = x.extent(1), cg = C / kVaeGroups;
  constexpr std::ptrdiff_t L = static_cast<std::ptrdiff_t>(B::size);
  const std::ptrdiff_t body = N - N % L;
  parallel_for(pool, kVaeGroups, 1, [&](std::ptrdiff_t g0, std::ptrdiff_t g1) {
    for (std::ptrdiff_t g = g0; g < g1; ++g) {
      // Rows of ≤ 64k floats are summed in float lanes, then accumulated in double.
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
      inv_std[g] = 1.0 / std::sqrt(var + kVaeNormEps);
    }
  });
}

// GCC 12 reports -Wmaybe-uninitialized inside its own AVX-512 intrinsics (_mm512_undefined_ps) when
// xsimd's exp is inlined here; a false positive, silenced for this function only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
/// out.interior() = act(GroupNorm(x)) with act = SiLU or identity; zeroes out's borders.
inline void group_norm_to_planes(ThreadPool& pool, TensorView<const float, 3> x, const VaeNorm& nrm, bool silu_after,
                                 const PaddedImage& out) {
  using B = xsimd::batch<float>;
  const std::ptrdiff_t C = x.extent(0), H = x.extent(1), W = x.extent(2);
  MVAR_ASSERT(x.is_contiguous() && C % kVaeGroups == 0);
  MVAR_ASSERT(out.channels() == C && out.height() == H && out.width() == W);
  double mean[kVaeGroups], inv[kVaeGroups];
  group_stats(pool, x.reshape<2>({C, H * W}), mean, inv);
  const std::ptrdiff_t cg = C / kVaeGroups;
  constexpr std::ptrdiff_t L = static_cast<std::ptrdiff_t>(B::size);
  const std::ptrdiff_t body = W - W % L;
  const auto dst = out.interior();
  parallel_for(pool, C, 4, [&](std::ptrdiff_t c0, std::ptrdiff_t c1) {
    for (std::ptrdiff_t c = c0; c < c1; ++c) {
      const auto g = c / cg;
      const float a = float(inv[g] * nrm.weight[std::size_t(c)]);
      const float b = float(nrm.bias[std::size_t(c)] - mean[g] * inv[g] * nrm.weight[std::size_t(c)]);
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
      out.zero_border(c);
    }
  });
}
#pragma GCC diagnostic pop

/// Single-head attention of query rows [i0, i1) over all N keys (SPEC §2.1's AttnBlock core):
/// w[i, j] = softmax_j(scale · Σ_c q[c, i]·k[c, j]), o[c, i] = Σ_j v[c, j]·w[i, j]. q, k, v, o are
/// [C, N] row-major; w holds rows [i0, i1) of the [N, N] weights. Writes only o[:, i0:i1] and
/// w[i0:i1, :]; fixed summation order, so any split of the rows gives the same bits.
inline void attention_rows(const float* q, const float* k, const float* v, std::ptrdiff_t C, std::ptrdiff_t N,
                           float scale, std::ptrdiff_t i0, std::ptrdiff_t i1, float* w, float* o) {
  using B = xsimd::batch<float>;
  constexpr std::ptrdiff_t L = static_cast<std::ptrdiff_t>(B::size), R = 4;  // 4 query rows at a time
  const std::ptrdiff_t body = N - N % L;
  for (std::ptrdiff_t i = i0; i < i1; i += R) {
    const std::ptrdiff_t r = std::min(R, i1 - i);
    // Scores: a vector of keys × 4 query rows, summed over channels.
    for (std::ptrdiff_t j = 0; j < body; j += L) {
      B acc[R] = {B(0.0f), B(0.0f), B(0.0f), B(0.0f)};
      for (std::ptrdiff_t c = 0; c < C; ++c) {
        const B kv = B::load_unaligned(k + c * N + j);
        for (std::ptrdiff_t rr = 0; rr < r; ++rr) acc[rr] = xsimd::fma(B(q[c * N + i + rr]), kv, acc[rr]);
      }
      for (std::ptrdiff_t rr = 0; rr < r; ++rr) acc[rr].store_unaligned(w + (i + rr) * N + j);
    }
    for (std::ptrdiff_t j = body; j < N; ++j)
      for (std::ptrdiff_t rr = 0; rr < r; ++rr) {
        float acc = 0;
        for (std::ptrdiff_t c = 0; c < C; ++c) acc += q[c * N + i + rr] * k[c * N + j];
        w[(i + rr) * N + j] = acc;
      }
    // Softmax over keys in float32 (as the reference); the normaliser is summed in double.
    for (std::ptrdiff_t rr = 0; rr < r; ++rr) {
      float* row = w + (i + rr) * N;
      float mx = -INFINITY;
      for (std::ptrdiff_t j = 0; j < N; ++j) mx = std::max(mx, row[j] *= scale);
      double sum = 0;
      for (std::ptrdiff_t j = 0; j < N; ++j) sum += (row[j] = std::exp(row[j] - mx));
      const float inv = float(1.0 / sum);
      for (std::ptrdiff_t j = 0; j < N; ++j) row[j] *= inv;
    }
    // Output: dot products of value rows with the 4 weight rows.
    for (std::ptrdiff_t c = 0; c < C; ++c) {
      const float* vr = v + c * N;
      B acc[R] = {B(0.0f), B(0.0f), B(0.0f), B(0.0f)};
      for (std::ptrdiff_t j = 0; j < body; j += L) {
        const B vv = B::load_unaligned(vr + j);
        for (std::ptrdiff_t rr = 0; rr < r; ++rr)
          acc[rr] = xsimd::fma(vv, B::load_unaligned(w + (i + rr) * N + j), acc[rr]);
      }
      for (std::ptrdiff_t rr = 0; rr < r; ++rr) {
        double t = lane_sum(acc[rr]);
        for (std::ptrdiff_t j = body; j < N; ++j) t += double(vr[j]) * w[(i + rr) * N + j];
        o[c * N + i + rr] = float(t);
      }
    }
  }
}

}  // namespace detail

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
    /// 64 columns: at 32 px F(4×4) measured 2× slower).
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
      // fp32 the Winograd form measured no faster than the direct kernel there (640 channels at
      // 16 px: four tile groups in two panels, and 26 MB of transformed filters streamed per
      // panel), with bf16 it is 1.8× faster.
      const bool top = opts.precision == Precision::BF16;
      // side: the layer's image side at opts.latent_side (level L runs at P·2^(levels−1−L)).
      auto wino = [&](Conv2d& c, index side) {
        const bool narrow = c.in_channels() <= kLargeTileChannels && c.out_channels() <= kLargeTileChannels;
        c.enable_winograd(opts.precision, opts.large_tiles && narrow && side >= kLargeTileMinSide ? 4 : 2);
      };
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
  static constexpr index kLargeTileChannels = 160, kLargeTileMinSide = 64;

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
    Scratch s{ws.take<float>(z.act), ws.take<float>(z.act), ws.take<float>(z.planes),
              ws.take<float>(std::max<std::size_t>(z.attn, 1))};

    index side = P, C = cfg_.cvae;
    pad_copy(pool, fhat, PaddedImage(s.planes, C, side, side));
    post_quant_.forward(pool, PaddedImage(s.planes, C, side, side), view(s.a, C, side));
    pad_copy(pool, view(s.a, C, side), PaddedImage(s.planes, C, side, side));
    C = conv_in_.out_channels();
    conv_in_.forward(pool, PaddedImage(s.planes, cfg_.cvae, side, side), view(s.b, C, side));
    float* cur = s.b;
    float* spare = s.a;
    resnet(pool, mid1_, cur, spare, side, s);
    if (cfg_.using_mid_sa) attention(pool, mid_attn_, cur, side, s);
    resnet(pool, mid2_, cur, spare, side, s);
    for (int L = cfg_.levels() - 1; L >= 0; --L) {
      const auto& lv = levels_[std::size_t(L)];
      for (std::size_t j = 0; j < lv.blocks.size(); ++j) {
        resnet(pool, lv.blocks[j], cur, spare, side, s);
        if (!lv.attn.empty()) attention(pool, lv.attn[j], cur, side, s);
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
    detail::group_norm_to_planes(pool, view(cur, C, side), norm_out_, true, pl);
    conv_out_.forward(pool, pl, rgb);
    ws.release(mark);
  }

 private:
  struct Sizes {
    std::size_t act = 0, planes = 0, attn = 0;  // floats
  };
  struct Scratch {
    float *a, *b, *planes, *attn;  // two activations, the conv input planes, attention scratch
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
         [&](index c, index n) { z.attn = std::max(z.attn, std::size_t(3 * c * n + n * n + c * n)); });
    return z;
  }

  // cur [cin, side²] → cur [cout, side²], with spare as scratch: in place for an identity shortcut;
  // with a 1×1 shortcut the result ends in spare and the two pointers swap.
  void resnet(ThreadPool& pool, const detail::VaeResnetBlock& r, float*& cur, float*& spare, index side,
              const Scratch& s) const {
    const auto x = view(cur, r.cin, side);
    const PaddedImage p1(s.planes, r.cin, side, side);
    detail::group_norm_to_planes(pool, x, r.norm1, true, p1);
    const auto h = view(spare, r.cout, side);
    r.conv1.forward(pool, p1, h);
    const PaddedImage p2(s.planes, r.cout, side, side);
    detail::group_norm_to_planes(pool, h, r.norm2, true, p2);
    if (r.cin == r.cout) {
      r.conv2.forward(pool, p2, x, x);  // x + h, in place
      return;
    }
    r.conv2.forward(pool, p2, h);  // h is in the planes already: its buffer takes conv2's output
    const PaddedImage px(s.planes, r.cin, side, side);
    pad_copy(pool, x, px);
    r.nin_shortcut.forward(pool, px, h, h);  // h + nin_shortcut(x)
    std::swap(cur, spare);
  }

  // cur [C, side²] += proj_out(attention(qkv(GN(cur)))), one head, scale C^−½ (SPEC §2.1).
  void attention(ThreadPool& pool, const detail::VaeAttnBlock& a, float* cur, index side, const Scratch& s) const {
    const index C = a.c, N = side * side;
    const auto x = view(cur, C, side);
    const PaddedImage pn(s.planes, C, side, side);
    detail::group_norm_to_planes(pool, x, a.norm, false, pn);
    float* qkv = s.attn;
    float* weights = qkv + 3 * C * N;
    float* o = weights + N * N;
    a.qkv.forward(pool, pn, view(qkv, 3 * C, side));
    const float scale = float(1.0 / std::sqrt(double(C)));
    constexpr index kRows = 16;  // query rows per task (a multiple of attention_rows' 4)
    parallel_for(pool, N, kRows, [&](index i0, index i1) {
      detail::attention_rows(qkv, qkv + C * N, qkv + 2 * C * N, C, N, scale, i0, i1, weights, o);
    });
    pad_copy(pool, TensorView<const float, 3>(o, {C, side, side}), pn);
    a.proj_out.forward(pool, pn, x, x);
  }

  VaeConfig cfg_;
  Conv2d post_quant_, conv_in_;
  detail::VaeResnetBlock mid1_, mid2_;
  detail::VaeAttnBlock mid_attn_;
  std::vector<detail::VaeLevel> levels_;
  detail::VaeNorm norm_out_;
  Conv2d conv_out_;
};

/// hwc[(y·W + x)·3 + c] = ⌊255 · (clamp(img[c, y, x], −1, 1) + 1) · 0.5⌋ — truncation, not rounding,
/// as both official scripts do (SPEC §1.13). img [3, H, W]; hwc holds H·W·3 bytes.
inline void to_rgb8(TensorView<const float, 3> img, std::span<std::uint8_t> hwc) {
  const auto C = img.extent(0), H = img.extent(1), W = img.extent(2);
  if (C != 3 || static_cast<std::ptrdiff_t>(hwc.size()) != H * W * 3)
    throw Error(concat("to_rgb8: need img [3, H, W] and H·W·3 bytes, got [", C, ", ", H, ", ", W, "] and ", hwc.size(),
                       " bytes"));
  for (std::ptrdiff_t y = 0; y < H; ++y)
    for (std::ptrdiff_t x = 0; x < W; ++x)
      for (std::ptrdiff_t c = 0; c < 3; ++c) {
        const float v = (std::clamp(img(c, y, x), -1.0f, 1.0f) + 1.0f) * 0.5f;
        hwc[static_cast<std::size_t>((y * W + x) * 3 + c)] = static_cast<std::uint8_t>(255.0f * v);
      }
}

}  // namespace mvar
