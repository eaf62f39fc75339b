// mvar/sampling/sampler.hpp — the generic next-scale sampler (SPEC §1.12, §3.2).
//
// Sampler<Model, Trajectory> composes a next-scale model (Transformer<Cfg>, or any NextScaleModel),
// a trajectory (ScaleMarkov for MVAR, FullPrefix for VAR, or a user's own TrajectoryFor<T, Model>)
// and the VQ stage (VectorQuantizer). For each scale s the trajectory forms the step input from
// what it carries, the model runs with the trajectory's attention, the sampler mixes CFG, masks
// top-k/top-p and draws tokens with the counter-based RNG, and the trajectory folds the tokens
// into its state (f̂ for MVAR; f̂ + K/V for VAR). The sampler itself keeps nothing between steps.
//
// Memory: one Workspace, sized at construction for `max_batch` images by the largest scale, is
// reused by every step and every generate() call; nothing is allocated between kernels. Its size
// grows with max_batch (a user option): check_memory(max_batch) refuses, before anything is
// allocated, a batch whose workspace overflows or exceeds the machine (core/memory_limit.hpp).
// Between generate() calls the workspace holds nothing: workspace() lends it out (the decoder's
// scratch, for one), and `min_workspace_bytes` makes it large enough for that — one arena of the
// larger size instead of two.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <span>
#include <vector>

#include "mvar/core/buffer.hpp"
#include "mvar/core/error.hpp"
#include "mvar/core/memory_limit.hpp"
#include "mvar/core/parallel.hpp"
#include "mvar/core/tensor_view.hpp"
#include "mvar/core/workspace.hpp"
#include "mvar/model/quantizer.hpp"
#include "mvar/model/transformer.hpp"
#include "mvar/sampling/cfg.hpp"
#include "mvar/sampling/next_scale_model.hpp"
#include "mvar/sampling/rng.hpp"
#include "mvar/sampling/top_k_top_p.hpp"
#include "mvar/sampling/trajectory.hpp"

namespace mvar {

/// What the per-scale callback receives.
struct ScaleReport {
  int scale = 0, scales = 0, side = 0, rows = 0;
  double seconds = 0;                  // wall time of this step
  std::size_t workspace_high_water = 0;
  std::size_t kv_bytes = 0;
};

struct SampleOptions {
  float cfg = 1.5f;          // guidance strength (≥ 0); t = cfg·s/(S−1)
  int top_k = 900;           // 0 disables; 1 is greedy
  float top_p = 0.96f;       // in (0, 1]; 1 disables
  std::uint64_t seed = 0;
  std::uint64_t first_index = 0;  // image i of the batch uses RNG stream first_index + i
  /// Official `more_smooth` (visual quality, never for FID): f̂ receives the Gumbel-softmax mix of
  /// codebook entries over the masked guided logits (VectorQuantizer::soft_embedding) instead of
  /// the drawn token's entry; the tokens are drawn as without it. The Exp(1) noise of vocabulary
  /// entry v at (image, scale, position) is CounterRng draw 1 + v of that counter (draw 0 is the
  /// token's), so it depends on neither threads nor batch. Needs top_k ≠ 1.
  bool more_smooth = false;

  std::function<void(const ScaleReport&)> on_scale;  // progress / timing
  /// Teacher forcing: may overwrite the drawn tokens of scale s ([B·n], image-major).
  std::function<void(int scale, std::span<std::int32_t> tokens)> force_tokens;
  /// Zero-shot editing (sampling/edit.hpp, apply_edit): the positions of scale s that force_tokens
  /// fixes to an image's tokens (n_s flags, the same for every image). With more_smooth, f̂
  /// receives those positions' own codebook entries — the official notebook's replace_embedding,
  /// gt·m + h·(1 − m) — instead of the Gumbel mix; without more_smooth it changes nothing.
  std::function<std::span<const std::uint8_t>(int scale)> forced_positions;
  /// Observes the raw logits [R·n, V] (conditional rows first) of scale s.
  std::function<void(int scale, TensorView<const float, 2> raw)> on_logits;
  /// Observes the guided logits [B·n, V] of scale s, before top-k/top-p masking.
  std::function<void(int scale, TensorView<const float, 2> guided)> on_guided;
  /// Observes f̂ [B, cvae, P, P] after scale s.
  std::function<void(int scale, TensorView<const float, 4> fhat)> on_fhat;
};

struct Generation {
  int batch = 0;
  std::vector<std::vector<std::int32_t>> tokens;  // per scale: [B·n_s], image-major, row-major tokens
  Buffer<float> fhat;                             // [B, cvae, P, P]
  int cvae = 0, side = 0;
  double seconds = 0;
  std::size_t workspace_bytes = 0, workspace_high_water = 0, kv_bytes = 0;

