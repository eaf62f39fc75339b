// mvar/model/transformer.hpp — Transformer<Cfg>: one next-scale step of the VAR/MVAR transformer
// (SPEC §1.3–§1.7): embeddings, `depth` AdaLN self-attention blocks, the AdaLN head, logits.
//
// Template parameter:
//   Cfg — a ModelConfig (sizes, scales, MVAR window); checked at compile time.
//
// The transformer is attention-agnostic: every block hands its L2-normalised q̂, k̂ and v to an
// `attend` callable supplied by the trajectory policy (full in-scale, neighbourhood, or
// block-causal prefix over a KV cache — sampling/trajectory.hpp). That is what lets one model
// serve MVAR and VAR.
//
// Row layout: a step processes R rows (images, CFG-doubled: conditional rows first) of n tokens;
// activations are [R·n, C] row-major with row r·n + t. Scratch comes from a Workspace sized once
// by workspace_bytes(max_rows); forward() allocates nothing.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <functional>
#include <span>

#include "mvar/core/error.hpp"
#include "mvar/core/parallel.hpp"
#include "mvar/core/tensor_view.hpp"
#include "mvar/core/workspace.hpp"
#include "mvar/io/tensor_store.hpp"
#include "mvar/kernels/activations.hpp"
#include "mvar/kernels/linear.hpp"
#include "mvar/kernels/norm.hpp"
#include "mvar/model/config.hpp"
#include "mvar/model/weights.hpp"

namespace mvar {

/// Where the transformer's token-wise weights live (see the Transformer constructor).
enum class WeightLayout { InPlace, PackedF32, PackedBF16, PackedInt8 };

inline const char* layout_name(WeightLayout l) {
  return l == WeightLayout::InPlace     ? "fp32 in place"
         : l == WeightLayout::PackedF32  ? "fp32 packed"
         : l == WeightLayout::PackedBF16 ? "bf16 packed"
                                         : "int8 packed";
}

/// What a block hands to the attention policy: q̂, k̂, v of the step's tokens inside qkv
/// ([R·n, 3C]: q at columns [0, C), k̂ at [C, 2C), v at [2C, 3C); heads interleaved), and
/// where to write the attention output ([R·n, C], heads concatenated head-major).
struct AttentionCall {
  int block = 0;   // block index
  int scale = 0;   // step s
  int rows = 0;    // R
  int side = 0;    // pn_s (tokens n = side²)
  int heads = 0, head_dim = 0;
  TensorView<const float, 2> qkv;
  TensorView<float, 2> out;

  int tokens() const { return side * side; }
  int width() const { return heads * head_dim; }
  /// q̂ (part 0), k̂ (1) or v (2) as a [R, n, heads, head_dim] view.
  TensorView<const float, 4> part(int which) const {
    const std::ptrdiff_t C = width(), n = tokens();
    return TensorView<const float, 4>(qkv.data() + which * C, {rows, n, heads, head_dim}, {n * qkv.stride(0), qkv.stride(0), head_dim, 1});
  }
  /// The same as a [R, side, side, heads, head_dim] grid (row-major tokens).
  TensorView<const float, 5> grid(int which) const {
    const std::ptrdiff_t C = width(), n = tokens(), rs = qkv.stride(0);
    return TensorView<const float, 5>(qkv.data() + which * C, {rows, side, side, heads, head_dim},
                                      {n * rs, side * rs, rs, head_dim, 1});
  }
  TensorView<float, 4> out4() const {
    const std::ptrdiff_t n = tokens();
    return TensorView<float, 4>(out.data(), {rows, n, heads, head_dim}, {n * out.stride(0), out.stride(0), head_dim, 1});
  }
  TensorView<float, 5> out5() const {
    const std::ptrdiff_t n = tokens(), rs = out.stride(0);
    return TensorView<float, 5>(out.data(), {rows, side, side, heads, head_dim}, {n * rs, side * rs, rs, head_dim, 1});
  }
};

/// Optional observation points (tests, teacher forcing, debugging). Views are valid during the call.
struct ForwardHooks {
  std::function<void(int scale, int block, TensorView<const float, 2> x)> after_block;
};

/// Per-generation conditioning: class embeddings and the AdaLN projections, which do not depend on
/// the scale and are therefore computed once per image instead of once per step.
struct Conditioning {
  int rows = 0;
  TensorView<float, 2> cond;      // [R, C]   class embedding (also the step-0 token content)
  TensorView<float, 2> ada;       // [depth·R, 6C]: block i rows [i·R, (i+1)·R)
  TensorView<float, 2> head_ada;  // [R, 2C]
};

template <ModelConfig Cfg>
class Transformer {
  static_assert(Cfg.heads >= 1 && Cfg.width % Cfg.heads == 0, "ModelConfig: width must be a multiple of heads");
  static_assert(Cfg.depth >= 1, "ModelConfig: depth must be at least 1");
  static_assert(Cfg.kernel % 2 == 1, "ModelConfig: the neighbourhood window must be odd");
  static_assert(Cfg.valid(), "ModelConfig: invalid configuration (call Cfg.validate() for the reason)");

