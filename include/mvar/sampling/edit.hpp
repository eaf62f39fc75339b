// mvar/sampling/edit.hpp — zero-shot editing (in-painting, out-painting, class-conditional
// editing) through the generic sampler, as the official VAR notebook demo_zero_shot_edit.ipynb
// does it: the image to edit is encoded into its token pyramid (VqvaeEncoder +
// VectorQuantizer::encode), then generation runs as usual except that at every scale the tokens
// inside the kept region are replaced by the image's own tokens before they enter f̂.
//
// Keep masks (EditMask), exactly as the notebook's get_edit_mask + replace_embedding:
//   latent mask M [P, P] (P = last patch side): a box y0, x0, y1, x1 (fractions of the image) sets
//     M[round(y0·P) : round(y1·P), round(x0·P) : round(x1·P)] = 1 (Python's round: half to even;
//     slice ends clamped to [0, P]); in-painting keeps the outside (M ← 1 − M), out-painting the
//     inside;
//   scale s: keep_s = bilinear(M, pn_s × pn_s, align_corners False) > 0.5 (PyTorch's CPU float
//     arithmetic: the ratio P/pn in float32, the source index (d + 0.5)·ratio − 0.5 clamped at 0
//     and its fraction in double — which decides near-ties, see bilinear() —, float weights,
//     width pass then height pass);
//     every token kept when pn_s² ≤ 3.
//   A mask image instead of a box: M[i, j] = the fraction of the image cell (i, j) (area windows
//   of an H × W grey map onto P × P, as adaptive average pooling) whose pixels are kept, a pixel
//   being kept when its grey value is < 128 (white = regenerate, the usual in-painting convention;
//   `invert` swaps, for out-painting); then the same per-scale rule.
//
// Replacing tokens is replacing embeddings: the notebook mixes gt·m + h·(1 − m) with m ∈ {0, 1}
// (exact in float) on the embeddings of the drawn tokens, so without `more_smooth` forcing the
// token gives the same f̂. With more_smooth the drawn embedding is a Gumbel-softmax mix, and the
// notebook puts the image token's own codebook entry in its place: apply_edit also sets
// SampleOptions::forced_positions, which makes the sampler do exactly that. The forced tokens
// are set after the draw, so the random stream of every generated token is the same as without
// editing — as in the notebook, which samples all tokens, then replaces.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "mvar/core/error.hpp"
#include "mvar/kernels/resample.hpp"
#include "mvar/sampling/sampler.hpp"

namespace mvar {

class EditMask {
 public:
  /// keep[t] = 1: token t (row-major) of scale s is the image's; 0: generated.
  std::span<const std::uint8_t> keep(int s) const { return keep_[std::size_t(s)]; }
  int num_scales() const { return int(pn_.size()); }
  int patch_num(int s) const { return pn_[std::size_t(s)]; }
  /// Tokens kept at scale s.
  std::size_t kept(int s) const {
    std::size_t n = 0;
    for (auto k : keep_[std::size_t(s)]) n += k;
    return n;
  }

  /// The notebook's box mask: y0, x0, y1, x1 are fractions of the image's height / width with
  /// 0 ≤ y0 < y1 ≤ 1 and 0 ≤ x0 < x1 ≤ 1; inpainting keeps the outside, else the inside.
  static EditMask from_box(std::span<const int> patch_nums, double y0, double x0, double y1, double x1, bool inpainting) {
    check_patch_nums(patch_nums);
    auto bad = [](double v) { return !(v >= 0.0 && v <= 1.0); };
    if (bad(y0) || bad(x0) || bad(y1) || bad(x1) || !(y0 < y1) || !(x0 < x1))
      throw Error(concat("edit box: need 0 ≤ y0 < y1 ≤ 1 and 0 ≤ x0 < x1 ≤ 1 (fractions of the image), got y0=", y0,
                         " x0=", x0, " y1=", y1, " x1=", x1));
    const int P = patch_nums.back();
    auto r = [&](double v) { return std::clamp(int(std::nearbyint(v * P)), 0, P); };  // half to even, as Python
    std::vector<float> m(std::size_t(P) * std::size_t(P), inpainting ? 1.0f : 0.0f);
    for (int y = r(y0); y < r(y1); ++y)
      for (int x = r(x0); x < r(x1); ++x) m[std::size_t(y) * std::size_t(P) + std::size_t(x)] = inpainting ? 0.0f : 1.0f;
    return from_latent(patch_nums, m);
  }