  TensorView<const float, 3> image_fhat(int b) const {
    return TensorView<const float, 3>(fhat.data() + std::size_t(b) * cvae * side * side, {cvae, side, side});
  }
};

/// Checks user options; throws mvar::Error naming the bad one. Label num_classes is the null class
/// (the official `label < 0`: unconditional; both CFG halves then run on the null embedding), valid
/// when the model has one (ModelConfig::null_class).
inline void validate_options(const SampleOptions& o, std::span<const int> labels, int num_classes, int max_batch,
                             bool null_class = true) {
  if (labels.empty()) throw Error("sample: the batch is empty (give at least one class label)");
  if (int(labels.size()) > max_batch)
    throw Error(concat("sample: batch of ", labels.size(), " exceeds the sampler's max_batch ", max_batch));
  for (int l : labels) {
    if (l == num_classes && !null_class)
      throw Error(concat("sample: class label ", l, " is the null class, but this model has none (its class embedding "
                         "holds ", num_classes, " rows, no unconditional row)"));
    if (l < 0 || l > num_classes)
      throw Error(concat("sample: class label ", l, " is out of range [0, ", num_classes - 1, "] (", num_classes,
                         " = the null class)"));
  }
  if (o.more_smooth && o.top_k == 1)
    throw Error("sample: more_smooth with top_k 1 (greedy) — the masked logits keep one entry, so the Gumbel-softmax "
                "mix is that entry's one-hot; use top_k 0 or > 1, or drop more_smooth");
  if (!(o.cfg >= 0.0f) || !std::isfinite(o.cfg)) throw Error(concat("sample: cfg must be a finite number ≥ 0, got ", o.cfg));
  if (o.top_k < 0) throw Error(concat("sample: top_k must be ≥ 0 (0 disables), got ", o.top_k));
  if (!(o.top_p > 0.0f && o.top_p <= 1.0f)) throw Error(concat("sample: top_p must be in (0, 1], got ", o.top_p));
}

template <NextScaleModel Model, class Trajectory>
  requires TrajectoryFor<Trajectory, Model>
class Sampler {
 public:
  static constexpr ModelConfig Cfg = Model::config;

  /// Refuses (mvar::Error naming the batch) a max_batch whose workspace would overflow 64 bits or
  /// exceed this machine's memory, before anything is allocated. The constructor calls it; callers
  /// that build per-image data first (labels, output buffers) can call it earlier.
  static void check_memory(int max_batch) {
    if (max_batch < 1) throw Error(concat("sampler: max_batch must be ≥ 1, got ", max_batch));
    // Per image, both CFG halves of every per-row buffer: max_batch times this bounds the
    // workspace sum in the constructor from above (up to a small constant part).
    const std::ptrdiff_t nmax = Cfg.patch_nums.max_tokens();
    const std::size_t per_image = Model::conditioning_bytes(2) + Model::workspace_bytes(2 * nmax) +
                                  Workspace::round(4ul * 2 * nmax * Cfg.width) + Workspace::round(4ul * 2 * nmax * Cfg.vocab) +
                                  Workspace::round(4ul * nmax * Cfg.cvae) /*more_smooth embeddings*/;
    const std::string what = concat("sampler workspace for batch ", max_batch);
    check_allocation(checked_bytes({std::uint64_t(max_batch), per_image}, 1, what), what);
    if (max_batch > std::numeric_limits<int>::max() / 2)  // 2·max_batch rows are counted in int
      throw Error(concat("sampler: max_batch ", max_batch, " exceeds ", std::numeric_limits<int>::max() / 2));
  }