 public:
  static constexpr ModelConfig config = Cfg;
  using Conditioning = mvar::Conditioning;
  static constexpr int C = Cfg.width, H = Cfg.heads, HD = Cfg.head_dim(), F = Cfg.ffn_hidden(), V = Cfg.vocab;

  /// Binds the weights (strictly, by official name). With WeightLayout::InPlace the float32
  /// tensors are used where they lie (zero copy from the memory map). Packed layouts copy the
  /// token-wise layers (qkv, proj, fc1, fc2, head — two thirds of d16's weights, nearly all of its
  /// FLOPs) once into GEMM panels — PackedF32, or PackedBF16 for AVX512-BF16 dot products with
  /// fp32 accumulation (packed fp32 where the build lacks AVX512-BF16), which packs the AdaLN
  /// projections (the other third) as bf16 too — or PackedInt8 (int8 weights with per-output
  /// scales, activations quantised per row; kernels/gemm_int8.hpp), which packs the AdaLN
  /// projections as int8 too — and release the mapped source pages, so the resident set holds one
  /// copy. The kernel form (AVX2 / AVX-512 / AMX) is chosen at packing time (cpu_dispatch.hpp).
  explicit Transformer(const TensorStore& st, WeightLayout layout = WeightLayout::InPlace)
      : w_(bind_transformer_weights(st, Cfg)) {
    if (layout == WeightLayout::InPlace) return;
    const Precision p = layout == WeightLayout::PackedBF16 ? Precision::BF16
                        : layout == WeightLayout::PackedInt8 ? Precision::Int8
                                                             : Precision::F32;
    // Packs one layer into `into`: the packers read 32 rows at a time, so the file pages are
    // faulted in at once first, and released after (the packed copy replaces them).
    auto pack_into = [&](std::vector<PackedLinear>& into, const LinearWeights& l, const std::string& name) {
      const TensorRef* t = st.find(name + ".weight");
      if (t) st.prefault(*t);
      into.emplace_back(l.weight(), l.b, p);
      if (t) st.release_pages(*t);
    };
    auto pack = [&](const LinearWeights& l, const std::string& name) { pack_into(packed_, l, name); };
    for (int i = 0; i < Cfg.depth; ++i) {
      const auto& b = w_.blocks[std::size_t(i)];
      const std::string pre = concat("blocks.", i, ".");
      pack(b.qkv, pre + "attn.mat_qkv");
      pack(b.proj, pre + "attn.proj");
      pack(b.fc1, pre + "ffn.fc1");
      pack(b.fc2, pre + "ffn.fc2");
    }
    pack(w_.head, "head");
    const Precision got = packed_.front().precision();
    layout_ = got == Precision::BF16 ? WeightLayout::PackedBF16 : got == Precision::Int8 ? WeightLayout::PackedInt8 : WeightLayout::PackedF32;
    if (layout_ != WeightLayout::PackedF32) {
      // The AdaLN projections (a third of d16's weights, run once per generation on ≤ 2·batch
      // rows) are bf16 / int8 too: half / a quarter of their memory. (In fp32 they stay in place:
      // packing would copy them for no speed.) Order: the blocks' (or the one shared projection),
      // then the head's.
      if constexpr (Cfg.shared_aln)
        pack_into(packed_ada_, w_.shared_ada, "shared_ada_lin.1");
      else
        for (int i = 0; i < Cfg.depth; ++i) pack_into(packed_ada_, w_.blocks[std::size_t(i)].ada, concat("blocks.", i, ".ada_lin.1"));
      pack_into(packed_ada_, w_.head_ada, "head_nm.ada_lin.1");
    }
  }

