// mvar/kernels/attention.hpp — multi-head softmax attention of Nq queries over Nk keys with no
// mask. Covers MVAR's full in-scale attention (Nq == Nk, the tokens of one scale) and VAR's
// block-causal prefix attention at inference (the Nq new tokens attend to all Nk cached keys:
// everything cached is at a level ≤ the current one, SPEC §1.8).
//
// Layout: q [B, Nq, heads, head_dim], k/v [B, Nk, heads, head_dim], out [B, Nq, heads, head_dim]
// as strided views — token-major with heads interleaved, exactly as the qkv projection writes
// them, so no layout copy is needed. Softmax in fp32 with max subtraction.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "mvar/core/assert.hpp"
#include "mvar/core/error.hpp"
#include "mvar/core/parallel.hpp"
#include "mvar/core/tensor_view.hpp"

namespace mvar {

/// out = softmax(scale · q·kᵀ) · v per (batch, head). `scale` is 1.0 for L2-normalised q̂/k̂.
inline void attention(ThreadPool& pool, TensorView<const float, 4> q, TensorView<const float, 4> k,
                      TensorView<const float, 4> v, TensorView<float, 4> out, float scale) {
  const auto B = q.extent(0), Nq = q.extent(1), H = q.extent(2), D = q.extent(3), Nk = k.extent(1);
  if (k.extent(0) != B || v.extent(0) != B || out.extent(0) != B || k.extent(2) != H || v.extent(2) != H ||
      k.extent(3) != D || v.extent(3) != D || v.extent(1) != Nk || out.extent(1) != Nq || out.extent(2) != H ||
      out.extent(3) != D)
    throw Error("attention: q, k, v, out shapes disagree");
  MVAR_ASSERT(q.stride(3) == 1 && k.stride(3) == 1 && v.stride(3) == 1 && out.stride(3) == 1);
  parallel_for(pool, B * H, 1, [&](std::ptrdiff_t b0, std::ptrdiff_t b1) {
    std::vector<float> p(static_cast<std::size_t>(Nk));
    for (std::ptrdiff_t bh = b0; bh < b1; ++bh) {
      const auto b = bh / H, h = bh % H;
      for (std::ptrdiff_t i = 0; i < Nq; ++i) {
        const float* qi = &q(b, i, h, 0);
        float mx = -INFINITY;
        for (std::ptrdiff_t j = 0; j < Nk; ++j) {
          const float* kj = &k(b, j, h, 0);
          float s = 0;
          for (std::ptrdiff_t d = 0; d < D; ++d) s += qi[d] * kj[d];
          p[j] = s * scale;
          mx = std::max(mx, p[j]);
        }
        float sum = 0;
        for (std::ptrdiff_t j = 0; j < Nk; ++j) sum += (p[j] = std::exp(p[j] - mx));
        float* o = &out(b, i, h, 0);
        for (std::ptrdiff_t d = 0; d < D; ++d) o[d] = 0;
        for (std::ptrdiff_t j = 0; j < Nk; ++j) {
          const float w = p[j] / sum;
          const float* vj = &v(b, j, h, 0);
          for (std::ptrdiff_t d = 0; d < D; ++d) o[d] += w * vj[d];
        }
      }
    }
  });
}

}  // namespace mvar
