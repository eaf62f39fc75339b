// tests/random_weights.hpp — in-memory checkpoints with the official VAR/MVAR state-dict names
// and shapes, filled with seeded random values of realistic magnitude. Used by tests (the d16
// preset loads a full-size one) and benchmarks (d16 timing without the real weights).
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "mvar/core/buffer.hpp"
#include "mvar/io/tensor_store.hpp"
#include "mvar/model/config.hpp"

namespace mvar::test {

/// A TensorStore of random float32 tensors with the given names and shapes (owned by the store).
/// Values ~ U(−a, a) with a = 1/√fan_in for matrices, 0.02 for vectors; `init` overrides by name.
class RandomStoreBuilder {
 public:
  explicit RandomStoreBuilder(std::uint64_t seed) : rng_(seed) {}

  void add(const std::string& name, std::vector<std::int64_t> shape, float amplitude = -1.f) {
    std::int64_t n = 1;
    for (auto e : shape) n *= e;
    if (amplitude < 0) amplitude = shape.size() >= 2 ? 1.0f / std::sqrt(float(shape.back())) : 0.02f;
    auto buf = std::make_shared<Buffer<float>>(std::size_t(n));
    // A cheap LCG-style fill keeps building a 310M-parameter model fast.
    std::uint64_t x = rng_();
    for (std::int64_t i = 0; i < n; ++i) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      (*buf)[std::size_t(i)] = amplitude * (float(std::uint32_t(x >> 40)) * (2.0f / 16777216.0f) - 1.0f);
    }
    TensorRef t;
    t.name = name;
    t.dtype = DType::F32;
    t.shape = std::move(shape);
    t.data = reinterpret_cast<const std::byte*>(buf->data());
    t.nbytes = buf->bytes();
    refs_.push_back(std::move(t));
    bufs_.push_back(std::move(buf));
  }
  TensorStore build(std::string source) {
    auto keep = std::make_shared<std::vector<std::shared_ptr<Buffer<float>>>>(std::move(bufs_));
    return TensorStore(std::move(source), std::move(refs_), keep);
  }

 private:
  std::mt19937_64 rng_;
  std::vector<TensorRef> refs_;
  std::vector<std::shared_ptr<Buffer<float>>> bufs_;
};

/// A random transformer checkpoint for `cfg` with every official key (buffers included).
inline TensorStore random_transformer(const ModelConfig& cfg, std::uint64_t seed = 1) {
  const std::int64_t C = cfg.width, L = cfg.seq_len(), F = cfg.ffn_hidden();
  RandomStoreBuilder b(seed);
  b.add("pos_start", {1, 1, C});
  b.add("pos_1LC", {1, L, C});
  b.add("class_emb.weight", {cfg.num_classes + (cfg.null_class ? 1 : 0), C}, 0.5f);
  b.add("lvl_embed.weight", {cfg.num_scales(), C});
  b.add("word_embed.weight", {C, cfg.cvae});
  b.add("word_embed.bias", {C});
  if (cfg.shared_aln) {  // VAR-d36 layout: one shared projection + a per-block offset
    b.add("shared_ada_lin.1.weight", {6 * C, C});
    b.add("shared_ada_lin.1.bias", {6 * C});
  }
  for (int i = 0; i < cfg.depth; ++i) {
    const std::string p = "blocks." + std::to_string(i) + ".";
    if (cfg.shared_aln) b.add(p + "ada_gss", {1, 1, 6, C});
    b.add(p + "attn.scale_mul_1H11", {1, cfg.heads, 1, 1}, 1.0f);
    b.add(p + "attn.q_bias", {C});
    b.add(p + "attn.v_bias", {C});
    b.add(p + "attn.zero_k_bias", {C}, 0.0f);
    b.add(p + "attn.mat_qkv.weight", {3 * C, C});
    b.add(p + "attn.proj.weight", {C, C});
    b.add(p + "attn.proj.bias", {C});
    b.add(p + "ffn.fc1.weight", {F, C});
    b.add(p + "ffn.fc1.bias", {F});
    b.add(p + "ffn.fc2.weight", {C, F});
    b.add(p + "ffn.fc2.bias", {C});
    if (!cfg.shared_aln) {
      b.add(p + "ada_lin.1.weight", {6 * C, C});
      b.add(p + "ada_lin.1.bias", {6 * C});
    }
  }
  b.add("head_nm.ada_lin.1.weight", {2 * C, C});
  b.add("head_nm.ada_lin.1.bias", {2 * C});
  b.add("head.weight", {cfg.vocab, C}, 3.0f / std::sqrt(float(C)));
  b.add("head.bias", {cfg.vocab});
  return b.build("<random transformer>");
}

}  // namespace mvar::test

