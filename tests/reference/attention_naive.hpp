// tests/reference/attention_naive.hpp — the straightforward fp32 loops a first implementation
// would write (per query: gather the window's keys, scalar dot products, softmax, weighted sum),
// and "dense masked" neighbourhood attention (full N×N scores per head through Eigen GEMMs with
// −inf outside the window). Baselines for bench_attention, not accuracy references.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "mvar/core/parallel.hpp"
#include "mvar/core/tensor_view.hpp"
#include "mvar/kernels/neighborhood_attention.hpp"

namespace mvar::ref {

/// Naive gather loop, fp32, one chunk per (batch, head).
inline void na_naive_gather(ThreadPool& pool, TensorView<const float, 5> q, TensorView<const float, 5> k,
                            TensorView<const float, 5> v, TensorView<float, 5> out, int kernel, int dilation,
                            float scale) {
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
              p[std::size_t(a * kernel + c)] = s * scale;
              mx = std::max(mx, p[std::size_t(a * kernel + c)]);
            }
          float sum = 0;
          for (auto& e : p) sum += (e = std::exp(e - mx));
          float* o = &out(b, y, x, h, 0);
          for (std::ptrdiff_t d = 0; d < D; ++d) o[d] = 0;
          for (int a = 0; a < kernel; ++a)
            for (int c = 0; c < kernel; ++c) {
              const float w = p[std::size_t(a * kernel + c)] / sum;
              const float* vj = &v(b, ys + a * dilation, xs + c * dilation, h, 0);
              for (std::ptrdiff_t d = 0; d < D; ++d) o[d] += w * vj[d];
            }
        }
    }
  });
}

/// Dense masked NA: per (batch, head) S = q·kᵀ over all H·W keys (Eigen GEMM on the strided
/// views), −inf outside each query's window, row softmax, out = P·v. Scratch: N×N floats per chunk.
inline void na_dense_masked(ThreadPool& pool, TensorView<const float, 5> q, TensorView<const float, 5> k,
                            TensorView<const float, 5> v, TensorView<float, 5> out, int kernel, int dilation,
                            float scale) {
  using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using CMap = Eigen::Map<const RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;
  using Map = Eigen::Map<RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;
  const auto B = q.extent(0), Hg = q.extent(1), Wg = q.extent(2), heads = q.extent(3), D = q.extent(4);
  const auto N = Hg * Wg;
  // Additive mask, shared by all (batch, head).
  RowMat mask = RowMat::Constant(N, N, -std::numeric_limits<float>::infinity());
  for (std::ptrdiff_t y = 0; y < Hg; ++y)
    for (std::ptrdiff_t x = 0; x < Wg; ++x) {
      const auto ys = na_window_start(y, Hg, kernel, dilation), xs = na_window_start(x, Wg, kernel, dilation);
      for (int a = 0; a < kernel; ++a)
        for (int c = 0; c < kernel; ++c) mask(y * Wg + x, (ys + a * dilation) * Wg + xs + c * dilation) = 0.0f;
    }
  parallel_for(pool, B * heads, 1, [&](std::ptrdiff_t b0, std::ptrdiff_t b1) {
    RowMat s(N, N);
    for (std::ptrdiff_t bh = b0; bh < b1; ++bh) {
      const auto b = bh / heads, h = bh % heads;
      CMap qm(&q(b, 0, 0, h, 0), N, D, Eigen::OuterStride<>(q.stride(2)));
      CMap km(&k(b, 0, 0, h, 0), N, D, Eigen::OuterStride<>(k.stride(2)));
      CMap vm(&v(b, 0, 0, h, 0), N, D, Eigen::OuterStride<>(v.stride(2)));
      Map om(&out(b, 0, 0, h, 0), N, D, Eigen::OuterStride<>(out.stride(2)));
      s.noalias() = qm * km.transpose();
      s = s * scale + mask;
      for (std::ptrdiff_t i = 0; i < N; ++i) {
        auto r = s.row(i);
        r = (r.array() - r.maxCoeff()).exp();
        r /= r.sum();
      }
      om.noalias() = s * vm;
    }
  });
}

/// Naive full attention, fp32 scalar loops, one chunk per (batch, head).
inline void attention_naive(ThreadPool& pool, TensorView<const float, 4> q, TensorView<const float, 4> k,
                            TensorView<const float, 4> v, TensorView<float, 4> out, float scale) {
  const auto B = q.extent(0), Nq = q.extent(1), H = q.extent(2), D = q.extent(3), Nk = k.extent(1);
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
          p[std::size_t(j)] = s * scale;
          mx = std::max(mx, p[std::size_t(j)]);
        }
        float sum = 0;
        for (auto& e : p) sum += (e = std::exp(e - mx));
        float* o = &out(b, i, h, 0);
        for (std::ptrdiff_t d = 0; d < D; ++d) o[d] = 0;
        for (std::ptrdiff_t j = 0; j < Nk; ++j) {
          const float w = p[std::size_t(j)] / sum;
          const float* vj = &v(b, j, h, 0);
          for (std::ptrdiff_t d = 0; d < D; ++d) o[d] += w * vj[d];
        }
      }
    }
  });
}

}  // namespace mvar::ref
