// mvar/kernels/spatial_attention.hpp — the VQVAE's single-head spatial self-attention core
// (SPEC §2.1's AttnBlock; official basic_vae.py `AttnBlock`): q, k, v are [C, N] (channel-major,
// N = H·W pixels), w[i, j] = softmax_j(C^−½ · Σ_c q[c, i]·k[c, j]), o[c, i] = Σ_j v[c, j]·w[i, j].
// The [N, N] weights are materialised (N ≤ 1024 at the official VAE's 32×32 attention level for
// 512-px images): the caller lends N² floats. Distinct from kernels/attention.hpp (the
// transformer's multi-head, head-last, streaming-softmax attention): different layout, one head
// of C = 320…640 channels, and the official order of operations (scores, then float32 softmax).
// Bitwise identical for any thread count: query rows are split into fixed blocks, each writes its
// own rows of w and columns of o, and every sum runs in a fixed order.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

#include <xsimd/xsimd.hpp>

#include "mvar/core/parallel.hpp"
#include "mvar/kernels/lane_sum.hpp"

namespace mvar {

namespace detail {

/// Single-head attention of query rows [i0, i1) over all N keys (SPEC §2.1's AttnBlock core):
/// w[i, j] = softmax_j(scale · Σ_c q[c, i]·k[c, j]), o[c, i] = Σ_j v[c, j]·w[i, j]. q, k, v, o are
/// [C, N] row-major; w holds rows [i0, i1) of the [N, N] weights. Writes only o[:, i0:i1] and
/// w[i0:i1, :]; fixed summation order, so any split of the rows gives the same bits.
inline void attention_rows(const float* q, const float* k, const float* v, std::ptrdiff_t C, std::ptrdiff_t N,
                           float scale, std::ptrdiff_t i0, std::ptrdiff_t i1, float* w, float* o) {
  using B = xsimd::batch<float>;
  constexpr std::ptrdiff_t L = static_cast<std::ptrdiff_t>(B::size), R = 4;  // 4 query rows at a time
  const std::ptrdiff_t body = N - N % L;
  for (std::ptrdiff_t i = i0; i < i1; i += R) {
    const std::ptrdiff_t r = std::min(R, i1 - i);
    // Scores: a vector of keys × 4 query rows, summed over channels.
    for (std::ptrdiff_t j = 0; j < body; j += L) {
      B acc[R] = {B(0.0f), B(0.0f), B(0.0f), B(0.0f)};
      for (std::ptrdiff_t c = 0; c < C; ++c) {
        const B kv = B::load_unaligned(k + c * N + j);
        for (std::ptrdiff_t rr = 0; rr < r; ++rr) acc[rr] = xsimd::fma(B(q[c * N + i + rr]), kv, acc[rr]);
      }
      for (std::ptrdiff_t rr = 0; rr < r; ++rr) acc[rr].store_unaligned(w + (i + rr) * N + j);
    }
    for (std::ptrdiff_t j = body; j < N; ++j)
      for (std::ptrdiff_t rr = 0; rr < r; ++rr) {
        float acc = 0;
        for (std::ptrdiff_t c = 0; c < C; ++c) acc += q[c * N + i + rr] * k[c * N + j];
        w[(i + rr) * N + j] = acc;
      }
    // Softmax over keys in float32 (as the reference); the normaliser is summed in double.
    for (std::ptrdiff_t rr = 0; rr < r; ++rr) {
      float* row = w + (i + rr) * N;
      float mx = -INFINITY;
      for (std::ptrdiff_t j = 0; j < N; ++j) mx = std::max(mx, row[j] *= scale);
      double sum = 0;
      for (std::ptrdiff_t j = 0; j < N; ++j) sum += (row[j] = std::exp(row[j] - mx));
      const float inv = float(1.0 / sum);
      for (std::ptrdiff_t j = 0; j < N; ++j) row[j] *= inv;
    }
    // Output: dot products of value rows with the 4 weight rows.
    for (std::ptrdiff_t c = 0; c < C; ++c) {
      const float* vr = v + c * N;
      B acc[R] = {B(0.0f), B(0.0f), B(0.0f), B(0.0f)};
      for (std::ptrdiff_t j = 0; j < body; j += L) {
        const B vv = B::load_unaligned(vr + j);
        for (std::ptrdiff_t rr = 0; rr < r; ++rr)
          acc[rr] = xsimd::fma(vv, B::load_unaligned(w + (i + rr) * N + j), acc[rr]);
      }
      for (std::ptrdiff_t rr = 0; rr < r; ++rr) {
        double t = lane_sum(acc[rr]);
        for (std::ptrdiff_t j = body; j < N; ++j) t += double(vr[j]) * w[(i + rr) * N + j];
        o[c * N + i + rr] = float(t);
      }
    }
  }
}

}  // namespace detail

/// o [C, N] = attention(q, k, v) with q, k, v = qkv, qkv + C·N, qkv + 2·C·N ([3C, N] as the qkv
/// 1×1 convolution writes it); weights: N·N floats of scratch.
inline void spatial_attention(ThreadPool& pool, const float* qkv, std::ptrdiff_t C, std::ptrdiff_t N, float* weights,
                              float* o) {
  const float scale = float(1.0 / std::sqrt(double(C)));
  constexpr std::ptrdiff_t kRows = 16;  // query rows per task (a multiple of attention_rows' 4)
  parallel_for(pool, N, kRows, [&](std::ptrdiff_t i0, std::ptrdiff_t i1) {
    detail::attention_rows(qkv, qkv + C * N, qkv + 2 * C * N, C, N, scale, i0, i1, weights, o);
  });
}

}  // namespace mvar
