// mvar/kernels/attention.hpp — multi-head softmax attention of Nq queries over Nk keys with no
// mask. Covers MVAR's full in-scale attention (Nq == Nk, the tokens of one scale) and VAR's
// block-causal prefix attention at inference (the Nq new tokens attend to all Nk cached keys:
// everything cached is at a level ≤ the current one, SPEC §1.8).
//
// Layout: q [B, Nq, heads, head_dim], k/v [B, Nk, heads, head_dim], out [B, Nq, heads, head_dim]
// as strided views — token-major with heads interleaved, exactly as the qkv projection writes
// them, so no layout copy is needed (only head_dim must be unit-stride).
//
// Inner loop (detail::attend_query, shared with neighborhood_attention.hpp): one query against a
// stream of keys, in blocks of as many keys as a SIMD batch has lanes. The query and the output
// accumulator stay in registers (vectorised over head_dim); each key's dot product is an FMA
// chain over head_dim, and the batch-size dot products of a block are reduced together with one
// transposing horizontal add (xsimd::haddp), so there is no per-key horizontal sum. Softmax is
// online in fp32 (running max, rescaled sum and accumulator), so any number of keys needs no
// scratch memory. Threading: chunks of (batch, head, block of kQueryBlock queries), fixed by the
// problem size; every output row is written by one chunk → identical bits for any thread count.
//
// Template parameters:
//   HeadDim — head_dim fixed at compile time (a multiple of the batch size; 32/64/128 are
//             dispatched), or 0 for the run-time fallback (any head_dim, scalar tail).
//   Arch    — xsimd architecture (default: the one the consumer's compiler flags enable).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "mvar/core/assert.hpp"
#include "mvar/core/error.hpp"
#include "mvar/core/parallel.hpp"
#include "mvar/core/tensor_view.hpp"
#include "mvar/kernels/softmax.hpp"