  /// From a latent mask [P, P] (row-major, P = the last patch side; 1 = keep, values in [0, 1]).
  static EditMask from_latent(std::span<const int> patch_nums, std::span<const float> latent) {
    check_patch_nums(patch_nums);
    const int P = patch_nums.back();
    if (latent.size() != std::size_t(P) * std::size_t(P))
      throw Error(concat("edit mask: the latent mask must hold ", P, "×", P, " values, got ", latent.size()));
    for (float v : latent)
      if (!(v >= 0.0f && v <= 1.0f)) throw Error(concat("edit mask: latent mask values must be in [0, 1], got ", v));
    EditMask e;
    e.pn_.assign(patch_nums.begin(), patch_nums.end());
    for (int pn : e.pn_) {
      std::vector<std::uint8_t> k(std::size_t(pn) * std::size_t(pn), 1);
      if (pn * pn > 3) {
        const std::vector<float> r = bilinear(latent, P, pn);
        for (std::size_t i = 0; i < k.size(); ++i) k[i] = r[i] > 0.5f ? 1 : 0;
      }
      e.keep_.push_back(std::move(k));
    }
    return e;
  }

  /// From a grey mask image [H, W] (row-major bytes, any size ≥ 1 × 1; it must cover the same
  /// square as the edited image after its crop/resize): pixels < 128 are kept, ≥ 128 (white)
  /// regenerated; invert swaps the two (out-painting with an in-painting mask).
  static EditMask from_image(std::span<const int> patch_nums, std::span<const std::uint8_t> grey, int H, int W,
                             bool invert = false) {
    check_patch_nums(patch_nums);
    if (H < 1 || W < 1 || grey.size() != std::size_t(H) * std::size_t(W))
      throw Error(concat("edit mask image: need H·W grey bytes, got ", grey.size(), " for ", H, "×", W));
    const int P = patch_nums.back();
    std::vector<float> m(std::size_t(P) * std::size_t(P));
    for (int i = 0; i < P; ++i)
      for (int j = 0; j < P; ++j) {
        const auto wy = area_window(i, H, P), wx = area_window(j, W, P);
        std::size_t k = 0, n = 0;
        for (auto y = wy.begin; y < wy.end; ++y)
          for (auto x = wx.begin; x < wx.end; ++x, ++n) k += ((grey[std::size_t(y) * std::size_t(W) + std::size_t(x)] < 128) != invert);
        m[std::size_t(i) * std::size_t(P) + std::size_t(j)] = float(double(k) / double(n));
      }
    return from_latent(patch_nums, m);
  }

 private:
  static void check_patch_nums(std::span<const int> pn) {
    if (pn.empty()) throw Error("edit mask: no scales");
    for (std::size_t i = 0; i < pn.size(); ++i)
      if (pn[i] < 1 || (i > 0 && pn[i] <= pn[i - 1])) throw Error("edit mask: patch_nums must be positive and increasing");
  }

