// mvar/kernels/neighborhood_attention.hpp — 2-D neighbourhood attention with NATTEN semantics
// (non-causal, stride 1): each query on an H×W grid attends to the kernel×kernel keys around it,
// the window shifted inward at borders so every query sees exactly kernel² keys (SPEC §3.3).
// With dilation d the axis splits into d interleaved groups (coordinate mod d); a query sees only
// keys of its own group, windowed on the group's own length.
//
// Layout: q/k/v/out [B, H, W, heads, head_dim] strided views (token-major, heads interleaved —
// a token t = row·W + col of the model's [B, N, 3C] qkv buffer).
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

/// First key coordinate of the window of query coordinate i on an axis of length P
/// (kernel k odd, dilation d): the window is [start, start + k·d) in steps of d.
constexpr std::ptrdiff_t na_window_start(std::ptrdiff_t i, std::ptrdiff_t P, int k, int d = 1) {
  const std::ptrdiff_t g = i % d, ig = i / d;
  const std::ptrdiff_t Pg = P / d + (g < P % d ? 1 : 0);
  const std::ptrdiff_t r = k / 2;
  const std::ptrdiff_t c = std::clamp<std::ptrdiff_t>(ig, r, Pg - 1 - r);
  return (c - r) * d + g;
}

inline void check_na_args(const TensorView<const float, 5>& q, const TensorView<const float, 5>& k,
                          const TensorView<const float, 5>& v, const TensorView<float, 5>& out, int kernel,
                          int dilation) {
  if (kernel < 1 || kernel % 2 == 0)
    throw Error(concat("neighborhood_attention: kernel size must be odd and ≥ 1, got ", kernel));
  if (dilation < 1) throw Error(concat("neighborhood_attention: dilation must be ≥ 1, got ", dilation));
  for (int r = 0; r < 5; ++r)
    if (k.extent(r) != q.extent(r) || v.extent(r) != q.extent(r) || out.extent(r) != q.extent(r))
      throw Error(concat("neighborhood_attention: q, k, v, out shapes disagree on axis ", r));
  if (q.extent(1) < std::ptrdiff_t(kernel) * dilation || q.extent(2) < std::ptrdiff_t(kernel) * dilation)
    throw Error(concat("neighborhood_attention: grid ", q.extent(1), "×", q.extent(2),
                       " is smaller than kernel·dilation = ", kernel * dilation));
}

/// out = NA(q, k, v) with softmax scale `scale` (1.0 for MVAR's L2-normalised q̂, k̂).
inline void neighborhood_attention_2d(ThreadPool& pool, TensorView<const float, 5> q, TensorView<const float, 5> k,
                                      TensorView<const float, 5> v, TensorView<float, 5> out, int kernel,
                                      int dilation, float scale) {
  check_na_args(q, k, v, out, kernel, dilation);
  const auto B = q.extent(0), Hg = q.extent(1), Wg = q.extent(2), heads = q.extent(3), D = q.extent(4);
  parallel_for(pool, B * heads, 1, [&](std::ptrdiff_t b0, std::ptrdiff_t b1) {
    std::vector<float> p(static_cast<std::size_t>(kernel) * kernel);
    for (std::ptrdiff_t bh = b0; bh < b1; ++bh) {
      const auto b = bh / heads, h = bh % heads;
      for (std::ptrdiff_t y = 0; y < Hg; ++y)
        for (std::ptrdiff_t x = 0; x < Wg; ++x) {
          const auto ys = na_window_start(y, Hg, kernel, dilation), xs = na_window_start(x, Wg, kernel, dilation);
          const float* qi = &q(b, y, x, h, 0);
          float mx = -INFINITY;
          for (int a = 0; a < kernel; ++a)
            for (int c = 0; c < kernel; ++c) {
              const float* kj = &k(b, ys + a * dilation, xs + c * dilation, h, 0);
              float s = 0;
              for (std::ptrdiff_t d = 0; d < D; ++d) s += qi[d] * kj[d];
              p[a * kernel + c] = s * scale;
              mx = std::max(mx, p[a * kernel + c]);
            }
          float sum = 0;
          for (auto& e : p) sum += (e = std::exp(e - mx));
          float* o = &out(b, y, x, h, 0);
          for (std::ptrdiff_t d = 0; d < D; ++d) o[d] = 0;
          for (int a = 0; a < kernel; ++a)
            for (int c = 0; c < kernel; ++c) {
              const float w = p[a * kernel + c] / sum;
              const float* vj = &v(b, ys + a * dilation, xs + c * dilation, h, 0);
              for (std::ptrdiff_t d = 0; d < D; ++d) o[d] += w * vj[d];
            }
        }
    }
  });
}

}  // namespace mvar
