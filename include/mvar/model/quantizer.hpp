// mvar/model/quantizer.hpp — VectorQuantizer: the VQ stage between two sampling steps (SPEC §1.11,
// official `VectorQuantizer2` in quant.py), for one image:
//
//   add_scale(s, tokens):  h = codebook[tokens] as [cvae, pn_s, pn_s] (token row·pn + col → (row, col))
//                          u = s < S−1 ? bicubic(h, P × P) : h
//                          f̂ += Phi_{k(s)}(u),  Phi(u) = (1 − r)·u + r·(conv3×3(u) + b), r = quant_resi
//   area_tokens(s, f̂):     out[n_s, cvae] = area(f̂, pn_s × pn_s) transposed (the input of word_embed)
//   add_embeddings(s, h):  the same fold as add_scale for given embeddings h [n_s, cvae] (token-major)
//                          instead of codebook rows — the official `more_smooth` path, whose
//                          embeddings are Gumbel-softmax mixes of the codebook (soft_embedding)
//
// Generic over patch_nums (increasing, last entry = the latent side P), cvae, vocab and the number
// of partially shared Phi convolutions. Weights are validated and copied (the Phi convs packed) at
// construction; add_scale takes its scratch from the caller's Workspace and never allocates.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mvar/core/error.hpp"
#include "mvar/core/parallel.hpp"
#include "mvar/core/tensor_view.hpp"
#include "mvar/core/workspace.hpp"
#include "mvar/io/tensor_store.hpp"
#include "mvar/kernels/conv.hpp"
#include "mvar/kernels/resample.hpp"
#include "mvar/model/vae_config.hpp"

namespace mvar {

namespace detail {

/// Phi index of scale s among S scales with K partially shared convs, as the official
/// `PhiPartiallyShared` computes it: argmin_k |ticks_k − s/(S−1)| (first minimum) with
/// ticks = linspace(1/(3K), 1 − 1/(3K), K) for K = 4, else linspace(1/(2K), 1 − 1/(2K), K),
/// all in float64 with numpy's linspace rounding (start + i·step, last tick = stop exactly).
inline int phi_index_computed(int s, int S, int K) {
  if (K <= 1) return 0;
  const double lo = K == 4 ? 1.0 / 3.0 / K : 1.0 / 2.0 / K;
  const double hi = 1.0 - lo;
  const double step = (hi - lo) / double(K - 1);
  const double at = double(s) / double(S - 1);
  int best = 0;
  double best_d = 0;
  for (int k = 0; k < K; ++k) {
    const double tick = k == K - 1 ? hi : lo + double(k) * step;
    const double d = std::abs(tick - at);
    if (k == 0 || d < best_d) best = k, best_d = d;
  }
  return best;
}

}  // namespace detail

/// τ of the official `more_smooth` Gumbel-softmax at ratio r = s / (S − 1):
/// max(0.27·(1 − 0.95·r), 0.005) ("refer to mask-git" in the official var.py / mvar.py), in double
/// as Python computes it.
inline double smooth_tau(double ratio) { return std::max(0.27 * (1.0 - ratio * 0.95), 0.005); }

class VectorQuantizer {
 public:
  /// Binds quantize.embedding.weight [vocab, cvae] and quantize.quant_resi.qresi_ls.{k}.{weight,bias}
  /// ([cvae, cvae, 3, 3] / [cvae]); throws one mvar::Error listing every missing or mis-shaped tensor.
  VectorQuantizer(const TensorStore& vae, std::vector<int> patch_nums, int cvae, int vocab, int n_phi = 4,
                  float quant_resi = 0.5f)
      : pn_(std::move(patch_nums)), cvae_(cvae), vocab_(vocab), resi_(std::abs(quant_resi)) {
    if (pn_.size() < 2) throw Error(concat("VectorQuantizer: need at least 2 scales, got ", pn_.size()));
    for (std::size_t i = 0; i < pn_.size(); ++i)
      if (pn_[i] < 1 || (i > 0 && pn_[i] <= pn_[i - 1]))
        throw Error("VectorQuantizer: patch_nums must be positive and strictly increasing");
    if (cvae < 1 || vocab < 1 || n_phi < 1)
      throw Error(concat("VectorQuantizer: bad sizes cvae=", cvae, " vocab=", vocab, " n_phi=", n_phi));
    detail::WeightChecker check(vae, "VectorQuantizer");
    const TensorRef* emb = check.get("quantize.embedding.weight", {vocab, cvae});
    std::vector<const TensorRef*> w(n_phi), b(n_phi);
    for (int k = 0; k < n_phi; ++k) {
      const std::string p = concat("quantize.quant_resi.qresi_ls.", k, ".");
      w[k] = check.get(p + "weight", {cvae, cvae, 3, 3});
      b[k] = check.get(p + "bias", {cvae});
    }
    check.throw_if_any();
    codebook_ = emb->to_float();
    for (int k = 0; k < n_phi; ++k) {
      const std::vector<float> wf = w[k]->to_float(), bf = b[k]->to_float();
      phi_.emplace_back(TensorView<const float, 4>(wf.data(), {cvae, cvae, 3, 3}), bf);
    }
    const int S = num_scales();
    for (int s = 0; s < S; ++s)
      phi_index_.push_back(S == 10 && n_phi == 4 ? kPhiTable10[s] : detail::phi_index_computed(s, S, n_phi));
  }

