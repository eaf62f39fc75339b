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

#include <xsimd/xsimd.hpp>

#include "mvar/core/buffer.hpp"
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
    for (const TensorRef* t : {emb})
      if (t) check.check_finite(*t);
    for (int k = 0; k < n_phi; ++k) {
      if (w[k]) check.check_finite(*w[k]);
      if (b[k]) check.check_finite(*b[k]);
    }
    check.throw_if_any();
    codebook_ = emb->to_float();
    codebook_t_ = Buffer<float>(std::size_t(cvae) * std::size_t(padded_vocab()));
    for (int j = 0; j < vocab; ++j)
      for (int c = 0; c < cvae; ++c) codebook_t_.data()[std::size_t(c) * std::size_t(padded_vocab()) + std::size_t(j)] = codebook_[std::size_t(j) * std::size_t(cvae) + std::size_t(c)];
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
    lookup(tokens, h);
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
  // ---- Encoding: the multi-scale residual quantiser (official VQVAE.img_to_idxBl / -------------
  // ---- VectorQuantizer2.f_to_idxBl_or_fhat) ------------------------------------------------------

  /// Tokens of all scales together (Σ pn_s²) and where scale s starts in such a flat pyramid.
  std::size_t total_tokens() const { return token_offset(num_scales()); }
  std::size_t token_offset(int s) const {
    std::size_t n = 0;
    for (int i = 0; i < s; ++i) n += std::size_t(pn_[std::size_t(i)]) * std::size_t(pn_[std::size_t(i)]);
    return n;
  }

  /// Scratch encode() takes from its Workspace.
  std::size_t encode_workspace_bytes() const {
    const std::size_t PP = std::size_t(latent_side()) * std::size_t(latent_side()), C = std::size_t(cvae_);
    return 2 * Workspace::round(sizeof(float) * C * PP) /* rest, z */ + workspace_bytes() + 4 * kAlignment;
  }

  /// Multi-scale residual quantisation of f [cvae, P, P] (SPEC §1.11 run backwards; official
  /// `f_to_idxBl_or_fhat`). With rest = f and f̂ = 0, for s = 0 … S−1:
  ///   z     = s < S−1 ? area(rest, pn_s × pn_s) : rest                 (token-major [pn², cvae])
  ///   idx_t = argmin_j ‖z_t − codebook_j‖²                               (first minimum)
  ///   h     = Phi_{k(s)}(s < S−1 ? bicubic(codebook[idx], P × P) : codebook[idx])
  ///   f̂ += h,  rest −= h
  /// tokens: total_tokens() entries, scale s at token_offset(s) (row-major within a scale); fhat
  /// [cvae, P, P] ends as the final f̂; on_fhat(s, f̂), if given, sees f̂ after each scale.
  /// Distances: Σ_c (z_c − e_c)² in float32 over the codebook transposed at construction, 16
  /// entries per vector, every token independent — identical bits for any thread count. (The
  /// official addmm form |z|² + |e|² − 2 z·e has a float32 rounding of ≈ 1e-6 · |z|²; the
  /// fixtures' smallest second-minus-first margin is 6e-4, so both pick the same entries.)
  template <class OnFhat>
  void encode(ThreadPool& pool, TensorView<const float, 3> f, std::span<std::int32_t> tokens, TensorView<float, 3> fhat,
              Workspace& ws, const OnFhat& on_fhat) const {
    const std::ptrdiff_t P = latent_side(), C = cvae_;
    const int S = num_scales();
    if (f.extent(0) != C || f.extent(1) != P || f.extent(2) != P)
      throw Error(concat("VectorQuantizer::encode: f must be [", C, ", ", P, ", ", P, "], got [", f.extent(0), ", ",
                         f.extent(1), ", ", f.extent(2), "]"));
    MVAR_ASSERT(fhat.extent(0) == C && fhat.extent(1) == P && fhat.extent(2) == P);
    MVAR_ASSERT(tokens.size() == total_tokens());
    const std::size_t mark = ws.mark();
    TensorView<float, 3> rest(ws.take<float>(std::size_t(C * P * P)), {C, P, P});
    float* z = ws.take<float>(std::size_t(C * P * P));
    for (std::ptrdiff_t c = 0; c < C; ++c)
      for (std::ptrdiff_t y = 0; y < P; ++y)
        for (std::ptrdiff_t x = 0; x < P; ++x) rest(c, y, x) = f(c, y, x), fhat(c, y, x) = 0.0f;
    for (int s = 0; s < S; ++s) {
      const std::ptrdiff_t pn = pn_[std::size_t(s)], n = pn * pn;
      // z [n, C] token-major: its transposed view [C, pn, pn] has strides (1, pn·C, C).
      const TensorView<float, 3> zt(z, {C, pn, pn}, {1, pn * C, C});
      if (s < S - 1) {
        area_resize(rest, zt);
      } else {
        for (std::ptrdiff_t c = 0; c < C; ++c)
          for (std::ptrdiff_t y = 0; y < P; ++y)
            for (std::ptrdiff_t x = 0; x < P; ++x) zt(c, y, x) = rest(c, y, x);
      }
      const std::span<std::int32_t> tok = tokens.subspan(token_offset(s), std::size_t(n));
      parallel_for(pool, n, 8, [&](std::ptrdiff_t t0, std::ptrdiff_t t1) {
        for (std::ptrdiff_t t = t0; t < t1; ++t) tok[std::size_t(t)] = nearest(z + t * C);
      });
      const std::size_t m2 = ws.mark();
      TensorView<float, 3> h(ws.take<float>(std::size_t(C * n)), {C, pn, pn});
      lookup(tok, h);
      fold(pool, s, h, fhat, ws, rest);  // f̂ += Phi(…), rest −= the same
      ws.release(m2);
      on_fhat(s, TensorView<const float, 3>(fhat));
    }
    ws.release(mark);
  }
  void encode(ThreadPool& pool, TensorView<const float, 3> f, std::span<std::int32_t> tokens, TensorView<float, 3> fhat,
              Workspace& ws) const {
    encode(pool, f, tokens, fhat, ws, [](int, TensorView<const float, 3>) {});
  }

  /// Index of the codebook entry nearest to z[0 … cvae) by squared distance (first minimum).
  std::int32_t nearest(const float* z) const {
    using B = xsimd::batch<float>;
    constexpr std::ptrdiff_t L = static_cast<std::ptrdiff_t>(B::size);
    const std::ptrdiff_t V = vocab_, C = cvae_, Vp = padded_vocab();
    float best = INFINITY;
    std::int32_t best_j = 0;
    alignas(64) float d[L];
    for (std::ptrdiff_t j0 = 0; j0 < Vp; j0 += L) {
      B acc(0.0f);
      for (std::ptrdiff_t c = 0; c < C; ++c) {
        const B diff = B::load_aligned(codebook_t_.data() + c * Vp + j0) - B(z[c]);
        acc = xsimd::fma(diff, diff, acc);
      }
      acc.store_aligned(d);
      for (std::ptrdiff_t l = 0; l < L && j0 + l < V; ++l)
        if (d[l] < best) best = d[l], best_j = std::int32_t(j0 + l);
    }
    return best_j;
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
  /// h [C, pn, pn] = codebook[tokens], channel-major.
  void lookup(std::span<const std::int32_t> tokens, TensorView<float, 3> h) const {
    const std::ptrdiff_t pn = h.extent(1), C = cvae_;
    for (std::ptrdiff_t t = 0; t < pn * pn; ++t) {
      const std::int32_t id = tokens[static_cast<std::size_t>(t)];
      MVAR_ASSERT(id >= 0 && id < vocab_);
      const float* e = codebook_.data() + std::ptrdiff_t(id) * C;
      for (std::ptrdiff_t c = 0; c < C; ++c) h(c, t / pn, t % pn) = e[c];
    }
  }

  /// Steps 2–4 of add_scale for embeddings h [C, pn, pn]: bicubic (not at the last scale), Phi, add.
  /// With rest (the encoder's residual), the same contribution is also subtracted from it.
  void fold(ThreadPool& pool, int s, TensorView<const float, 3> h, TensorView<float, 3> fhat, Workspace& ws,
            TensorView<float, 3> rest = {}) const {
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
    if (!rest.data()) {
      for (std::ptrdiff_t c = 0; c < C; ++c)
        for (std::ptrdiff_t y = 0; y < P; ++y)
          for (std::ptrdiff_t x = 0; x < P; ++x) fhat(c, y, x) += ui(c, y, x) * keep + cu(c, y, x) * resi_;
    } else {
      for (std::ptrdiff_t c = 0; c < C; ++c)
        for (std::ptrdiff_t y = 0; y < P; ++y)
          for (std::ptrdiff_t x = 0; x < P; ++x) {
            const float hv = ui(c, y, x) * keep + cu(c, y, x) * resi_;
            fhat(c, y, x) += hv;
            rest(c, y, x) -= hv;
          }
    }
    ws.release(mark);
  }

  // The codebook transposed [cvae][padded_vocab()] for the distance search (padding entries 0,
  // never chosen: the search stops at vocab).
  std::ptrdiff_t padded_vocab() const {
    constexpr std::ptrdiff_t L = static_cast<std::ptrdiff_t>(xsimd::batch<float>::size);
    return (vocab_ + L - 1) / L * L;
  }

  static constexpr int kPhiTable10[10] = {0, 0, 1, 1, 1, 2, 2, 3, 3, 3};

  std::vector<int> pn_;
  int cvae_, vocab_;
  float resi_;
  std::vector<float> codebook_;
  Buffer<float> codebook_t_;
  std::vector<Conv2d> phi_;
  std::vector<int> phi_index_;
};

}  // namespace mvar
