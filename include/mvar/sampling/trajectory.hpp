// mvar/sampling/trajectory.hpp — trajectory policies: what a step's attention sees and what state
// is carried between scales.
//
//   ScaleMarkov (MVAR)  — the state between steps is f̂ only. Step s attends within scale s: full
//                         attention for s < refine_step, kernel×kernel neighbourhood attention for
//                         s ≥ refine_step (SPEC §3.2). No K/V is kept: kv_bytes() == 0.
//   FullPrefix (VAR)    — block-causal: each block appends k̂ and v of the new tokens to its K/V cache
//                         and the new queries attend to every cached key (SPEC §1.8).
//
// Both satisfy TrajectoryPolicy and run through the same generic sampler (sampler.hpp); a user can
// plug in their own policy with the same four members.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "mvar/core/buffer.hpp"
#include "mvar/core/error.hpp"
#include "mvar/core/memory_limit.hpp"
#include "mvar/core/parallel.hpp"
#include "mvar/kernels/attention.hpp"
#include "mvar/kernels/neighborhood_attention.hpp"
#include "mvar/model/config.hpp"
#include "mvar/model/transformer.hpp"

namespace mvar {

template <class T>
concept TrajectoryPolicy = requires(T t, ThreadPool& pool, const AttentionCall& call, int rows, int scale, float cfg) {
  t.begin(rows);                                          // a new generation of `rows` rows
  t.attend(pool, call);                                   // attention of one block at one step
  { t.needs_unconditional(scale, cfg) } -> std::convertible_to<bool>;  // run the CFG half at step s?
  { t.kv_bytes() } -> std::convertible_to<std::size_t>;   // K/V bytes held (high-water)
};

class ScaleMarkov {
 public:
  explicit ScaleMarkov(const ModelConfig& cfg) : refine_step_(cfg.refine_step), kernel_(cfg.kernel) {}

  void begin(int /*rows*/) {}
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

class FullPrefix {
 public:
  explicit FullPrefix(const ModelConfig& cfg) : cfg_(cfg) {}

  /// Allocates (once, or when more rows are needed) the caches: per block K and V of [R, L, C].
  /// A row count whose caches overflow or exceed the machine is refused before allocating.
  void begin(int rows) {
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

static_assert(TrajectoryPolicy<ScaleMarkov>);
static_assert(TrajectoryPolicy<FullPrefix>);

}  // namespace mvar
