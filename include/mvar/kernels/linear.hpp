// mvar/kernels/linear.hpp — the dense layer y = x·Wᵀ + b on row-major [out, in] weights (the
// checkpoint layout, nn.Linear), through Eigen::Map (no copies).
//
// Threading: the output columns are split into fixed-width slabs and each slab is one
// single-threaded Eigen product, so the k-blocking does not depend on the thread count (Eigen's
// own threaded GEMM picks it from the thread count) and results are identical for any pool.
#pragma once

#include <algorithm>
#include <cstddef>

#include <Eigen/Core>

#include "mvar/core/assert.hpp"
#include "mvar/core/parallel.hpp"
#include "mvar/core/tensor_view.hpp"

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
}  // namespace detail

/// y[M, N] = x[M, K] · w[N, K]ᵀ (+ bias[N] if non-null). y must not alias x or w.
inline void linear(ThreadPool& pool, TensorView<const float, 2> x, TensorView<const float, 2> w, const float* bias,
                   TensorView<float, 2> y) {
  MVAR_ASSERT(x.extent(1) == w.extent(1));
  MVAR_ASSERT(y.extent(0) == x.extent(0) && y.extent(1) == w.extent(0));
  const std::ptrdiff_t N = w.extent(0);
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
