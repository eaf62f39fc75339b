// tests/reference/attention_ref.hpp — naive reference attention kernels (plain loops, double
// accumulation, two-pass softmax) that the optimised kernels are tested against. Written from the
// definitions, not from the kernels: the neighbourhood is a mask over the whole grid built from
// SPEC §3.3's group/centre formula, so window bookkeeping is checked independently.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "mvar/core/tensor_view.hpp"

namespace mvar::ref {

/// Is key coordinate j in the window of query coordinate i on an axis of length P (odd kernel k,
/// dilation d)? NATTEN semantics (SPEC §3.3): same group (i ≡ j mod d); in-group coordinates
/// i' = i div d, j' = j div d on a group of length P_g; centre = clamp(i', k/2, P_g − 1 − k/2);
/// allowed iff |j' − centre| ≤ k/2.
inline bool na_in_window(std::ptrdiff_t i, std::ptrdiff_t j, std::ptrdiff_t P, int k, int d) {
  if (i % d != j % d) return false;
  const std::ptrdiff_t g = i % d;
  const std::ptrdiff_t Pg = P / d + (g < P % d ? 1 : 0);
  const std::ptrdiff_t r = k / 2;
  const std::ptrdiff_t centre = std::min(std::max(i / d, r), Pg - 1 - r);
  return std::abs(j / d - centre) <= r;
}

/// softmax(scale · q·kᵀ) v for one query over the keys listed in `keys` (flat indices into
/// kv rows given by the accessors), accumulated in double.
template <class KeyRow, class ValRow>
void attend_double(const float* q, float scale, std::ptrdiff_t D, const std::vector<std::ptrdiff_t>& keys,
                   KeyRow krow, ValRow vrow, float* out) {
  std::vector<double> s(keys.size());
  double mx = -INFINITY;
  for (std::size_t j = 0; j < keys.size(); ++j) {
    const float* kj = krow(keys[j]);
    double acc = 0;
    for (std::ptrdiff_t e = 0; e < D; ++e) acc += double(q[e]) * double(kj[e]);
    s[j] = acc * double(scale);
    mx = std::max(mx, s[j]);
  }
  double sum = 0;
  for (auto& x : s) sum += (x = std::exp(x - mx));
  std::vector<double> o(static_cast<std::size_t>(D), 0.0);
  for (std::size_t j = 0; j < keys.size(); ++j) {
    const float* vj = vrow(keys[j]);
    for (std::ptrdiff_t e = 0; e < D; ++e) o[std::size_t(e)] += s[j] / sum * double(vj[e]);
  }
  for (std::ptrdiff_t e = 0; e < D; ++e) out[e] = float(o[std::size_t(e)]);
}

/// Full attention: q [B, Nq, heads, D], k/v [B, Nk, heads, D] → out [B, Nq, heads, D].
inline void attention(TensorView<const float, 4> q, TensorView<const float, 4> k, TensorView<const float, 4> v,
                      TensorView<float, 4> out, float scale) {
  const auto B = q.extent(0), Nq = q.extent(1), H = q.extent(2), D = q.extent(3), Nk = k.extent(1);
  std::vector<std::ptrdiff_t> all(static_cast<std::size_t>(Nk));
  for (std::ptrdiff_t j = 0; j < Nk; ++j) all[std::size_t(j)] = j;
  for (std::ptrdiff_t b = 0; b < B; ++b)
    for (std::ptrdiff_t h = 0; h < H; ++h)
      for (std::ptrdiff_t i = 0; i < Nq; ++i)
        attend_double(
            &q(b, i, h, 0), scale, D, all, [&](std::ptrdiff_t j) { return &k(b, j, h, 0); },
            [&](std::ptrdiff_t j) { return &v(b, j, h, 0); }, &out(b, i, h, 0));
}

/// The keys (flat y·W + x) of query (y, x): a dense mask over the whole H×W grid.
inline std::vector<std::ptrdiff_t> na_keys(std::ptrdiff_t y, std::ptrdiff_t x, std::ptrdiff_t H, std::ptrdiff_t W,
                                           int kernel, int dilation) {
  std::vector<std::ptrdiff_t> keys;
  for (std::ptrdiff_t ky = 0; ky < H; ++ky)
    for (std::ptrdiff_t kx = 0; kx < W; ++kx)
      if (na_in_window(y, ky, H, kernel, dilation) && na_in_window(x, kx, W, kernel, dilation))
        keys.push_back(ky * W + kx);
  return keys;
}

/// 2-D neighbourhood attention, [B, H, W, heads, D] views (heads-last, like NATTEN's layout).
inline void neighborhood_attention_2d(TensorView<const float, 5> q, TensorView<const float, 5> k,
                                      TensorView<const float, 5> v, TensorView<float, 5> out, int kernel,
                                      int dilation, float scale) {
  const auto B = q.extent(0), H = q.extent(1), W = q.extent(2), heads = q.extent(3), D = q.extent(4);
  for (std::ptrdiff_t y = 0; y < H; ++y)
    for (std::ptrdiff_t x = 0; x < W; ++x) {
      const auto keys = na_keys(y, x, H, W, kernel, dilation);
      for (std::ptrdiff_t b = 0; b < B; ++b)
        for (std::ptrdiff_t h = 0; h < heads; ++h)
          attend_double(
              &q(b, y, x, h, 0), scale, D, keys, [&](std::ptrdiff_t t) { return &k(b, t / W, t % W, h, 0); },
              [&](std::ptrdiff_t t) { return &v(b, t / W, t % W, h, 0); }, &out(b, y, x, h, 0));
    }
}

}  // namespace mvar::ref
