// mvar/kernels/lane_sum.hpp — lane_sum: the sum of a SIMD batch's lanes in lane order, in double.
// Shared by the reductions that need a fixed order (GroupNorm statistics, the VAE's spatial
// attention). xsimd 8.1's hadd trips GCC 12's -Wmaybe-uninitialized, hence the store and loop.
#pragma once

#include <cstddef>

#include <xsimd/xsimd.hpp>

namespace mvar::detail {

template <class B>
double lane_sum(const B& v) {
  alignas(64) float lanes[B::size];
  v.store_aligned(lanes);
  double s = 0;
  for (std::size_t i = 0; i < B::size; ++i) s += lanes[i];
  return s;
}

}  // namespace mvar::detail
