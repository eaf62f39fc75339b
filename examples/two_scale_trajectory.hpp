// examples/two_scale_trajectory.hpp — a trajectory the library does not ship, written against the
// public TrajectoryFor contract only: each step attends to its own tokens and to those of the
// previous scale (a K/V cache of one scale per block), between MVAR's "this scale only" and VAR's
// "every earlier scale". It carries f̂ like the shipped trajectories (FhatCarry) and adds its own
// state: per block, the K/V of the last step. Runs through the unchanged mvar::Sampler.
//
// With VAR weights, steps 0 and 1 see exactly VAR's prefix (scale 0, then scales 0–1), so their
// tokens equal VAR's; later steps are an approximation that keeps at most
// depth · 2 · R · (n_{S−2} + n_{S−1}) · C floats of K/V instead of depth · 2 · R · L · C.
#pragma once

#include <algorithm>
#include <cstring>
#include <vector>

#include <mvar/mvar.hpp>

namespace example {

class TwoScaleTrajectory : public mvar::FhatCarry {
 public:
  explicit TwoScaleTrajectory(const mvar::ModelConfig& cfg) : cfg_(cfg) {
    const int S = cfg.num_scales();
    for (int s = 0; s < S; ++s)  // largest pair of consecutive scales
      max_pair_ = std::max(max_pair_, cfg.patch_nums.tokens(s) + (s > 0 ? cfg.patch_nums.tokens(s - 1) : 0));
  }

  template <class Model>
  void begin(const mvar::Step<Model>& st) {
    FhatCarry::begin(st);
    rows_ = st.rows;
    const std::size_t per_block = std::size_t(rows_) * std::size_t(max_pair_) * std::size_t(cfg_.width);
    k_.assign(std::size_t(cfg_.depth), {});
    v_.assign(std::size_t(cfg_.depth), {});
    for (int i = 0; i < cfg_.depth; ++i) k_[std::size_t(i)].resize(per_block), v_[std::size_t(i)].resize(per_block);
    prev_.assign(std::size_t(cfg_.depth), 0);
    bytes_ = std::max(bytes_, 2 * per_block * sizeof(float) * std::size_t(cfg_.depth));
  }

  // Keys of block i at step s: [previous scale's n_prev tokens | this scale's n tokens], per row.
  void attend(mvar::ThreadPool& pool, const mvar::AttentionCall& c) {
    const std::ptrdiff_t C = cfg_.width, n = c.tokens(), stride = std::ptrdiff_t(max_pair_) * C;
    auto& K = k_[std::size_t(c.block)];
    auto& V = v_[std::size_t(c.block)];
    const std::ptrdiff_t n_prev = prev_[std::size_t(c.block)];
    for (int r = 0; r < c.rows; ++r)
      for (std::ptrdiff_t t = 0; t < n; ++t) {
        const float* src = c.qkv.row(r * n + t);
        std::memcpy(K.data() + r * stride + (n_prev + t) * C, src + C, sizeof(float) * std::size_t(C));
        std::memcpy(V.data() + r * stride + (n_prev + t) * C, src + 2 * C, sizeof(float) * std::size_t(C));
      }
    const mvar::TensorView<const float, 4> k(K.data(), {c.rows, n_prev + n, c.heads, c.head_dim}, {stride, C, c.head_dim, 1});
    const mvar::TensorView<const float, 4> v(V.data(), {c.rows, n_prev + n, c.heads, c.head_dim}, {stride, C, c.head_dim, 1});
    mvar::attention(pool, c.part(0), k, v, c.out4(), 1.0f);
    // This scale becomes the next step's "previous scale": move its K/V to the front of each row.
    for (int r = 0; r < c.rows; ++r) {
      std::memmove(K.data() + r * stride, K.data() + r * stride + n_prev * C, sizeof(float) * std::size_t(n * C));
      std::memmove(V.data() + r * stride, V.data() + r * stride + n_prev * C, sizeof(float) * std::size_t(n * C));
    }
    prev_[std::size_t(c.block)] = n;
  }

  // Both CFG halves every step: the unconditional rows' K/V must exist for the next step, as in VAR.
  bool needs_unconditional(int /*scale*/, float /*cfg*/) const { return true; }
  std::size_t kv_bytes() const { return bytes_; }

 private:
  mvar::ModelConfig cfg_;
  int max_pair_ = 0, rows_ = 0;
  std::vector<std::vector<float>> k_, v_;  // per block [R, max_pair, C]
  std::vector<std::ptrdiff_t> prev_;       // per block: tokens of the previous scale held
  std::size_t bytes_ = 0;
};

}  // namespace example
