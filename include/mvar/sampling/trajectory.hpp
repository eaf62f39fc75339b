// mvar/sampling/trajectory.hpp — trajectories: what a step's attention sees, what state is carried
// between scales and how each step's input is formed from it (DESIGN.md's data flow).
//
//   ScaleMarkov (MVAR)  — the state between steps is f̂ only. Step s attends within scale s: full
//                         attention for s < refine_step, kernel×kernel neighbourhood attention for
//                         s ≥ refine_step (SPEC §3.2). No K/V is kept: kv_bytes() == 0.
//   FullPrefix (VAR)    — block-causal: each block appends k̂ and v of the new tokens to its K/V cache
//                         and the new queries attend to every cached key (SPEC §1.8).
//
// Both carry f̂ through FhatCarry and satisfy TrajectoryFor<T, Model>, the contract of the generic
// sampler (sampler.hpp); a user's trajectory with the same members runs through it unchanged
// (examples/two_scale_trajectory.cpp keeps the K/V of the previous scale only).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "mvar/core/buffer.hpp"
#include "mvar/core/error.hpp"
#include "mvar/core/memory_limit.hpp"
#include "mvar/core/parallel.hpp"
#include "mvar/core/tensor_view.hpp"
#include "mvar/core/workspace.hpp"
#include "mvar/kernels/attention.hpp"
#include "mvar/kernels/neighborhood_attention.hpp"
#include "mvar/model/config.hpp"
#include "mvar/model/quantizer.hpp"
#include "mvar/model/transformer.hpp"
#include "mvar/sampling/next_scale_model.hpp"

namespace mvar {

/// What a trajectory sees of the step being run. `guided` is set for advance() only: the guided
/// logits [B·n, V] of the step (before top-k/top-p masking), for trajectories that fold more than
/// the drawn token into their state.
template <class Model>
  requires NextScaleModel<Model>
struct Step {
  ThreadPool& pool;
  const Model& model;
  const VectorQuantizer& quant;
  const typename Model::Conditioning& cond;
  Workspace& ws;
  int scale = 0;  // s
  int batch = 0;  // B images
  int rows = 0;   // R rows of this step: 2B with the unconditional half, else B
  TensorView<const float, 2> guided{};
  /// advance() only, with SampleOptions::more_smooth: the embeddings [B·n, cvae] to fold into f̂
  /// instead of the tokens' codebook rows (the official Gumbel-softmax mix); empty otherwise.
  TensorView<const float, 2> embeddings{};
};

/// A next-scale trajectory: what a step's attention sees, what is carried between scales and how
/// the next step's input is formed from it. The sampler calls, per generation,
///   begin(step0)  then for each scale s:  input(step, x) → model.forward(…, attend) → draw → advance(step, tokens)
/// and reads the accumulated f̂ (the decoder's input) with fhat() and take_fhat().
template <class T, class Model>
concept TrajectoryFor = requires(T t, const T& ct, const Step<Model>& st, TensorView<float, 2> x,
                                 std::span<const std::int32_t> tokens, ThreadPool& pool, const AttentionCall& call,
                                 int scale, float cfg) {
  t.begin(st);                                            // a new generation of st.batch images, st.rows rows
  t.input(st, x);                                         // the step's input rows [R·n, C]
  t.attend(pool, call);                                   // attention of one block at one step
  t.advance(st, tokens);                                  // fold the step's tokens [B·n] into the state
  { ct.needs_unconditional(scale, cfg) } -> std::convertible_to<bool>;  // run the CFG half at step s?
  { ct.kv_bytes() } -> std::convertible_to<std::size_t>;  // K/V bytes held (high-water)
  { ct.fhat() } -> std::convertible_to<TensorView<const float, 4>>;     // f̂ [B, cvae, P, P] so far
  { t.take_fhat() } -> std::same_as<Buffer<float>>;       // hands f̂ over at the end of a generation
};

/// The state every trajectory of this model family carries: the accumulated f̂ (SPEC §1.10).
/// input(): step 0 is the class token (SPEC §1.3); step s ≥ 1 area-resizes f̂ to pn_s and embeds it
/// (the unconditional half, when run, gets a copy: both halves share f̂). advance(): f̂ +=
/// Phi(bicubic(codebook[tokens])). ScaleMarkov and FullPrefix inherit it; a user's trajectory can
/// too, or keep a state of its own.
class FhatCarry {
 public:
  template <class Model>
  void begin(const Step<Model>& st) {
    const std::size_t E = std::size_t(st.quant.cvae()), P = std::size_t(st.quant.latent_side());
    batch_ = st.batch, cvae_ = int(E), side_ = int(P);
    fhat_ = Buffer<float>(std::size_t(st.batch) * E * P * P);
  }

  template <class Model>
  void input(const Step<Model>& st, TensorView<float, 2> x) const {
    const int s = st.scale, B = st.batch;
    if (s == 0) {
      st.model.embed_first(st.cond, st.rows, x);
      return;
    }
    const int side = st.quant.patch_num(s), n = side * side, E = cvae_;
    const std::ptrdiff_t C = x.extent(1);
    const auto mark = st.ws.mark();
    TensorView<float, 2> z(st.ws.template take<float>(std::size_t(n) * E), {n, E});
    for (int b = 0; b < B; ++b) {
      st.quant.area_tokens(s, image(b), z);
      st.model.embed_scale(st.pool, s, z, x.slice(0, std::ptrdiff_t(b) * n, std::ptrdiff_t(b + 1) * n));
      if (st.rows == 2 * B)
        std::memcpy(x.row(std::ptrdiff_t(B + b) * n), x.row(std::ptrdiff_t(b) * n), sizeof(float) * std::size_t(n) * C);
    }
    st.ws.release(mark);
  }

