// mvar/kernels/linear.hpp — the dense layer y = x·Wᵀ + b on row-major [out, in] weights (the
// checkpoint layout, nn.Linear), read in place (no copies).
//
// Few rows (M ≤ kStreamMaxRows): the weight-streaming kernel of gemm_stream.hpp, bound by reading
// W once. More rows: a single-threaded Eigen product per fixed-width column slab.
//
// Threading: the output columns are split into chunks whose width depends only on N, and each
// output element is computed by one chunk with a reduction order fixed by K, so results are
// identical for any pool size.
#pragma once

#include <algorithm>
#include <cstddef>

#include <Eigen/Core>

#include "mvar/core/assert.hpp"
#include "mvar/core/parallel.hpp"
#include "mvar/core/tensor_view.hpp"
#include "mvar/kernels/gemm_stream.hpp"

namespace mvar {

namespace detail {
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstRowMap = Eigen::Map<const RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;
using RowMap = Eigen::Map<RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;
inline ConstRowMap as_eigen(TensorView<const float, 2> v) {
  MVAR_ASSERT(v.stride(1) == 1 || v.extent(1) <= 1);
  return ConstRowMap(v.data(), v.extent(0), v.extent(1), Eigen::OuterStride<>(v.stride(0)));
}
inline RowMap as_eigen(TensorView<float, 2> v) {
  MVAR_ASSERT(v.stride(1) == 1 || v.extent(1) <= 1);
  return RowMap(v.data(), v.extent(0), v.extent(1), Eigen::OuterStride<>(v.stride(0)));
}

/// Rows up to which the streaming kernel is used.
inline constexpr std::ptrdiff_t kStreamMaxRows = 64;
}  // namespace detail

/// y[M, N] = x[M, K] · w[N, K]ᵀ (+ bias[N] if non-null). y must not alias x or w. Unit stride
/// along the last axis of x, w and y; any row strides and alignments.
inline void linear(ThreadPool& pool, TensorView<const float, 2> x, TensorView<const float, 2> w, const float* bias,
                   TensorView<float, 2> y) {
  MVAR_ASSERT(x.extent(1) == w.extent(1));
  MVAR_ASSERT(y.extent(0) == x.extent(0) && y.extent(1) == w.extent(0));
  MVAR_ASSERT(x.stride(1) == 1 || x.extent(1) <= 1);
  MVAR_ASSERT(w.stride(1) == 1 || w.extent(1) <= 1);
  MVAR_ASSERT(y.stride(1) == 1 || y.extent(1) <= 1);
  const std::ptrdiff_t M = x.extent(0), K = x.extent(1), N = w.extent(0);
  if (M == 0 || N == 0) return;
  if (M <= detail::kStreamMaxRows) {
    parallel_for(pool, N, detail::stream_grain(N), [&](std::ptrdiff_t n0, std::ptrdiff_t n1) {
      detail::stream_columns(x.data(), x.stride(0), M, w.data(), w.stride(0), K, bias, y.data(),
                             y.stride(0), n0, n1);
    });
    return;
  }
  constexpr std::ptrdiff_t kSlab = 256;  // output columns per task
  parallel_for(pool, N, kSlab, [&](std::ptrdiff_t n0, std::ptrdiff_t n1) {
    auto ys = detail::as_eigen(y.slice(1, n0, n1));
    ys.noalias() = detail::as_eigen(x) * detail::as_eigen(w.slice(0, n0, n1)).transpose();
    if (bias)
      for (std::ptrdiff_t r = 0; r < ys.rows(); ++r)
        for (std::ptrdiff_t c = n0; c < n1; ++c) y(r, c) += bias[c];
  });
}

}  // namespace mvar