  const TransformerWeights& weights() const { return w_; }
  /// Bytes of the weights the forward pass reads (packed copies in BF16 mode, plus the rest).
  std::size_t weight_bytes() const {
    if (packed_.empty()) return w_.bytes;
    std::size_t b = w_.bytes;
    for (const auto& p : packed_) b += p.bytes();
    for (const auto& p : packed_ada_) b += p.bytes();
    auto minus = [&](const LinearWeights& l) { b -= sizeof(float) * std::size_t(l.out) * l.in; };
    for (const auto& blk : w_.blocks) {
      for (const LinearWeights* l : {&blk.qkv, &blk.proj, &blk.fc1, &blk.fc2}) minus(*l);
      if (!packed_ada_.empty()) minus(blk.ada);  // out = 0 (nothing) with shared AdaLN
    }
    if (!packed_ada_.empty()) minus(w_.head_ada), minus(w_.shared_ada);
    minus(w_.head);
    return b;
  }
  WeightLayout layout() const { return layout_; }

  /// Bytes of the Conditioning arrays for R rows (plus the shared AdaLN projection's R × 6C).
  static std::size_t conditioning_bytes(int R) {
    return Workspace::round(sizeof(float) * std::size_t(R) * C) * 2 +
           Workspace::round(sizeof(float) * std::size_t(Cfg.depth) * R * 6 * C) + Workspace::round(sizeof(float) * std::size_t(R) * 2 * C) +
           (Cfg.shared_aln ? Workspace::round(sizeof(float) * std::size_t(R) * 6 * C) : 0);
  }
  /// Scratch bytes one forward() over at most `max_rows` (= R·n) token rows needs.
  static std::size_t workspace_bytes(std::ptrdiff_t max_rows) {
    const std::size_t r = std::size_t(max_rows);
    return Workspace::round(4 * r * C) * 2 /*h, attn*/ + Workspace::round(4 * r * 3 * C) + Workspace::round(4 * r * F) + 4 * kAlignment;
  }