  template <class Model>
  void advance(const Step<Model>& st, std::span<const std::int32_t> tokens) {
    const std::size_t n = tokens.size() / std::size_t(batch_), E = std::size_t(cvae_), P = std::size_t(side_);
    for (int b = 0; b < batch_; ++b) {
      const TensorView<float, 3> fhat_b(fhat_.data() + std::size_t(b) * E * P * P, {cvae_, side_, side_});
      if (st.embeddings.size() > 0)  // more_smooth
        st.quant.add_embeddings(st.pool, st.scale, st.embeddings.slice(0, std::ptrdiff_t(b * n), std::ptrdiff_t((b + 1) * n)), fhat_b, st.ws);
      else
        st.quant.add_scale(st.pool, st.scale, tokens.subspan(std::size_t(b) * n, n), fhat_b, st.ws);
    }
  }

  TensorView<const float, 4> fhat() const { return TensorView<const float, 4>(fhat_.data(), {batch_, cvae_, side_, side_}); }
  TensorView<const float, 3> image(int b) const {
    return TensorView<const float, 3>(fhat_.data() + std::size_t(b) * cvae_ * side_ * side_, {cvae_, side_, side_});
  }
  Buffer<float> take_fhat() { return std::move(fhat_); }

 private:
  Buffer<float> fhat_;
  int batch_ = 0, cvae_ = 0, side_ = 0;
};

class ScaleMarkov : public FhatCarry {
 public:
  explicit ScaleMarkov(const ModelConfig& cfg) : refine_step_(cfg.refine_step), kernel_(cfg.kernel) {}

  /// Nothing to hold (for callers that run attend() themselves, as FullPrefix::reserve).
  void reserve(int /*rows*/) {}
  void attend(ThreadPool& pool, const AttentionCall& c) const {
    if (c.scale < refine_step_)
      attention(pool, c.part(0), c.part(1), c.part(2), c.out4(), 1.0f);
    else
      neighborhood_attention_2d(pool, c.grid(0), c.grid(1), c.grid(2), c.out5(), kernel_, 1, 1.0f);
  }
  /// cfg == 1 builds no unconditional half at all (SPEC §3.2.4); at step 0 the guidance weight is
  /// 0 and nothing is cached, so the unconditional half is skipped there too (SPEC §3.5).
  bool needs_unconditional(int scale, float cfg) const { return cfg != 1.0f && scale > 0; }
  std::size_t kv_bytes() const { return 0; }

 private:
  int refine_step_, kernel_;
};

class FullPrefix : public FhatCarry {
 public:
  explicit FullPrefix(const ModelConfig& cfg) : cfg_(cfg) {}

  /// Allocates (once, or when more rows are needed) the caches: per block K and V of [R, L, C].
  /// A row count whose caches overflow or exceed the machine is refused before allocating.
  template <class Model>
  void begin(const Step<Model>& st) {
    FhatCarry::begin(st);
    reserve(st.rows);
  }
  /// The caches alone, for callers that run attend() without the sampler (teacher forcing).
  void reserve(int rows) {
    const std::size_t need = std::size_t(rows) * cfg_.seq_len() * cfg_.width;
    if (rows_ < rows || cache_.size() != std::size_t(cfg_.depth)) {
      const std::string what = concat("VAR K/V cache for ", rows, " rows");
      check_allocation(checked_bytes({std::uint64_t(rows), std::uint64_t(cfg_.seq_len()), std::uint64_t(cfg_.width),
                                      2, std::uint64_t(cfg_.depth)}, sizeof(float), what), what);
      cache_.clear();
      for (int i = 0; i < cfg_.depth; ++i) cache_.emplace_back(Buffer<float>(need), Buffer<float>(need));
    }
    rows_ = std::max(rows_, rows);
    high_water_ = std::max(high_water_, 2 * need * sizeof(float) * std::size_t(cfg_.depth));
    active_rows_ = rows;
  }
  void attend(ThreadPool& pool, const AttentionCall& c) {
    const std::ptrdiff_t L = cfg_.seq_len(), C = cfg_.width, n = c.tokens();
    const std::ptrdiff_t b0 = cfg_.patch_nums.begin(c.scale), cum = b0 + n;
    MVAR_ASSERT(c.rows == active_rows_);
    auto& [K, V] = cache_[std::size_t(c.block)];
    for (int r = 0; r < c.rows; ++r)
      for (std::ptrdiff_t t = 0; t < n; ++t) {
        const float* src = c.qkv.row(r * n + t);
        std::memcpy(K.data() + (r * L + b0 + t) * C, src + C, sizeof(float) * std::size_t(C));
        std::memcpy(V.data() + (r * L + b0 + t) * C, src + 2 * C, sizeof(float) * std::size_t(C));
      }
    const TensorView<const float, 4> k(K.data(), {c.rows, cum, c.heads, c.head_dim}, {L * C, C, c.head_dim, 1});
    const TensorView<const float, 4> v(V.data(), {c.rows, cum, c.heads, c.head_dim}, {L * C, C, c.head_dim, 1});
    attention(pool, c.part(0), k, v, c.out4(), 1.0f);
  }
  /// VAR always runs both halves: the unconditional K/V enter the cache (SPEC §3.5).
  bool needs_unconditional(int /*scale*/, float /*cfg*/) const { return true; }
  std::size_t kv_bytes() const { return high_water_; }

 private:
  ModelConfig cfg_;
  std::vector<std::pair<Buffer<float>, Buffer<float>>> cache_;
  int rows_ = 0, active_rows_ = 0;
  std::size_t high_water_ = 0;
};


}  // namespace mvar
