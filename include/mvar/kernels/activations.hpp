// mvar/kernels/activations.hpp — element-wise activations written once for scalars and xsimd
// batches: V = float gives the scalar path, V = xsimd::batch<float, Arch> the vector path.
//   gelu_tanh(u) = 0.5·u·(1 + tanh(√(2/π)·(u + 0.044715·u³)))   (SPEC §1.6, nn.GELU('tanh'))
//   silu(z)      = z·σ(z) = z / (1 + e^{−z})                      (AdaLN input, VAE)
#pragma once

#include <cmath>
#include <cstddef>
#include <span>

#include <xsimd/xsimd.hpp>

namespace mvar {

template <class V>
V gelu_tanh(V u) {
  using std::tanh;
  using xsimd::tanh;
  const V k0(0.7978845608028654f);  // √(2/π)
  const V k1(0.044715f);
  return V(0.5f) * u * (V(1.0f) + tanh(k0 * (u + k1 * u * u * u)));
}

template <class V>
V silu(V z) {
  using std::exp;
  using xsimd::exp;
  return z / (V(1.0f) + exp(-z));
}

namespace detail {
/// x[i] ← f(x[i]) over a contiguous span: batches for the body, the scalar overload for the tail.
template <class Arch, class F>
void apply_inplace(std::span<float> x, F f) {
  using B = xsimd::batch<float, Arch>;
  const std::size_t n = x.size(), body = n - n % B::size;
  std::size_t i = 0;
  for (; i < body; i += B::size) f(B::load_unaligned(x.data() + i)).store_unaligned(x.data() + i);
  for (; i < n; ++i) x[i] = f(x[i]);
}
}  // namespace detail

/// In-place GELU (tanh approximation) over a contiguous span.
template <class Arch = xsimd::default_arch>
void gelu_tanh_inplace(std::span<float> x) {
  detail::apply_inplace<Arch>(x, [](auto v) { return gelu_tanh(v); });
}

/// In-place SiLU over a contiguous span.
template <class Arch = xsimd::default_arch>
void silu_inplace(std::span<float> x) {
  detail::apply_inplace<Arch>(x, [](auto v) { return silu(v); });
}

}  // namespace mvar
