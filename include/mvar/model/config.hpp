// mvar/model/config.hpp — ModelConfig: the compile-time description of a VAR/MVAR transformer.
//
// A structural type, so it can be a template argument: Transformer<d16> gets its sizes as
// constants (head_dim unrolls the attention kernels; everything else is runtime arithmetic on
// constants). Presets cover the official zoo — d16/d20/d24/d30 at 256 px (SPEC §1.1) and d36 with
// shared AdaLN at 512 px (SPEC §1.15) — and the tiny models of the test fixtures. validate() is constexpr and is checked by static_assert in the
// Transformer, so an invalid configuration fails at compile time with a readable message.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace mvar {

/// The side lengths of the token maps, coarse to fine (at most 16 scales).
struct PatchNums {
  std::array<int, 16> side{};
  int count = 0;

  constexpr int operator[](int s) const { return side[static_cast<std::size_t>(s)]; }
  constexpr int size() const { return count; }
  constexpr int last() const { return side[static_cast<std::size_t>(count - 1)]; }
  /// Tokens of scale s.
  constexpr int tokens(int s) const { return side[static_cast<std::size_t>(s)] * side[static_cast<std::size_t>(s)]; }
  /// First position of scale s in the flattened sequence of all scales.
  constexpr int begin(int s) const {
    int b = 0;
    for (int j = 0; j < s; ++j) b += tokens(j);
    return b;
  }
  /// L = Σ tokens.
  constexpr int total() const { return begin(count); }
  constexpr int max_tokens() const { return tokens(count - 1); }
};

constexpr PatchNums make_patch_nums(std::initializer_list<int> v) {
  PatchNums p{};
  for (int x : v) p.side[static_cast<std::size_t>(p.count++)] = x;
  return p;
}

inline constexpr PatchNums kPatchNums256 = make_patch_nums({1, 2, 3, 4, 5, 6, 8, 10, 13, 16});
/// The official 512-px schedule (VAR-d36, `--pn=512` in the official training script): a 32×32
/// latent, L = 2240 tokens.
inline constexpr PatchNums kPatchNums512 = make_patch_nums({1, 2, 3, 4, 6, 9, 13, 18, 24, 32});

struct ModelConfig {
  int depth = 16;
  int width = 1024;          // C = embed_dim
  int heads = 16;
  int mlp_ratio = 4;         // FFN hidden = mlp_ratio · C
  int vocab = 4096;          // V, codebook size
  int cvae = 32;             // codebook dimension
  int num_classes = 1000;    // class index num_classes = null class (CFG)
  PatchNums patch_nums = kPatchNums256;
  bool attn_l2_norm = true;
  /// Shared AdaLN (official `shared_aln=True`, VAR-d36): one projection SiLU → Linear(C → 6C)
  /// (`shared_ada_lin.1`) computed once per image, plus a learned per-block offset
  /// `blocks.i.ada_gss` [1, 1, 6, C] added to it, instead of a per-block `ada_lin`. The head keeps
  /// its own `head_nm.ada_lin` in both layouts (official basic_var.py / var.py).
  bool shared_aln = false;
  /// class_emb holds num_classes + 1 rows, the last being the unconditional ("null") class that
  /// classifier-free guidance runs against (every official model). False: num_classes rows, no
  /// null class — such a model can neither draw unconditionally nor guide.
  bool null_class = true;
  int refine_step = 8;       // MVAR: scales s ≥ refine_step use neighbourhood attention
  int kernel = 7;            // MVAR: neighbourhood window (odd)

  constexpr int head_dim() const { return width / heads; }
  constexpr int ffn_hidden() const { return width * mlp_ratio; }
  constexpr int num_scales() const { return patch_nums.size(); }
  constexpr int seq_len() const { return patch_nums.total(); }

  /// nullptr if valid, otherwise what is wrong (used by static_assert and at runtime).
  constexpr const char* validate() const {
    if (depth < 1) return "ModelConfig: depth must be ≥ 1";
    if (heads < 1 || width % heads != 0) return "ModelConfig: width must be a positive multiple of heads";
    if (mlp_ratio < 1) return "ModelConfig: mlp_ratio must be ≥ 1";
    if (vocab < 2 || cvae < 1 || num_classes < 1) return "ModelConfig: vocab ≥ 2, cvae ≥ 1, num_classes ≥ 1 required";
    if (patch_nums.count < 1 || patch_nums.count > 16) return "ModelConfig: 1 to 16 scales required";
    for (int s = 0; s < patch_nums.count; ++s) {
      if (patch_nums[s] < 1) return "ModelConfig: patch_nums must be positive";
      if (s > 0 && patch_nums[s] <= patch_nums[s - 1]) return "ModelConfig: patch_nums must be strictly increasing";
    }
    if (kernel < 1 || kernel % 2 == 0) return "ModelConfig: the neighbourhood kernel must be odd";
    if (refine_step < 0) return "ModelConfig: refine_step must be ≥ 0";
    for (int s = refine_step; s < patch_nums.count; ++s)
      if (patch_nums[s] < kernel) return "ModelConfig: scales at or after refine_step must be at least kernel wide";
    return nullptr;
  }
  constexpr bool valid() const { return validate() == nullptr; }