  /// Class embeddings of `labels` (num_classes = null class) and all AdaLN projections. With
  /// shared AdaLN, block i's six chunks are shared_ada_lin(cond) + ada_gss_i (official
  /// AdaLNSelfAttn: `ada_gss + cond_BD` before the unbind), so forward() reads one layout.
  Conditioning condition(ThreadPool& pool, std::span<const int> labels, Workspace& ws) const {
    const int R = int(labels.size());
    Conditioning c;
    c.rows = R;
    c.cond = TensorView<float, 2>(ws.take<float>(std::size_t(R) * C), {R, C});
    auto silu_c = TensorView<float, 2>(ws.take<float>(std::size_t(R) * C), {R, C});
    c.ada = TensorView<float, 2>(ws.take<float>(std::size_t(Cfg.depth) * R * 6 * C), {Cfg.depth * R, 6 * C});
    c.head_ada = TensorView<float, 2>(ws.take<float>(std::size_t(R) * 2 * C), {R, 2 * C});
    for (int r = 0; r < R; ++r) {
      const int rows = Cfg.num_classes + (Cfg.null_class ? 1 : 0);
      if (labels[r] < 0 || labels[r] >= rows)
        throw Error(concat("class label ", labels[r], " is out of range [0, ", rows - 1, "]"));
      std::memcpy(c.cond.row(r), w_.class_emb + std::size_t(labels[r]) * C, sizeof(float) * C);
      std::memcpy(silu_c.row(r), c.cond.row(r), sizeof(float) * C);
    }
    silu_inplace({silu_c.data(), std::size_t(R) * C});
    auto ada = [&](int i, const LinearWeights& l, TensorView<float, 2> out) {
      if (packed_ada_.empty()) linear(pool, silu_c, l.weight(), l.b, out);
      else packed_ada_[std::size_t(i)](pool, silu_c, out);
    };
    if constexpr (Cfg.shared_aln) {
      auto shared = TensorView<float, 2>(ws.take<float>(std::size_t(R) * 6 * C), {R, 6 * C});
      ada(0, w_.shared_ada, shared);
      for (int i = 0; i < Cfg.depth; ++i) {
        const float* gss = w_.blocks[std::size_t(i)].ada_gss;
        for (int r = 0; r < R; ++r) {
          float* out = c.ada.row(i * R + r);
          const float* sh = shared.row(r);
          for (int j = 0; j < 6 * C; ++j) out[j] = gss[j] + sh[j];
        }
      }
    } else {
      for (int i = 0; i < Cfg.depth; ++i) ada(i, w_.blocks[std::size_t(i)].ada, c.ada.slice(0, i * R, (i + 1) * R));
    }
    ada(int(packed_ada_.size()) - 1, w_.head_ada, c.head_ada);
    return c;
  }

  /// Step-0 input: x[r] = cond[r] + pos_start + lvl_embed[0] + pos_1LC[0]   (x: [R, C]).
  void embed_first(const Conditioning& c, int R, TensorView<float, 2> x) const {
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < C; ++j) x(r, j) = c.cond(r, j) + w_.pos_start[j] + (w_.lvl_embed[j] + w_.pos_1LC[j]);
  }

  /// Step-s input of one image: x[n, C] = word_embed(z[n, cvae]) + lvl_embed[s] + pos_1LC[begin_s + t].
  void embed_scale(ThreadPool& pool, int s, TensorView<const float, 2> z, TensorView<float, 2> x) const {
    linear(pool, z, w_.word_embed.weight(), w_.word_embed.b, x);
    const int n = Cfg.patch_nums.tokens(s), b0 = Cfg.patch_nums.begin(s);
    for (int t = 0; t < n; ++t)
      for (int j = 0; j < C; ++j) x(t, j) += w_.lvl_embed[std::size_t(s) * C + j] + w_.pos_1LC[std::size_t(b0 + t) * C + j];
  }

