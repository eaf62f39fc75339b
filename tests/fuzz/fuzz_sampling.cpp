// libFuzzer harness for the sampling primitives (sampling/top_k_top_p.hpp, sampling/cfg.hpp):
// logits that a model with corrupt weights could produce (NaN, ±Inf, huge, all equal) and any
// top_k / top_p / cfg / uniform draw.
//
// Input layout: i32 top_k, f32 top_p, f32 cfg, u32 draw bits, then float logits (cond half, then
// uncond half). Contract: no memory error or UB (ASan/UBSan); the drawn token is in [0, V) when
// the guided row has a finite maximum and no NaN, and −1 (refused) exactly when it has not, after
// any top_k/top_p masking (finding F5 in docs/reliability.md).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "fuzz_check.hpp"
#include "mvar/sampling/cfg.hpp"
#include "mvar/sampling/top_k_top_p.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  constexpr std::size_t kHead = 16;
  if (size < kHead + 2 * sizeof(float)) return 0;
  std::int32_t top_k;
  float top_p, cfg;
  std::uint32_t draw;
  std::memcpy(&top_k, data, 4);
  std::memcpy(&top_p, data + 4, 4);
  std::memcpy(&cfg, data + 8, 4);
  std::memcpy(&draw, data + 12, 4);
  const std::size_t V = (size - kHead) / (2 * sizeof(float));
  if (V == 0 || V > 8192) return 0;
  std::vector<float> cond(V), uncond(V), guided(V), scratch(V);
  std::vector<std::uint64_t> keys(V);
  std::memcpy(cond.data(), data + kHead, V * sizeof(float));
  std::memcpy(uncond.data(), data + kHead + V * sizeof(float), V * sizeof(float));

  const double t = mvar::cfg_weight(cfg, int(draw % 10), 10);
  mvar::cfg_mix(cond, uncond, t, guided);
  bool any_nan = false, any_finite = false, any_pos_inf = false;
  for (float l : guided) {
    any_nan |= std::isnan(l);
    any_finite |= std::isfinite(l);
    any_pos_inf |= l == std::numeric_limits<float>::infinity();
  }
  const bool drawable = !any_nan && !any_pos_inf && any_finite;
  mvar::top_k_top_p_mask(guided, top_k, top_p, scratch, keys);
  const double u = double(draw) / 4294967296.0;  // [0, 1)
  const std::int32_t tok = mvar::sample_categorical(guided, u);
  if (drawable) {
    MVAR_FUZZ_CHECK(tok >= 0 && std::size_t(tok) < V);
    MVAR_FUZZ_CHECK(std::isfinite(guided[std::size_t(tok)]));  // never a masked (−inf) entry
  } else {
    MVAR_FUZZ_CHECK(tok == -1);
  }
  return 0;
}