  /// Parameter count of the VAR/MVAR transformer (SPEC §1.1 formula, buffers excluded).
  constexpr std::int64_t parameters() const {
    const std::int64_t C = width, L = seq_len(), S = num_scales(), F = ffn_hidden();
    const std::int64_t ada = shared_aln ? 6 * C /*ada_gss*/ : 6 * C * C + 6 * C /*ada_lin*/;
    const std::int64_t per_block = 3 * C * C /*qkv*/ + C * C + C /*proj*/ + F * C + F /*fc1*/ + C * F + C /*fc2*/ +
                                   ada + 2 * C /*q,v bias*/ + heads;
    const std::int64_t shared = shared_aln ? 6 * C * C + 6 * C : 0;  // shared_ada_lin.1
    return depth * per_block + shared + C * (cvae + 1) + (num_classes + (null_class ? 1 : 0)) * C + C + L * C +
           S * C + (2 * C * C + 2 * C) + (vocab * C + vocab);
  }
};

/// Official VAR/MVAR models as the official `build_vae_var` builds them: C = 64·depth,
/// heads = depth (head_dim 64), mlp ratio 4, l2-normalised attention (SPEC §1.1). The 256-px zoo
/// has per-block AdaLN; VAR-d36 is built with shared_aln=True and the 512-px schedule.
constexpr ModelConfig official_config(int depth, bool shared_aln = false, PatchNums patch_nums = kPatchNums256) {
  ModelConfig c{};
  c.depth = depth;
  c.width = 64 * depth;
  c.heads = depth;
  c.shared_aln = shared_aln;
  c.patch_nums = patch_nums;
  return c;
}

namespace presets {
inline constexpr ModelConfig d16 = official_config(16);
inline constexpr ModelConfig d20 = official_config(20);
inline constexpr ModelConfig d24 = official_config(24);
inline constexpr ModelConfig d30 = official_config(30);
/// VAR-d36 (`var_d36.pth`, 512 px, "d36-s" in the official README: depth 36, width 2304, 36 heads,
/// shared AdaLN, patch_nums (1,2,3,4,6,9,13,18,24,32)); 2,353,893,904 parameters (the 2.3 B of
/// the official model zoo; ModelConfig::parameters()). VAR only: no MVAR checkpoint exists for it.
inline constexpr ModelConfig d36 = official_config(36, /*shared_aln=*/true, kPatchNums512);
/// The fixtures' model: depth 2, C = 128, 2 heads (head_dim 64), full vocabulary and classes.
inline constexpr ModelConfig tiny = [] {
  ModelConfig c{};
  c.depth = 2;
  c.width = 128;
  c.heads = 2;
  return c;
}();
/// The shared-AdaLN fixture's model (tests/fixtures `saln512_tiny.transformer.safetensors`, the
/// VAR-d36 layout in miniature): depth 2, C = 128, 2 heads, shared AdaLN, the 512-px schedule.
inline constexpr ModelConfig saln512_tiny = [] {
  ModelConfig c = tiny;
  c.shared_aln = true;
  c.patch_nums = kPatchNums512;
  return c;
}();
/// The small trained default model shipped in models/fashion_mnist (class-conditional MVAR on
/// Fashion-MNIST, 32×32 images from an 8×8 token map; tools/train/ has the recipe): 10 classes,
/// a 512-entry codebook, 7 scales, 5×5 neighbourhood attention on the 6×6 and 8×8 scales.
inline constexpr ModelConfig fashion_mnist = [] {
  ModelConfig c{};
  c.depth = 6;
  c.width = 192;
  c.heads = 3;
  c.vocab = 512;
  c.cvae = 32;
  c.num_classes = 10;
  c.patch_nums = make_patch_nums({1, 2, 3, 4, 5, 6, 8});
  c.refine_step = 5;
  c.kernel = 5;
  return c;
}();
}  // namespace presets

}  // namespace mvar
