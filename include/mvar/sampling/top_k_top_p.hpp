// mvar/sampling/top_k_top_p.hpp — the official top-k / top-p masking (SPEC §1.10) and the draw.
//
// top-k: θ = the k-th largest logit; every logit strictly below θ becomes −inf (ties with θ
// survive, so more than k may remain). top-p (after top-k): sort ascending, softmax, running sum
// c_j; remove every sorted position with c_j ≤ 1 − p except the last (largest). Both in float32
// like the reference. The draw is one categorical sample from softmax(masked logits) by inverse
// CDF with one uniform number.
//
// Non-finite logits (from NaN/Inf weights) define no distribution. The draw returns −1 for a row
// that holds a NaN or has no finite maximum (all −inf, or a +inf); the masks never turn such a row
// into a valid one (NaN and +inf always survive them), so the check costs nothing beyond the draw's
// own scan for the maximum. The sampler turns −1 into an mvar::Error naming the scale.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <span>
#include <vector>

namespace mvar {

/// Masks `logits` in place. top_k ≤ 0 or ≥ V disables top-k; top_p ≥ 1 (or ≤ 0) disables top-p.
/// `scratch` must hold V floats and `keys` V 64-bit sort keys (reused across calls: no allocation).
inline void top_k_top_p_mask(std::span<float> logits, int top_k, float top_p, std::span<float> scratch,
                             std::span<std::uint64_t> keys) {
  const std::size_t V = logits.size();
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  if (top_k > 0 && std::size_t(top_k) < V) {
    std::copy(logits.begin(), logits.end(), scratch.begin());
    std::nth_element(scratch.begin(), scratch.begin() + (top_k - 1), scratch.begin() + std::ptrdiff_t(V), std::greater<float>());
    const float theta = scratch[std::size_t(top_k - 1)];
    for (auto& l : logits)
      if (l < theta) l = kNegInf;
  }
  if (top_p > 0.0f && top_p < 1.0f) {
    // Entries already at −inf have probability 0, so their running sum is 0 ≤ 1 − p: the
    // reference removes them too. Sorting only the finite survivors gives the same mask.
    // The ascending order of the survivors, ties by index (the reference's stable sort): one
    // 64-bit key per survivor — order-preserving bits of the value (−0 as +0), then the index —
    // sorted directly (3–4× faster than an indirect stable sort). A NaN has no place in that
    // order: such a row is left as it is, and the draw refuses it.
    std::size_t m = 0;
    for (std::size_t v = 0; v < V; ++v) {
      const float l = logits[v];
      if (l != l) return;
      if (l == kNegInf) continue;
      std::uint32_t u;
      std::memcpy(&u, &l, sizeof u);
      if (l == 0.0f) u = 0;
      u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
      keys[m++] = (std::uint64_t(u) << 32) | std::uint32_t(v);
    }
    std::sort(keys.begin(), keys.begin() + std::ptrdiff_t(m));
    if (m == 0) return;
    auto index = [&](std::size_t j) { return std::size_t(keys[j] & 0xffffffffu); };  // j-th smallest survivor
    const float mx = logits[index(m - 1)];
    float sum = 0.f;
    for (std::size_t j = 0; j < m; ++j) sum += (scratch[j] = std::exp(logits[index(j)] - mx));
    const float limit = float(1.0 - double(top_p));
    float c = 0.f;
    for (std::size_t j = 0; j + 1 < m; ++j) {
      c += scratch[j] / sum;
      if (c <= limit) logits[index(j)] = kNegInf;
    }
  }
}

/// Draws index v with probability softmax(logits)[v], using uniform u ∈ [0, 1). Returns −1 when
/// the row holds a NaN or has no finite maximum (see the header comment): never a silent token.
inline std::int32_t sample_categorical(std::span<const float> logits, double u) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  float mx = -kInf;
  std::size_t arg = 0;
  bool nan = false;
  for (std::size_t v = 0; v < logits.size(); ++v) {
    const float l = logits[v];
    nan |= l != l;
    if (l > mx) mx = l, arg = v;
  }
  if (nan || !(mx > -kInf && mx < kInf)) return -1;
  // Masked entries (−inf) weigh exactly 0: skipped without an exp (same sums, same draw).
  double total = 0;
  for (float l : logits)
    if (l != -kInf) total += std::exp(double(l) - mx);
  const double target = u * total;
  double c = 0;
  std::size_t last_positive = arg;
  for (std::size_t v = 0; v < logits.size(); ++v) {
    if (logits[v] == -kInf) continue;
    const double p = std::exp(double(logits[v]) - mx);
    if (p > 0) last_positive = v;
    c += p;
    if (c > target && p > 0) return std::int32_t(v);
  }
  return std::int32_t(last_positive);  // rounding left u·total at the very top
}

}  // namespace mvar