namespace mvar {

namespace detail {

/// Key/value pointers of one query's keys, visited in order: next() advances and returns them.
template <class S>
concept KeyStream = requires(S s, const float*& kp, const float*& vp) { s.next(kp, vp); };

/// Consecutive tokens of a strided [N, head_dim] slice (full and prefix attention).
struct DenseKeys {
  const float* k;
  const float* v;
  std::ptrdiff_t k_stride, v_stride;
  void next(const float*& kp, const float*& vp) {
    kp = k;
    vp = v;
    k += k_stride;
    v += v_stride;
  }
};

/// Slot of row j in the array handed to xsimd::haddp so that lane j of the result is Σ row j.
/// xsimd 8.1's AVX-512 haddp returns its lanes in the order 0 1 4 5 2 3 6 7 8 9 12 13 10 11 14 15
/// (an involution), so rows are stored pre-permuted there; other architectures are in order.
/// test_kernels_attention checks the resulting lane order on whatever Arch the build uses.
template <class Arch>
constexpr int haddp_slot(int j) {
  if constexpr (std::is_base_of_v<xsimd::avx512f, Arch>) {
    const int q = j & 7;
    return (j & 8) | (q == 2 || q == 3 ? q + 2 : q == 4 || q == 5 ? q - 2 : q);
  } else {
    return j;
  }
}

/// Σ of each of the batch-size rows: lane j = horizontal sum of row j (rows in natural order).
template <class Arch>
xsimd::batch<float, Arch> transpose_sum(const xsimd::batch<float, Arch>* rows) {
  using V = xsimd::batch<float, Arch>;
  V r[V::size];
  for (int j = 0; j < int(V::size); ++j) r[haddp_slot<Arch>(j)] = rows[j];
  return xsimd::haddp(r);
}

/// Head_dim known at compile time and a multiple of the batch size: q and the output
/// accumulator live in NV registers each.
template <int HeadDim, class Arch>
struct HeadDimTraits {
  using V = xsimd::batch<float, Arch>;
  static constexpr int L = int(V::size);
  static constexpr bool fixed = HeadDim > 0 && HeadDim % L == 0;
  static constexpr int NV = fixed ? HeadDim / L : 1;
};

/// out[0 .. D) = Σ_j softmax_j(scale · q·k_j) v_j over nk ≥ 1 keys from `keys` (fp32, online).
template <int HeadDim, class Arch, KeyStream Keys>
void attend_query(const float* q, float scale, std::ptrdiff_t D, std::ptrdiff_t nk, Keys keys, float* out) {
  using T = HeadDimTraits<HeadDim, Arch>;
  using V = typename T::V;
  constexpr int L = T::L;
  MVAR_ASSERT(nk >= 1);
  alignas(64) float sb[L];  // scores, then probabilities, of one block
  const float* vrow[L];
  OnlineSoftmax sm;
  V lsum(0.0f);
  const V lanes = lane_index<V>();

  if constexpr (T::fixed) {
    constexpr int NV = T::NV;
    MVAR_ASSERT(D == HeadDim);
    V qv[NV], o[NV];
    for (int c = 0; c < NV; ++c) {
      qv[c] = V::load_unaligned(q + c * L) * V(scale);
      o[c] = V(0.0f);
    }
    for (std::ptrdiff_t j0 = 0; j0 < nk; j0 += L) {
      const int n = int(std::min<std::ptrdiff_t>(L, nk - j0));
      V acc[L];
#pragma GCC unroll 16
      for (int j = 0; j < L; ++j) {
        if (j < n) {
          const float* kp;
          keys.next(kp, vrow[j]);
          V a = qv[0] * V::load_unaligned(kp);
#pragma GCC unroll 8
          for (int c = 1; c < NV; ++c) a = xsimd::fma(qv[c], V::load_unaligned(kp + c * L), a);
          acc[haddp_slot<Arch>(j)] = a;
        } else {
          acc[haddp_slot<Arch>(j)] = V(0.0f);
        }
      }
      V s = xsimd::haddp(acc);
      if (n < L) s = xsimd::select(lanes < V(float(n)), s, V(-std::numeric_limits<float>::infinity()));
      const float alpha = sm.rescale(reduce_max(s));
      if (alpha != 1.0f) {
        lsum *= V(alpha);
        for (int c = 0; c < NV; ++c) o[c] *= V(alpha);
      }
      const V p = xsimd::exp(s - V(sm.m));  // masked lanes: exp(−inf) = 0
      lsum += p;
      p.store_aligned(sb);
      for (int j = 0; j < n; ++j) {
        const V pj(sb[j]);
#pragma GCC unroll 8
        for (int c = 0; c < NV; ++c) o[c] = xsimd::fma(pj, V::load_unaligned(vrow[j] + c * L), o[c]);
      }
    }
    const V inv(1.0f / xsimd::hadd(lsum));
    for (int c = 0; c < NV; ++c) (o[c] * inv).store_unaligned(out + c * L);
  } else {
    // Run-time head_dim: q is re-read from memory (L1-resident) and `out` is the accumulator.
    const std::ptrdiff_t body = D - D % L;
    for (std::ptrdiff_t e = 0; e < D; ++e) out[e] = 0.0f;
    for (std::ptrdiff_t j0 = 0; j0 < nk; j0 += L) {
      const int n = int(std::min<std::ptrdiff_t>(L, nk - j0));
      V acc[L];
      float tail[L];
      for (int j = 0; j < L; ++j) {
        acc[j] = V(0.0f);
        tail[j] = 0.0f;
        if (j >= n) continue;
        const float* kp;
        keys.next(kp, vrow[j]);
        for (std::ptrdiff_t e = 0; e < body; e += L)
          acc[j] = xsimd::fma(V::load_unaligned(q + e), V::load_unaligned(kp + e), acc[j]);
        for (std::ptrdiff_t e = body; e < D; ++e) tail[j] = std::fma(q[e], kp[e], tail[j]);
      }
      transpose_sum<Arch>(acc).store_aligned(sb);
      for (int j = 0; j < L; ++j) sb[j] = j < n ? (sb[j] + tail[j]) * scale : -std::numeric_limits<float>::infinity();
      const V s = V::load_aligned(sb);
      const float alpha = sm.rescale(reduce_max(s));
      if (alpha != 1.0f) {
        lsum *= V(alpha);
        for (std::ptrdiff_t e = 0; e < D; ++e) out[e] *= alpha;
      }
      const V p = xsimd::exp(s - V(sm.m));
      lsum += p;
      p.store_aligned(sb);
      for (int j = 0; j < n; ++j) {
        const V pj(sb[j]);
        for (std::ptrdiff_t e = 0; e < body; e += L)
          xsimd::fma(pj, V::load_unaligned(vrow[j] + e), V::load_unaligned(out + e)).store_unaligned(out + e);
        for (std::ptrdiff_t e = body; e < D; ++e) out[e] = std::fma(sb[j], vrow[j][e], out[e]);
      }
    }
    const float inv = 1.0f / xsimd::hadd(lsum);
    for (std::ptrdiff_t e = 0; e < D; ++e) out[e] *= inv;
  }
}

/// Calls f(std::integral_constant<int, HeadDim>) with HeadDim = D for the dispatched sizes
/// (32, 64, 128 when they are multiples of the batch size), else HeadDim = 0 (run-time path).
template <class Arch, class F>
void dispatch_head_dim(std::ptrdiff_t D, F&& f) {
  constexpr std::ptrdiff_t L = xsimd::batch<float, Arch>::size;
  if (D == 64 && 64 % L == 0) return f(std::integral_constant<int, 64>{});
  if (D == 32 && 32 % L == 0) return f(std::integral_constant<int, 32>{});
  if (D == 128 && 128 % L == 0) return f(std::integral_constant<int, 128>{});
  return f(std::integral_constant<int, 0>{});
}

/// Queries per parallel chunk: small enough to give two cores work at MVAR's smallest scales
/// (B·heads·⌈N/16⌉ chunks), large enough that the per-chunk overhead is negligible.
inline constexpr std::ptrdiff_t kQueryBlock = 16;

}  // namespace detail

/// out = softmax(scale · q·kᵀ) · v per (batch, head). `scale` is 1.0 for L2-normalised q̂/k̂.
/// Throws mvar::Error on mismatched shapes, an empty key set or a non-unit head_dim stride.
template <class Arch = xsimd::default_arch>
void attention(ThreadPool& pool, TensorView<const float, 4> q, TensorView<const float, 4> k,
               TensorView<const float, 4> v, TensorView<float, 4> out, float scale) {
  const auto B = q.extent(0), Nq = q.extent(1), H = q.extent(2), D = q.extent(3), Nk = k.extent(1);
  if (k.extent(3) != D || v.extent(3) != D || out.extent(3) != D)
    throw Error(concat("attention: head_dim mismatch: q has ", D, ", k ", k.extent(3), ", v ", v.extent(3), ", out ",
                       out.extent(3)));
  if (k.extent(0) != B || v.extent(0) != B || out.extent(0) != B || k.extent(2) != H || v.extent(2) != H ||
      v.extent(1) != Nk || out.extent(1) != Nq || out.extent(2) != H)
    throw Error(concat("attention: shapes disagree: q [", B, ", ", Nq, ", ", H, ", ", D, "], k [", k.extent(0), ", ",
                       Nk, ", ", k.extent(2), ", ", k.extent(3), "], v [", v.extent(0), ", ", v.extent(1), ", ",
                       v.extent(2), ", ", v.extent(3), "], out [", out.extent(0), ", ", out.extent(1), ", ",
                       out.extent(2), ", ", out.extent(3), "]; expected k, v [B, Nk, heads, head_dim] and out = q"));
  if (Nk < 1 && Nq > 0) throw Error("attention: no keys (Nk = 0): softmax over an empty set is undefined");
  if (q.stride(3) != 1 || k.stride(3) != 1 || v.stride(3) != 1 || out.stride(3) != 1)
    throw Error("attention: head_dim must be the unit-stride axis of q, k, v and out");
  const std::ptrdiff_t qblocks = (Nq + detail::kQueryBlock - 1) / detail::kQueryBlock;
  detail::dispatch_head_dim<Arch>(D, [&](auto hd) {
    constexpr int HeadDim = decltype(hd)::value;
    parallel_for(pool, B * H * qblocks, 1, [&](std::ptrdiff_t c0, std::ptrdiff_t c1) {
      for (std::ptrdiff_t c = c0; c < c1; ++c) {
        const auto bh = c / qblocks, b = bh / H, h = bh % H;
        const auto i0 = (c % qblocks) * detail::kQueryBlock, i1 = std::min(Nq, i0 + detail::kQueryBlock);
        for (std::ptrdiff_t i = i0; i < i1; ++i)
          detail::attend_query<HeadDim, Arch>(&q(b, i, h, 0), scale, D, Nk,
                                              detail::DenseKeys{&k(b, 0, h, 0), &v(b, 0, h, 0), k.stride(1), v.stride(1)},
                                              &out(b, i, h, 0));
      }
    });
  });
}

}  // namespace mvar