  Sampler(const Model& model, const VectorQuantizer& quant, Trajectory& traj, ThreadPool& pool, int max_batch = 1,
          std::size_t min_workspace_bytes = 0)
      : model_(model), quant_(quant), traj_(traj), pool_(pool), max_batch_(max_batch) {
    check_memory(max_batch);
    if (quant.num_scales() != Cfg.num_scales() || quant.cvae() != Cfg.cvae || quant.vocab() != Cfg.vocab ||
        quant.latent_side() != Cfg.patch_nums.last())
      throw Error(concat("sampler: the VAE (", quant.num_scales(), " scales, codebook ", quant.vocab(), "×", quant.cvae(),
                         ", latent ", quant.latent_side(), "²) does not fit the transformer (", Cfg.num_scales(),
                         " scales, codebook ", Cfg.vocab, "×", Cfg.cvae, ", latent ", Cfg.patch_nums.last(), "²)"));
    const std::ptrdiff_t R = 2 * max_batch, nmax = Cfg.patch_nums.max_tokens();
    const std::size_t bytes = Model::conditioning_bytes(int(R)) + Model::workspace_bytes(R * nmax) +
                              Workspace::round(4ul * R * nmax * Cfg.width) /*x*/ +
                              Workspace::round(4ul * R * nmax * Cfg.vocab) /*logits*/ +
                              Workspace::round(4ul * nmax * Cfg.cvae) /*z*/ + quant.workspace_bytes() +
                              Workspace::round(4ul * max_batch * nmax * Cfg.cvae) /*more_smooth embeddings*/ + 16 * kAlignment;
    ws_ = Workspace(std::max(bytes, min_workspace_bytes));
  }

  std::size_t workspace_bytes() const { return ws_.capacity(); }
  /// The workspace, free between generate() calls: a borrower reset()s it and takes what it
  /// needs; generate() resets it again on entry.
  Workspace& workspace() { return ws_; }