  // PyTorch's upsample_bilinear2d (CPU, float, align_corners False) of m [P, P] to [n, n].
  static std::vector<float> bilinear(std::span<const float> m, int P, int n) {
    struct Tap {
      int i0, i1;
      float w0, w1;
    };
    const float scale = float(P) / float(n);
    std::vector<Tap> taps(static_cast<std::size_t>(n));
    for (int d = 0; d < n; ++d) {
      // The float32 ratio P/pn, the source index and its fraction in double (as the fixtures'
      // PyTorch computes them): at pn 6 of a 16-px latent, 1.5·(16/6)_f32 − 0.5 = 3.5 + 2⁻²³,
      // which float32 would round to the tie 3.5; the double keeps it above, as the reference.
      double real = double(scale) * (double(d) + 0.5) - 0.5;
      if (real < 0.0) real = 0.0;
      const int i0 = int(real);
      const int i1 = i0 + (i0 < P - 1 ? 1 : 0);
      const double l1 = std::min(std::max(real - double(i0), 0.0), 1.0);
      taps[std::size_t(d)] = {i0, i1, float(1.0 - l1), float(l1)};
    }
    std::vector<float> out(std::size_t(n) * std::size_t(n));
    for (int y = 0; y < n; ++y)
      for (int x = 0; x < n; ++x) {
        const Tap ty = taps[std::size_t(y)], tx = taps[std::size_t(x)];
        auto at = [&](int r, int c) { return m[std::size_t(r) * std::size_t(P) + std::size_t(c)]; };
        const float t0 = at(ty.i0, tx.i0) * tx.w0 + at(ty.i0, tx.i1) * tx.w1;
        const float t1 = at(ty.i1, tx.i0) * tx.w0 + at(ty.i1, tx.i1) * tx.w1;
        out[std::size_t(y) * std::size_t(n) + std::size_t(x)] = t0 * ty.w0 + t1 * ty.w1;
      }
    return out;
  }

  std::vector<int> pn_;
  std::vector<std::vector<std::uint8_t>> keep_;
};

/// The SampleOptions::force_tokens callback of an edit: at scale s, for every image of the batch
/// (tokens [B·n_s], image-major), token t becomes image_tokens[offset_s + t] wherever
/// mask.keep(s)[t] is 1. image_tokens: the encoded pyramid, all scales flat (scale s at
/// offset_s = Σ_{i<s} pn_i², VectorQuantizer::token_offset); it is copied into the callback.
inline std::function<void(int, std::span<std::int32_t>)> edit_force_tokens(const EditMask& mask,
                                                                           std::span<const std::int32_t> image_tokens) {
  std::size_t total = 0;
  for (int s = 0; s < mask.num_scales(); ++s) total += std::size_t(mask.patch_num(s)) * std::size_t(mask.patch_num(s));
  if (image_tokens.size() != total)
    throw Error(concat("edit: the image's token pyramid has ", image_tokens.size(), " tokens, the mask's scales need ", total));
  auto tokens = std::make_shared<const std::vector<std::int32_t>>(image_tokens.begin(), image_tokens.end());
  auto m = std::make_shared<const EditMask>(mask);
  return [tokens, m](int s, std::span<std::int32_t> tok) {
    const std::size_t n = std::size_t(m->patch_num(s)) * std::size_t(m->patch_num(s));
    std::size_t off = 0;
    for (int i = 0; i < s; ++i) off += std::size_t(m->patch_num(i)) * std::size_t(m->patch_num(i));
    const auto keep = m->keep(s);
    if (tok.size() % n != 0) throw Error(concat("edit: scale ", s, " has ", tok.size(), " tokens, not a multiple of ", n));
    for (std::size_t b = 0; b < tok.size() / n; ++b)
      for (std::size_t t = 0; t < n; ++t)
        if (keep[t]) tok[b * n + t] = (*tokens)[off + t];
  };
}

/// Sets o.force_tokens and o.forced_positions for an edit: the image's tokens in the kept region
/// at every scale, and (with o.more_smooth) their own embeddings there, as the notebook.
inline void apply_edit(SampleOptions& o, const EditMask& mask, std::span<const std::int32_t> image_tokens) {
  o.force_tokens = edit_force_tokens(mask, image_tokens);
  auto m = std::make_shared<const EditMask>(mask);
  o.forced_positions = [m](int s) { return m->keep(s); };
}

}  // namespace mvar
