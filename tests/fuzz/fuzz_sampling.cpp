// libFuzzer harness for the sampling primitives (sampling/top_k_top_p.hpp, sampling/cfg.hpp):
// logits that a model with corrupt weights could produce (NaN, ±Inf, huge, all equal) and any
// top_k / top_p / cfg / uniform draw.
//
// Input layout: i32 top_k, f32 top_p, f32 cfg, u32 draw bits, then float logits (cond half, then
// uncond half). Contract: no memory error or UB (ASan/UBSan), and the drawn token is in [0, V).
#include <cstddef>
#include <cstdint>
#include <cstring>
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
  std::vector<std::int32_t> order(V);
  std::memcpy(cond.data(), data + kHead, V * sizeof(float));
  std::memcpy(uncond.data(), data + kHead + V * sizeof(float), V * sizeof(float));

  const double t = mvar::cfg_weight(cfg, int(draw % 10), 10);
  mvar::cfg_mix(cond, uncond, t, guided);
  mvar::top_k_top_p_mask(guided, top_k, top_p, scratch, order);
  const double u = double(draw) / 4294967296.0;  // [0, 1)
  const std::int32_t tok = mvar::sample_categorical(guided, u);
  MVAR_FUZZ_CHECK(tok >= 0 && std::size_t(tok) < V);
  return 0;
}