  /// The same, with the sizes taken from a VaeConfig (cvae, vocab, n_phi, quant_resi).
  VectorQuantizer(const TensorStore& vae, std::vector<int> patch_nums, const VaeConfig& cfg)
      : VectorQuantizer(vae, std::move(patch_nums), cfg.cvae, cfg.vocab, cfg.n_phi, cfg.quant_resi) {}

  int num_scales() const { return static_cast<int>(pn_.size()); }
  int latent_side() const { return pn_.back(); }
  int cvae() const { return cvae_; }
  int vocab() const { return vocab_; }
  int patch_num(int s) const { return pn_[static_cast<std::size_t>(s)]; }
  int num_phi() const { return static_cast<int>(phi_.size()); }
  /// SPEC §1.11's table [0,0,1,1,1,2,2,3,3,3] for 10 scales and 4 convs (two exact ties that
  /// float64 rounding resolves — hard-coded); computed as the official code does otherwise.
  int phi_index(int s) const { return phi_index_[static_cast<std::size_t>(s)]; }
  /// The codebook, [vocab, cvae] row-major.
  std::span<const float> codebook() const { return codebook_; }

  /// Scratch add_scale takes from its Workspace.
  std::size_t workspace_bytes() const {
    const std::ptrdiff_t P = latent_side();
    return Workspace::round(sizeof(float) * std::size_t(cvae_) * P * P) +                  // h
           Workspace::round(sizeof(float) * PaddedImage::floats(cvae_, P, P)) +            // u, padded
           Workspace::round(sizeof(float) * std::size_t(cvae_) * P * P);                  // conv(u)
  }

  /// f̂ += Phi_{k(s)}(s < S−1 ? bicubic(codebook[tokens], P × P) : codebook[tokens]); fhat [cvae, P, P].
  /// tokens: n_s = pn_s² indices in [0, vocab), row-major.
  void add_scale(ThreadPool& pool, int s, std::span<const std::int32_t> tokens, TensorView<float, 3> fhat,
                 Workspace& ws) const {
    MVAR_ASSERT(s >= 0 && s < num_scales());
    const std::ptrdiff_t pn = pn_[static_cast<std::size_t>(s)], C = cvae_;
    MVAR_ASSERT(static_cast<std::ptrdiff_t>(tokens.size()) == pn * pn);
    const std::size_t mark = ws.mark();
    // Step 1: embedding lookup, transposed to channel-major [C, pn, pn].
    TensorView<float, 3> h(ws.take<float>(std::size_t(C * pn * pn)), {C, pn, pn});
    for (std::ptrdiff_t t = 0; t < pn * pn; ++t) {
      const std::int32_t id = tokens[static_cast<std::size_t>(t)];
      MVAR_ASSERT(id >= 0 && id < vocab_);
      const float* e = codebook_.data() + std::ptrdiff_t(id) * C;
      for (std::ptrdiff_t c = 0; c < C; ++c) h(c, t / pn, t % pn) = e[c];
    }
    fold(pool, s, h, fhat, ws);
    ws.release(mark);
  }

  /// f̂ += Phi_{k(s)}(bicubic(h)) as add_scale, for given embeddings emb [n_s, cvae] (token-major,
  /// row·pn + col) — e.g. soft_embedding's Gumbel-softmax mixes (official more_smooth).
  void add_embeddings(ThreadPool& pool, int s, TensorView<const float, 2> emb, TensorView<float, 3> fhat,
                      Workspace& ws) const {
    MVAR_ASSERT(s >= 0 && s < num_scales());
    const std::ptrdiff_t pn = pn_[static_cast<std::size_t>(s)], C = cvae_;
    MVAR_ASSERT(emb.extent(0) == pn * pn && emb.extent(1) == C);
    const std::size_t mark = ws.mark();
    TensorView<float, 3> h(ws.take<float>(std::size_t(C * pn * pn)), {C, pn, pn});
    for (std::ptrdiff_t t = 0; t < pn * pn; ++t)
      for (std::ptrdiff_t c = 0; c < C; ++c) h(c, t / pn, t % pn) = emb(t, c);
    fold(pool, s, h, fhat, ws);
    ws.release(mark);
  }

