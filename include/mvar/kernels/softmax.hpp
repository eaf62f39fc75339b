// mvar/kernels/softmax.hpp — numerically safe softmax in fp32: a row kernel (max subtraction,
// then exp and normalisation) and the online-softmax state that the attention kernels update one
// block of scores at a time (running max m, running sum l, rescale factor exp(m_old − m_new)).
//
// Template parameters:
//   Arch — xsimd architecture (default: the one the consumer's compiler flags enable)
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>

#include <xsimd/xsimd.hpp>

#include "mvar/core/assert.hpp"

namespace mvar {

namespace detail {

/// Largest lane of a batch (xsimd 8.1 has no reduce_max).
template <class V>
float reduce_max(const V& v) {
  alignas(64) float a[V::size];
  v.store_aligned(a);
  float m = a[0];
  for (std::size_t i = 1; i < V::size; ++i) m = std::max(m, a[i]);
  return m;
}

/// Lane indices 0, 1, …, size−1 as floats (masks for partial blocks: lane < n).
template <class V>
V lane_index() {
  alignas(64) float a[V::size];
  for (std::size_t i = 0; i < V::size; ++i) a[i] = float(i);
  return V::load_aligned(a);
}

/// Online softmax over a stream of score blocks (Milakov & Gimelshein 2018): after all blocks,
/// softmax_j = exp(s_j − m) / l. `update` takes a block's max and returns the factor by which
/// everything accumulated so far (l and the weighted value sum) must be multiplied.
struct OnlineSoftmax {
  float m = -std::numeric_limits<float>::infinity();  // running max of all scores seen
  float rescale(float block_max) {
    if (!(block_max > m)) return 1.0f;
    const float alpha = std::exp(m - block_max);  // exp(−inf) = 0 on the first block
    m = block_max;
    return alpha;
  }
};

}  // namespace detail

/// In place: x ← exp(x − max x) / Σ exp(x − max x), fp32, vectorised. Empty input is a no-op.
template <class Arch = xsimd::default_arch>
void softmax_inplace(std::span<float> x) {
  using V = xsimd::batch<float, Arch>;
  const std::size_t n = x.size(), body = n - n % V::size;
  if (n == 0) return;
  float mx = -std::numeric_limits<float>::infinity();
  std::size_t i = 0;
  if (body > 0) {
    V vm = V::load_unaligned(x.data());
    for (i = V::size; i < body; i += V::size) vm = xsimd::max(vm, V::load_unaligned(x.data() + i));
    mx = detail::reduce_max(vm);
  }
  for (i = body; i < n; ++i) mx = std::max(mx, x[i]);
  V vs(0.0f);
  for (i = 0; i < body; i += V::size) {
    const V e = xsimd::exp(V::load_unaligned(x.data() + i) - V(mx));
    e.store_unaligned(x.data() + i);
    vs += e;
  }
  float sum = xsimd::hadd(vs);
  for (i = body; i < n; ++i) sum += (x[i] = std::exp(x[i] - mx));
  const float inv = 1.0f / sum;
  for (i = 0; i < body; i += V::size) (V::load_unaligned(x.data() + i) * V(inv)).store_unaligned(x.data() + i);
  for (i = body; i < n; ++i) x[i] *= inv;
}

}  // namespace mvar