  Generation generate(std::span<const int> labels, const SampleOptions& o) {
    validate_options(o, labels, Cfg.num_classes, max_batch_, Cfg.null_class);
    const auto t_start = std::chrono::steady_clock::now();
    const int B = int(labels.size()), S = Cfg.num_scales(), P = Cfg.patch_nums.last(), E = Cfg.cvae;
    const int C = Cfg.width, V = Cfg.vocab;
    const bool any_uncond = [&] {
      for (int s = 0; s < S; ++s)
        if (traj_.needs_unconditional(s, o.cfg)) return true;
      return false;
    }();
    if (any_uncond && !Cfg.null_class)
      throw Error(concat("sample: at cfg ", o.cfg, " this trajectory runs the unconditional half, which needs the null "
                         "class, but the model has none (ModelConfig::null_class = false); only a trajectory that "
                         "skips it (MVAR at cfg 1) can run such a model"));
    const int R = any_uncond ? 2 * B : B;
    std::vector<int> row_labels(labels.begin(), labels.end());
    if (any_uncond) row_labels.insert(row_labels.end(), std::size_t(B), Cfg.num_classes);

    Generation g;
    g.batch = B;
    g.cvae = E;
    g.side = P;
    g.tokens.resize(std::size_t(S));
    ws_.reset();
    const typename Model::Conditioning cond = model_.condition(pool_, row_labels, ws_);
    auto step = [&](int s, int rows, TensorView<const float, 2> guided = {}, TensorView<const float, 2> soft = {}) {
      return Step<Model>{pool_, model_, quant_, cond, ws_, s, B, rows, guided, soft};
    };
    traj_.begin(step(0, R));
    const CounterRng rng(o.seed);

    for (int s = 0; s < S; ++s) {
      const auto t0 = std::chrono::steady_clock::now();
      const int side = Cfg.patch_nums[s], n = side * side;
      const int Rs = traj_.needs_unconditional(s, o.cfg) ? 2 * B : B;
      const auto mark = ws_.mark();
      TensorView<float, 2> x(ws_.take<float>(std::size_t(Rs) * n * C), {std::ptrdiff_t(Rs) * n, C});
      TensorView<float, 2> logits(ws_.take<float>(std::size_t(Rs) * n * V), {std::ptrdiff_t(Rs) * n, V});
      traj_.input(step(s, Rs), x);
      model_.forward(pool_, s, cond, Rs, x, [&](const AttentionCall& c) { traj_.attend(pool_, c); }, logits, ws_);

      // Guided logits in place over the conditional half.
      if (o.on_logits) o.on_logits(s, logits);
      TensorView<float, 2> guided = logits.slice(0, 0, std::ptrdiff_t(B) * n);
      if (Rs == 2 * B) {
        const std::size_t half = std::size_t(B) * n * V;
        cfg_mix({logits.data(), half}, {logits.data() + half, half}, cfg_weight(o.cfg, s, S), {logits.data(), half});
      }
      if (o.on_guided) o.on_guided(s, guided);

      // Mask and draw, one token per (image, position); counter-based RNG → thread-count independent.
      auto& tok = g.tokens[std::size_t(s)];
      tok.assign(std::size_t(B) * n, 0);
      TensorView<float, 2> soft;  // more_smooth: the embeddings f̂ receives, [B·n, cvae]
      if (o.more_smooth) soft = TensorView<float, 2>(ws_.take<float>(std::size_t(B) * n * E), {std::ptrdiff_t(B) * n, E});
      const double ratio = S > 1 ? double(s) / double(S - 1) : 0.0;
      parallel_for(pool_, std::ptrdiff_t(B) * n, 16, [&](std::ptrdiff_t r0, std::ptrdiff_t r1) {
        thread_local ThreadScratch<float> scratch_buf;
        thread_local ThreadScratch<std::uint64_t> keys_buf;
        const auto scratch = scratch_buf.span(std::size_t(V));
        const auto keys = keys_buf.span(std::size_t(V));
        for (std::ptrdiff_t r = r0; r < r1; ++r) {
          std::span<float> row(guided.row(r), std::size_t(V));
          top_k_top_p_mask(row, o.top_k, o.top_p, scratch, keys);
          const auto b = r / n, t = r % n;
          tok[std::size_t(r)] = sample_categorical(row, rng.uniform(o.first_index + std::uint64_t(b), std::uint32_t(s), std::uint32_t(t)));
          if (o.more_smooth && tok[std::size_t(r)] >= 0)
            quant_.soft_embedding(row, ratio, [&](std::ptrdiff_t v) {
              // Exp(1) = −log U with U in (0, 1): the 53-bit uniform shifted by half a step.
              const double u = rng.uniform(o.first_index + std::uint64_t(b), std::uint32_t(s), std::uint32_t(t), std::uint32_t(1 + v));
              return -std::log(u + 0x1p-54);
            }, std::span<float>(scratch.data(), std::size_t(V)), std::span<float>(soft.row(r), std::size_t(E)));
        }
      });
      // −1: a row without a finite maximum or with a NaN (top_k_top_p.hpp); refuse, never draw token 0.
      for (std::size_t r = 0; r < tok.size(); ++r)
        if (tok[r] < 0)
          throw Error(concat("sample: non-finite logits at scale ", s, " (image ", r / std::size_t(n), ", position ",
                             r % std::size_t(n), ") — the weights contain NaN/Inf?"));
      if (o.force_tokens) o.force_tokens(s, tok);
      if (o.more_smooth && o.forced_positions) {
        const auto keep = o.forced_positions(s);
        if (keep.size() != std::size_t(n))
          throw Error(concat("sample: forced_positions gives ", keep.size(), " flags at scale ", s, ", expected ", n));
        const auto cb = quant_.codebook();
        for (std::ptrdiff_t r = 0; r < std::ptrdiff_t(B) * n; ++r)
          if (keep[std::size_t(r % n)] && tok[std::size_t(r)] >= 0 && tok[std::size_t(r)] < V)
            std::copy_n(cb.data() + std::size_t(tok[std::size_t(r)]) * std::size_t(E), E, soft.row(r));
      }
      for (std::int32_t t : tok)
        if (t < 0 || t >= V) throw Error(concat("sample: token ", t, " at scale ", s, " is outside the vocabulary"));

      traj_.advance(step(s, Rs, guided, soft), tok);
      if (o.on_fhat) o.on_fhat(s, traj_.fhat());
      ws_.release(mark);
      if (o.on_scale) {
        ScaleReport rep;
        rep.scale = s;
        rep.scales = S;
        rep.side = side;
        rep.rows = Rs;
        rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        rep.workspace_high_water = ws_.high_water();
        rep.kv_bytes = traj_.kv_bytes();
        o.on_scale(rep);
      }
    }
    g.fhat = traj_.take_fhat();
    g.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    g.workspace_bytes = ws_.capacity();
    g.workspace_high_water = ws_.high_water();
    g.kv_bytes = traj_.kv_bytes();
    return g;
  }

 private:
  const Model& model_;
  const VectorQuantizer& quant_;
  Trajectory& traj_;
  ThreadPool& pool_;
  int max_batch_;
  Workspace ws_;
};

/// One-call form: builds a Sampler for this batch and generates.
template <NextScaleModel Model, class Trajectory>
  requires TrajectoryFor<Trajectory, Model>
Generation sample(ThreadPool& pool, const Model& model, const VectorQuantizer& quant, Trajectory& traj,
                  std::span<const int> labels, const SampleOptions& opts) {
  Sampler<Model, Trajectory> s(model, quant, traj, pool, std::max<int>(1, int(labels.size())));
  return s.generate(labels, opts);
}

}  // namespace mvar
