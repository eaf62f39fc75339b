// mvar/model/weights.hpp — TransformerWeights: the VAR/MVAR transformer's tensors bound by their
// official state-dict names (SPEC §1.2), validated strictly against a ModelConfig.
//
// Binding checks every expected name and shape and rejects unexpected tensors, collecting all
// problems into one mvar::Error; when the shapes describe another configuration the message says
// which (e.g. "this file holds a depth-20, width-1280 model (preset d20)"). float32 tensors are
// used in place (zero copy from the memory-mapped file); float16/bfloat16 files are converted to
// float32 once at load.
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "mvar/core/buffer.hpp"
#include "mvar/core/error.hpp"
#include "mvar/core/tensor_view.hpp"
#include "mvar/io/tensor_store.hpp"
#include "mvar/kernels/norm.hpp"
#include "mvar/model/config.hpp"
#include "mvar/model/weight_checker.hpp"

namespace mvar {

/// A dense layer y = x·Wᵀ + b: W is [out, in] row-major.
struct LinearWeights {
  const float* w = nullptr;
  const float* b = nullptr;  // may be null
  int out = 0, in = 0;
  TensorView<const float, 2> weight() const { return TensorView<const float, 2>(w, {out, in}); }
};

struct BlockWeights {
  LinearWeights qkv;                  // bias = [q_bias, 0, v_bias] (owned, built at load)
  LinearWeights proj, fc1, fc2, ada;  // ada: [6C, C], applied to SiLU(cond) (per-block AdaLN only)
  const float* ada_gss = nullptr;     // [6C] added to the shared projection (shared AdaLN only)
  std::vector<float> q_mult;          // per head exp(min(scale_mul_h, ln 100)) (1 if no l2 norm)
};

struct TransformerWeights {
  TensorStore store;                  // keeps the mapped file alive
  std::vector<Buffer<float>> owned;   // converted / built tensors
  const float* pos_start = nullptr;   // [C]
  const float* pos_1LC = nullptr;     // [L, C]
  const float* class_emb = nullptr;   // [num_classes + 1, C]
  const float* lvl_embed = nullptr;   // [S, C]
  LinearWeights word_embed;           // [C, cvae]
  LinearWeights shared_ada;           // [6C, C] shared AdaLN projection (empty without shared AdaLN)
  std::vector<BlockWeights> blocks;
  LinearWeights head_ada;             // [2C, C]
  LinearWeights head;                 // [V, C]
  std::size_t bytes = 0;              // float32 bytes of all bound weights
};

namespace detail {

inline std::string shape_str(const std::vector<std::int64_t>& s) {
  return TensorRef{"", DType::F32, s}.shape_string();
}

}  // namespace detail

/// The sizes a transformer state dict's shapes describe (what a file holds, before binding).
struct TransformerFileShape {
  int depth = 0, heads = 0, num_classes = 0;
  std::int64_t width = 0;
  std::int64_t seq_len = 0;   // L, from pos_1LC [1, L, C] (680: the 256-px schedule, 2240: 512 px); 0 if absent
  bool shared_aln = false;    // shared_ada_lin.1.weight present (VAR-d36 layout)
  /// "d16" … "d30" when the sizes are an official 256-px preset's (per-block AdaLN, L = 680),
  /// "d36" for VAR-d36's (depth 36, width 2304, shared AdaLN, L = 2240), else empty.
  std::string official_preset() const {
    for (int d : {16, 20, 24, 30})
      if (depth == d && width == 64 * d && heads == d && !shared_aln && seq_len == kPatchNums256.total()) return concat("d", d);
    if (depth == 36 && width == 64 * 36 && heads == 36 && shared_aln && seq_len == kPatchNums512.total()) return "d36";
    return "";
  }
};

/// Reads depth, width, heads, classes, L and the AdaLN layout from a state dict's shapes; nullopt
/// if it has no class_emb.weight. Blocks are counted by their attention (present in both layouts).
inline std::optional<TransformerFileShape> transformer_file_shape(const TensorStore& st) {
  const TensorRef* ce = st.find("class_emb.weight");
  if (!ce || ce->shape.size() != 2) return std::nullopt;
  TransformerFileShape f;
  while (st.find(concat("blocks.", f.depth, ".attn.mat_qkv.weight"))) ++f.depth;
  f.width = ce->shape[1];
  f.num_classes = int(ce->shape[0] - 1);
  if (const TensorRef* sm = st.find("blocks.0.attn.scale_mul_1H11"); sm && sm->shape.size() == 4) f.heads = int(sm->shape[1]);
  if (const TensorRef* pos = st.find("pos_1LC"); pos && pos->shape.size() == 3) f.seq_len = pos->shape[1];
  f.shared_aln = st.find("shared_ada_lin.1.weight") != nullptr;
  return f;
}

namespace detail {

/// Says which official preset (or which sizes) a state dict's shapes describe.
inline std::string describe_transformer_file(const TensorStore& st) {
  const auto f = transformer_file_shape(st);
  if (!f) return "";
  const std::string preset = f->official_preset();
  return concat("this file holds a depth-", f->depth, ", width-", f->width, ", ", f->heads, "-head model with ",
                f->num_classes, " classes, L = ", f->seq_len, " tokens, ", f->shared_aln ? "shared" : "per-block",
                " AdaLN", preset.empty() ? "" : " (preset " + preset + ")");
}

/// One clear error for a file whose AdaLN layout is not the configuration's (a shared-AdaLN file
/// bound as per-block, or the reverse) — instead of 2·depth "missing" lines.
inline void check_adaln_layout(const TensorStore& st, const ModelConfig& cfg) {
  const bool file_shared = st.find("shared_ada_lin.1.weight") || st.find("blocks.0.ada_gss");
  const bool file_per_block = st.find("blocks.0.ada_lin.1.weight") != nullptr;
  if (!cfg.shared_aln && file_shared && !file_per_block)
    throw Error(concat(st.source(), ": the file uses shared AdaLN (it holds '",
                       st.find("shared_ada_lin.1.weight") ? "shared_ada_lin.1.weight" : "blocks.0.ada_gss",
                       "', the VAR-d36 layout) but the configuration expects per-block AdaLN: missing "
                       "'blocks.0.ada_lin.1.weight'. Bind it with a shared_aln configuration (e.g. preset d36)"));
  if (cfg.shared_aln && file_per_block && !file_shared)
    throw Error(concat(st.source(), ": the file uses per-block AdaLN (it holds 'blocks.0.ada_lin.1.weight', unexpected "
                       "with shared AdaLN) but the configuration expects shared AdaLN: missing "
                       "'shared_ada_lin.1.weight' and 'blocks.0.ada_gss'. Bind it with a per-block configuration "
                       "(shared_aln = false, e.g. presets d16…d30)"));
}

}  // namespace detail

/// Binds and validates the transformer tensors of `st` for configuration `cfg`.
inline TransformerWeights bind_transformer_weights(const TensorStore& st, const ModelConfig& cfg) {
  if (const char* why = cfg.validate()) throw Error(why);
  detail::check_adaln_layout(st, cfg);
  const std::int64_t C = cfg.width, L = cfg.seq_len(), S = cfg.num_scales(), F = cfg.ffn_hidden(), V = cfg.vocab;
  const std::int64_t H = cfg.heads;
  TransformerWeights tw;
  tw.store = st;
  detail::WeightChecker check(st, "transformer");
  std::set<std::string> used;

  auto get = [&](const std::string& name, std::vector<std::int64_t> shape) -> const float* {
    used.insert(name);
    const TensorRef* t = check.get(name, shape);
    if (!t) return nullptr;
    if (t->dtype == DType::F32 && reinterpret_cast<std::uintptr_t>(t->data) % alignof(float) == 0) {
      tw.bytes += t->nbytes;
      return reinterpret_cast<const float*>(t->data);
    }
    Buffer<float> b(static_cast<std::size_t>(t->numel()));
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = load_as_float(t->data, t->dtype, i);
    tw.bytes += b.bytes();
    tw.owned.push_back(std::move(b));
    return tw.owned.back().data();
  };
  auto lin = [&](const std::string& prefix, std::int64_t out, std::int64_t in, bool bias = true) {
    LinearWeights l;
    l.w = get(prefix + ".weight", {out, in});
    if (bias) l.b = get(prefix + ".bias", {out});
    l.out = int(out);
    l.in = int(in);
    return l;
  };
  // Buffers the official files carry: validated when present, never required.
  auto optional_buffer = [&](const std::string& name, std::vector<std::int64_t> shape) {
    used.insert(name);
    check.optional(name, shape);
  };

  tw.pos_start = get("pos_start", {1, 1, C});
  tw.pos_1LC = get("pos_1LC", {1, L, C});
  tw.class_emb = get("class_emb.weight", {cfg.num_classes + (cfg.null_class ? 1 : 0), C});
  tw.lvl_embed = get("lvl_embed.weight", {S, C});
  tw.word_embed = lin("word_embed", C, cfg.cvae);
  optional_buffer("lvl_1L", {1, L});
  optional_buffer("attn_bias_for_masking", {1, 1, L, L});
  if (cfg.shared_aln) tw.shared_ada = lin("shared_ada_lin.1", 6 * C, C);
  for (int i = 0; i < cfg.depth; ++i) {
    const std::string p = concat("blocks.", i, ".");
    BlockWeights b;
    b.qkv = lin(p + "attn.mat_qkv", 3 * C, C, /*bias=*/false);
    const float* qb = get(p + "attn.q_bias", {C});
    const float* vb = get(p + "attn.v_bias", {C});
    optional_buffer(p + "attn.zero_k_bias", {C});
    const float* sm = get(p + "attn.scale_mul_1H11", {1, H, 1, 1});
    b.proj = lin(p + "attn.proj", C, C);
    b.fc1 = lin(p + "ffn.fc1", F, C);
    b.fc2 = lin(p + "ffn.fc2", C, F);
    if (cfg.shared_aln)
      b.ada_gss = get(p + "ada_gss", {1, 1, 6, C});
    else
      b.ada = lin(p + "ada_lin.1", 6 * C, C);
    if (qb && vb) {
      Buffer<float> bias(static_cast<std::size_t>(3 * C));  // zero-initialised: the k part stays 0
      for (std::int64_t c = 0; c < C; ++c) {
        bias[std::size_t(c)] = qb[c];
        bias[std::size_t(2 * C + c)] = vb[c];
      }
      b.qkv.b = bias.data();
      tw.owned.push_back(std::move(bias));
    }
    b.q_mult.assign(std::size_t(H), 1.0f);
    if (sm && cfg.attn_l2_norm)
      for (std::int64_t h = 0; h < H; ++h) b.q_mult[std::size_t(h)] = std::exp(std::min(sm[h], kLn100));
    tw.blocks.push_back(std::move(b));
  }
  tw.head_ada = lin("head_nm.ada_lin.1", 2 * C, C);
  tw.head = lin("head", V, C);

  for (const auto& t : st.tensors())
    if (!used.count(t.name)) check.note(concat("unexpected tensor '", t.name, "' ", t.shape_string()));
  if (const auto& problems = check.problems(); !problems.empty()) {
    std::string msg = concat(st.source(), ": the transformer weights do not match the configuration (depth ", cfg.depth,
                             ", width ", cfg.width, ", heads ", cfg.heads, ", ", cfg.num_scales(), " scales, L = ",
                             cfg.seq_len(), ", vocab ", cfg.vocab, ", ", cfg.shared_aln ? "shared" : "per-block",
                             " AdaLN): ", problems.size(), " problem(s):");
    const std::size_t shown = std::min<std::size_t>(problems.size(), 40);
    for (std::size_t i = 0; i < shown; ++i) msg += "\n  - " + problems[i];
    if (shown < problems.size()) msg += concat("\n  ... and ", problems.size() - shown, " more");
    if (auto d = detail::describe_transformer_file(st); !d.empty()) msg += "\n  note: " + d;
    throw Error(msg);
  }
  return tw;
}

}  // namespace mvar