  /// Runs every block on x ([R·n, C], in place) for step s, then the head into logits
  /// ([R·n, V]) if logits is non-empty. `attend(const AttentionCall&)` computes attention.
  template <class Attend>
  void forward(ThreadPool& pool, int s, const Conditioning& c, int R, TensorView<float, 2> x, Attend&& attend,
               TensorView<float, 2> logits, Workspace& ws, const ForwardHooks* hooks = nullptr) const {
    const int side = Cfg.patch_nums[s], n = side * side;
    const std::ptrdiff_t M = std::ptrdiff_t(R) * n;
    MVAR_ASSERT(x.extent(0) == M && x.extent(1) == C && R <= c.rows);
    const auto mark = ws.mark();
    TensorView<float, 2> h(ws.take<float>(std::size_t(M) * C), {M, C});
    TensorView<float, 2> att(ws.take<float>(std::size_t(M) * C), {M, C});
    TensorView<float, 2> qkv(ws.take<float>(std::size_t(M) * 3 * C), {M, 3 * C});
    TensorView<float, 2> ffn(ws.take<float>(std::size_t(M) * F), {M, F});

    // Row-wise work runs on the pool in chunks of kRowGrain rows (each row is computed by one
    // chunk in a fixed order, so the bits do not depend on the thread count).
    constexpr std::ptrdiff_t kRowGrain = std::max(1, 8192 / C);
    auto rows = [&](auto&& f) { parallel_for(pool, M, kRowGrain, f); };
    // x ← x + g ⊙ y: g is the gate of the row's image.
    auto gated_add = [&](TensorView<const float, 2> y, int gate_chunk, int block) {
      rows([&](std::ptrdiff_t r0, std::ptrdiff_t r1) {
        for (std::ptrdiff_t row = r0; row < r1; ++row) {
          const float* g = c.ada.row(block * c.rows + row / n) + gate_chunk * C;
          float* xr = x.row(row);
          const float* yr = y.row(row);
          for (int j = 0; j < C; ++j) xr[j] += g[j] * yr[j];
        }
      });
    };
    // h ← LN(x) ⊙ (1 + scale) + shift with the (scale, shift) chunks of the row's image.
    auto norm_modulate = [&](int scale_chunk, int shift_chunk, int block, const TensorView<float, 2>& ada, int ada_rows) {
      rows([&](std::ptrdiff_t r0, std::ptrdiff_t r1) {
        layer_norm(x.slice(0, r0, r1), h.slice(0, r0, r1));
        for (std::ptrdiff_t a = r0; a < r1;) {  // runs of rows of one image
          const std::ptrdiff_t img = a / n, b = std::min(r1, (img + 1) * n);
          const float* ad = ada.row(block * ada_rows + img);
          modulate(h.slice(0, a, b), ad + scale_chunk * C, ad + shift_chunk * C, h.slice(0, a, b));
          a = b;
        }
      });
    };

    for (int i = 0; i < Cfg.depth; ++i) {
      const BlockWeights& bw = w_.blocks[std::size_t(i)];
      // AdaLN chunks: 0 gamma1, 1 gamma2, 2 scale1, 3 scale2, 4 shift1, 5 shift2 (SPEC §1.4).
      norm_modulate(2, 4, i, c.ada, c.rows);
      layer(pool, 4 * i + 0, bw.qkv, h, qkv);
      if (Cfg.attn_l2_norm) {
        rows([&](std::ptrdiff_t r0, std::ptrdiff_t r1) {
          l2_normalize_heads(qkv.slice(0, r0, r1).slice(1, 0, C), H, bw.q_mult.data());
          l2_normalize_heads(qkv.slice(0, r0, r1).slice(1, C, 2 * C), H, nullptr);
        });
      }
      AttentionCall call{i, s, R, side, H, HD, qkv, att};
      attend(call);
      layer(pool, 4 * i + 1, bw.proj, att, h);
      gated_add(h, 0, i);
      norm_modulate(3, 5, i, c.ada, c.rows);
      layer(pool, 4 * i + 2, bw.fc1, h, ffn);
      rows([&](std::ptrdiff_t r0, std::ptrdiff_t r1) { gelu_tanh_inplace({ffn.row(r0), std::size_t(r1 - r0) * F}); });
      layer(pool, 4 * i + 3, bw.fc2, ffn, att);
      gated_add(att, 1, i);
      if (hooks && hooks->after_block) hooks->after_block(s, i, x);
    }
    if (logits.size() > 0) {
      // Head: [scale | shift] = head_ada (chunk 0 scale, chunk 1 shift), SPEC §1.7.
      norm_modulate(0, 1, 0, c.head_ada, c.rows);
      layer(pool, 4 * Cfg.depth, w_.head, h, logits);
    }
    ws.release(mark);
  }

 private:
  /// Token-wise layer `index` (4 per block, then the head): packed if so configured.
  void layer(ThreadPool& pool, int index, const LinearWeights& l, TensorView<const float, 2> x, TensorView<float, 2> y) const {
    if (packed_.empty()) linear(pool, x, l.weight(), l.b, y);
    else packed_[std::size_t(index)](pool, x, y);
  }

  TransformerWeights w_;
  std::vector<PackedLinear> packed_;
  std::vector<PackedLinear> packed_ada_;  // PackedBF16 / PackedInt8: blocks' AdaLN, then the head's
  WeightLayout layout_ = WeightLayout::InPlace;
};

}  // namespace mvar
