// mvar/model/vae_blocks.hpp — the building blocks the VQVAE's encoder and decoder share (SPEC §2.1,
// official basic_vae.py): weight binding under the official names, and the forward passes of
// ResnetBlock and AttnBlock over one image [C, side, side].
//
//   ResnetBlock(x) = shortcut(x) + conv2(SiLU(GN2(conv1(SiLU(GN1(x)))))), shortcut = 1×1 conv if
//   the channel count changes; AttnBlock(x) = x + proj_out(attention(qkv(GN(x)))), one head,
//   scores scaled by C^−½, softmax over keys. GroupNorm: 32 groups, eps 1e-6, affine.
//
// GroupNorm(+SiLU) writes straight into the padded planes the next convolution reads
// (kernels/norm.hpp, kernels/padded_image.hpp): no separate padding pass. Scratch is lent by the
// caller (VaeScratch), taken from its Workspace.
#pragma once

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "mvar/core/error.hpp"
#include "mvar/core/parallel.hpp"
#include "mvar/core/tensor_view.hpp"
#include "mvar/io/tensor_store.hpp"
#include "mvar/kernels/conv.hpp"
#include "mvar/kernels/conv_stride2.hpp"
#include "mvar/kernels/norm.hpp"
#include "mvar/kernels/spatial_attention.hpp"
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
    return make<Conv2d>(prefix, co, ci, k);
  }
  /// The encoder's Downsample2x convolution (3×3, stride 2, bottom/right zero padding).
  Conv2dStride2 conv_stride2(const std::string& prefix, std::int64_t co, std::int64_t ci) {
    return make<Conv2dStride2>(prefix, co, ci, 3);
  }
  VaeNorm norm(const std::string& prefix, std::int64_t c) {
    const TensorRef* w = get(prefix + ".weight", {c});
    const TensorRef* b = get(prefix + ".bias", {c});
    if (!w || !b || check_only_) return {};
    check_.check_finite(*w);  // reported by finish(), naming the file
    check_.check_finite(*b);
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
  // Binds prefix.weight [co, ci, k, k] and prefix.bias [co] into a packed layer of type Layer.
  template <class Layer>
  Layer make(const std::string& prefix, std::int64_t co, std::int64_t ci, std::int64_t k) {
    const TensorRef* w = get(prefix + ".weight", {co, ci, k, k});
    const TensorRef* b = get(prefix + ".bias", {co});
    if (!w || !b || check_only_) return {};
    check_.check_finite(*w);  // reported by finish(), naming the file
    check_.check_finite(*b);
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
    Layer c(TensorView<const float, 4>(wp, {co, ci, k, k}), bf);
    store_.release_pages(*w);  // the layer keeps its own packed copy: drop the mapped file pages
    return c;
  }
  const TensorRef* get(const std::string& name, const std::vector<std::int64_t>& shape) {
    asked_.insert(name);
    return check_.get(name, shape);
  }
  const TensorStore& store_;
  WeightChecker check_;
  bool check_only_ = false;
  std::set<std::string> asked_;
};

/// Widest layer (input and output channels) and smallest image side that run in Winograd
/// F(4×4, 3×3) when large tiles are asked for (see VqvaeDecoder::Options::large_tiles: wider
/// layers' F(4×4) filters and scratch outgrow the caches; at 32 px a 16-tile group runs half empty).
inline constexpr std::ptrdiff_t kVaeLargeTileChannels = 160, kVaeLargeTileMinSide = 64;

/// Puts a 3×3 layer that runs at `side` px into its Winograd form: F(4×4) when large_tiles and the
/// layer is narrow (≤ kVaeLargeTileChannels) at ≥ kVaeLargeTileMinSide px, else F(2×2).
inline void vae_enable_winograd(Conv2d& c, std::ptrdiff_t side, Precision precision, bool large_tiles) {
  const bool narrow = c.in_channels() <= kVaeLargeTileChannels && c.out_channels() <= kVaeLargeTileChannels;
  c.enable_winograd(precision, large_tiles && narrow && side >= kVaeLargeTileMinSide ? 4 : 2);
}

/// Scratch lent to the block forwards: the conv input planes and the attention block's qkv,
/// weights and output (3·C·N + N·N + C·N floats for the widest attention block).
struct VaeScratch {
  float* planes = nullptr;
  float* attn = nullptr;
};

inline TensorView<float, 3> vae_view(float* p, std::ptrdiff_t c, std::ptrdiff_t side) {
  return TensorView<float, 3>(p, {c, side, side});
}

/// out's padded planes = act(GroupNorm(x)) with the VAE's 32 groups, eps 1e-6.
inline void vae_norm_to_planes(ThreadPool& pool, TensorView<const float, 3> x, const VaeNorm& n, bool silu_after,
                               const PaddedImage& out) {
  group_norm_to_planes(pool, x, kVaeGroups, n.weight.data(), n.bias.data(), kVaeNormEps, silu_after, out);
}

/// Floats of VaeScratch::attn one AttnBlock of C channels over N pixels takes.
inline std::size_t vae_attn_floats(std::ptrdiff_t C, std::ptrdiff_t N) { return std::size_t(3 * C * N + N * N + C * N); }

/// ResnetBlock: cur [cin, side²] → cur [cout, side²], with spare as scratch: in place for an
/// identity shortcut; with a 1×1 shortcut the result ends in spare and the two pointers swap.
inline void vae_resnet(ThreadPool& pool, const VaeResnetBlock& r, float*& cur, float*& spare, std::ptrdiff_t side,
                       const VaeScratch& s) {
  const auto x = vae_view(cur, r.cin, side);
  const PaddedImage p1(s.planes, r.cin, side, side);
  vae_norm_to_planes(pool, x, r.norm1, true, p1);
  const auto h = vae_view(spare, r.cout, side);
  r.conv1.forward(pool, p1, h);
  const PaddedImage p2(s.planes, r.cout, side, side);
  vae_norm_to_planes(pool, h, r.norm2, true, p2);
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

/// AttnBlock: cur [C, side²] += proj_out(attention(qkv(GN(cur)))), one head, scale C^−½.
inline void vae_attention(ThreadPool& pool, const VaeAttnBlock& a, float* cur, std::ptrdiff_t side,
                          const VaeScratch& s) {
  const std::ptrdiff_t C = a.c, N = side * side;
  const auto x = vae_view(cur, C, side);
  const PaddedImage pn(s.planes, C, side, side);
  vae_norm_to_planes(pool, x, a.norm, false, pn);
  float* qkv = s.attn;
  float* weights = qkv + 3 * C * N;
  float* o = weights + N * N;
  a.qkv.forward(pool, pn, vae_view(qkv, 3 * C, side));
  spatial_attention(pool, qkv, C, N, weights, o);
  pad_copy(pool, TensorView<const float, 3>(o, {C, side, side}), pn);
  a.proj_out.forward(pool, pn, x, x);
}

}  // namespace detail
}  // namespace mvar
