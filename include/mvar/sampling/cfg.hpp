// mvar/sampling/cfg.hpp — classifier-free guidance with the linear schedule (SPEC §1.9):
// at step s of S, t = cfg · s / (S − 1) and guided = (1 + t)·cond − t·uncond, in float32 with
// (1 + t) and t rounded to float32 and each product rounded before the subtraction (no FMA
// contraction) — the reference's arithmetic, so the guided logits match it bit for bit.
#pragma once

#include <cstddef>
#include <span>

namespace mvar {

/// The guidance weight t at step s of S scales.
inline double cfg_weight(float cfg, int s, int S) { return S > 1 ? double(cfg) * (double(s) / double(S - 1)) : 0.0; }

/// guided[i] = (1 + t)·cond[i] − t·uncond[i]; guided may alias cond.
[[gnu::optimize("fp-contract=off")]] inline void cfg_mix(std::span<const float> cond, std::span<const float> uncond,
                                                        double t, std::span<float> guided) {
  const float a = float(1.0 + t), b = float(t);
  for (std::size_t i = 0; i < guided.size(); ++i) {
    const float p = a * cond[i];
    const float q = b * uncond[i];
    guided[i] = p - q;
  }
}

}  // namespace mvar