  /// The official `more_smooth` embedding of one token (helpers.py gumbel_softmax_with_rng with
  /// hard=False, as var.py / mvar.py call it): with r = s/(S−1) and τ = smooth_tau(r),
  ///   y = softmax((logits·(1 + r) − log E) / τ),   emb = y @ codebook   ([vocab] → [cvae]),
  /// where `logits` are the guided logits after top-k/top-p masking (removed entries −inf: weight
  /// 0, so their noise is never read) and E ~ Exp(1) i.i.d. per entry. `exp_noise(v)` returns E_v
  /// (> 0); y_soft ([vocab]) receives y. float32 arithmetic in the official order of operations:
  /// (1 + r) and τ rounded to float, products and the division rounded each. Allocates nothing.
  template <class ExpNoise>
  void soft_embedding(std::span<const float> logits, double ratio, ExpNoise&& exp_noise, std::span<float> y_soft,
                      std::span<float> emb) const {
    MVAR_ASSERT(std::ptrdiff_t(logits.size()) == vocab_ && std::ptrdiff_t(y_soft.size()) == vocab_);
    MVAR_ASSERT(std::ptrdiff_t(emb.size()) == cvae_);
    const float mul = float(1.0 + ratio), tau = float(smooth_tau(ratio));
    float zmax = -INFINITY;
    for (std::ptrdiff_t v = 0; v < vocab_; ++v) {
      const float l = logits[std::size_t(v)];
      float z = -INFINITY;
      if (l != -INFINITY) {
        const float g = -std::log(float(exp_noise(v)));
        z = (l * mul + g) / tau;
      }
      y_soft[std::size_t(v)] = z;
      zmax = std::max(zmax, z);  // a NaN logit propagates through exp below (the sampler refuses it before)
    }
    double sum = 0;
    for (std::ptrdiff_t v = 0; v < vocab_; ++v) {
      const float z = y_soft[std::size_t(v)];
      const float e = z == -INFINITY ? 0.0f : std::exp(z - zmax);
      y_soft[std::size_t(v)] = e;
      sum += e;
    }
    const float inv = float(1.0 / sum);
    for (float& e : emb) e = 0.0f;
    for (std::ptrdiff_t v = 0; v < vocab_; ++v) {
      const float y = y_soft[std::size_t(v)] * inv;
      y_soft[std::size_t(v)] = y;
      if (y == 0.0f) continue;
      const float* e = codebook_.data() + v * cvae_;
      for (std::ptrdiff_t c = 0; c < cvae_; ++c) emb[std::size_t(c)] += y * e[c];
    }
  }
  /// out[n_s, cvae] (token-major, row·pn + col) = area(fhat, pn_s × pn_s) transposed.
  void area_tokens(int s, TensorView<const float, 3> fhat, TensorView<float, 2> out) const {
    MVAR_ASSERT(s >= 0 && s < num_scales());
    const std::ptrdiff_t pn = pn_[static_cast<std::size_t>(s)];
    MVAR_ASSERT(fhat.extent(0) == cvae_ && out.extent(0) == pn * pn && out.extent(1) == cvae_);
    // The transposed view of out is [cvae, pn, pn] with strides (1, pn·row, row).
    const std::ptrdiff_t rs = out.stride(0);
    area_resize(fhat, TensorView<float, 3>(out.data(), {cvae_, pn, pn}, {out.stride(1), pn * rs, rs}));
  }

 private:
  /// Steps 2–4 of add_scale for embeddings h [C, pn, pn]: bicubic (not at the last scale), Phi, add.
  void fold(ThreadPool& pool, int s, TensorView<const float, 3> h, TensorView<float, 3> fhat, Workspace& ws) const {
    const std::ptrdiff_t P = latent_side(), C = cvae_;
    MVAR_ASSERT(fhat.extent(0) == C && fhat.extent(1) == P && fhat.extent(2) == P);
    const std::size_t mark = ws.mark();
    const PaddedImage u(ws.take<float>(PaddedImage::floats(C, P, P)), C, P, P);
    float* conv_data = ws.take<float>(std::size_t(C * P * P));
    // Step 2: bicubic to P × P (the last scale is already P × P), straight into the padded planes.
    const auto ui = u.interior();
    if (s < num_scales() - 1)
      bicubic_resize(h, ui);
    else
      for (std::ptrdiff_t c = 0; c < C; ++c)
        for (std::ptrdiff_t y = 0; y < P; ++y)
          for (std::ptrdiff_t x = 0; x < P; ++x) ui(c, y, x) = h(c, y, x);
    for (std::ptrdiff_t c = 0; c < C; ++c) u.zero_border(c);
    // Steps 3-4: f̂ += (1 − r)·u + r·(conv(u) + b), in the official order of operations.
    TensorView<float, 3> cu(conv_data, {C, P, P});
    phi_[static_cast<std::size_t>(phi_index(s))].forward(pool, u, cu);
    const float keep = 1.0f - resi_;
    for (std::ptrdiff_t c = 0; c < C; ++c)
      for (std::ptrdiff_t y = 0; y < P; ++y)
        for (std::ptrdiff_t x = 0; x < P; ++x) fhat(c, y, x) += ui(c, y, x) * keep + cu(c, y, x) * resi_;
    ws.release(mark);
  }

  static constexpr int kPhiTable10[10] = {0, 0, 1, 1, 1, 2, 2, 3, 3, 3};

  std::vector<int> pn_;
  int cvae_, vocab_;
  float resi_;
  std::vector<float> codebook_;
  std::vector<Conv2d> phi_;
  std::vector<int> phi_index_;
};

}  // namespace mvar
