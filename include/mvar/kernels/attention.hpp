// mvar/kernels/attention.hpp — multi-head softmax attention of Nq queries over Nk keys with no
// mask. Covers MVAR's full in-scale attention (Nq == Nk, the tokens of one scale) and VAR's
// block-causal prefix attention at inference (the Nq new tokens attend to all Nk cached keys:
// everything cached is at a level ≤ the current one, SPEC §1.8).
//
// Layout: q [B, Nq, heads, head_dim], k/v [B, Nk, heads, head_dim], out [B, Nq, heads, head_dim]
// as strided views — token-major with heads interleaved, exactly as the qkv projection writes
// them, so no layout copy is needed (only head_dim must be unit-stride).
//
// Inner loop (detail::QueryAccumulator, shared with neighborhood_attention.hpp): one query
// against a stream of keys, in batches of as many keys as a SIMD batch has lanes. The query and
// the output accumulator stay in registers (vectorised over head_dim); each key's dot product is
// an FMA chain over head_dim, and a batch's dot products are reduced together with one
// transposing horizontal add (xsimd::haddp), so there is no per-key horizontal sum. Softmax is
// online in fp32 (running max, rescaled sum and accumulator) over superblocks of 4 batches. Two
// queries run phase-interleaved. Each chunk packs the keys/values it reuses into a dense stack
// buffer (the qkv rows are 3C floats apart and would alias in L1); prefixes longer than the
// buffer stream through it block by block. Threading: chunks of (batch, block of kQueryBlock
// queries, head), fixed by the problem size; every output row is written by one chunk →
// identical bits for any thread count. Long prefixes with many queries (VAR's last scales) take
// a blocked form instead: two GEMMs per chunk on the packed-GEMM micro-kernel with an exact row
// softmax between them (detail::attention_blocked); the same rule holds there.
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
#include <new>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "mvar/core/assert.hpp"
#include "mvar/core/buffer.hpp"
#include "mvar/core/error.hpp"
#include "mvar/core/parallel.hpp"
#include "mvar/core/tensor_view.hpp"
#include "mvar/kernels/gemm_packed.hpp"
#include "mvar/kernels/softmax.hpp"

// GCC 12 reports -Wmaybe-uninitialized inside its AVX-512 intrinsics (_mm512_undefined_ps in
// xsimd's haddp/exp) once they are inlined here: a known false positive, silenced for this header.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

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

/// Softmax-weighted value sum of one query over a stream of keys, fp32, online: keys arrive in
/// superblocks of up to kSuperblock batches; each batch of L keys is an FMA chain over head_dim
/// per key and one transposing reduction, the superblock's scores share one max, one rescale of
/// the running sum and accumulator, and one vector exp per batch.
template <int HeadDim, class Arch>
class QueryAccumulator {
  using T = HeadDimTraits<HeadDim, Arch>;
  using V = typename T::V;
  static constexpr int L = T::L;
  static constexpr int NV = T::NV;

 public:
  static constexpr int kSuperblock = 4;  // 4 batches = 64 keys on AVX-512: one k = 7 window

  /// q is scaled once here (scale folded into q̂). For HeadDim == 0 `out` is the accumulator.
  QueryAccumulator(const float* q, float scale, std::ptrdiff_t D, float* out) : q_(q), scale_(scale), D_(D), out_(out) {
    if constexpr (T::fixed) {
      MVAR_ASSERT(D == HeadDim);
      for (int c = 0; c < NV; ++c) {
        qv_[c] = V::load_unaligned(q + c * L) * V(scale);
        o_[c] = V(0.0f);
      }
    } else {
      for (std::ptrdiff_t e = 0; e < D; ++e) out[e] = 0.0f;
    }
  }

  /// Adds n keys taken from `keys`.
  template <KeyStream Keys>
  void consume(Keys& keys, std::ptrdiff_t n) {
    for (std::ptrdiff_t j0 = 0; j0 < n; j0 += kSuperblock * L) {
      const int nb = int(std::min<std::ptrdiff_t>(kSuperblock * L, n - j0));
      V s[kSuperblock];
      superblock_scores(keys, nb, s);
      superblock_softmax(nb, s);
      accumulate_values(nb);
    }
  }

  /// Two queries over n keys each, phase-interleaved: one query's softmax → value chain (max,
  /// exp, rescale) overlaps the other's independent dot products. Same arithmetic per query as
  /// consume(), so the bits do not depend on which path ran.
  template <KeyStream KeysA, KeyStream KeysB>
#if defined(__GNUC__)
  [[gnu::always_inline]]  // inlined into attend_query_pair, the accumulators stay in registers
#endif
  static void consume_pair(QueryAccumulator& a, KeysA& ka, QueryAccumulator& b, KeysB& kb, std::ptrdiff_t n) {
    for (std::ptrdiff_t j0 = 0; j0 < n; j0 += kSuperblock * L) {
      const int nb = int(std::min<std::ptrdiff_t>(kSuperblock * L, n - j0));
      V sa[kSuperblock], sb[kSuperblock];
      a.superblock_scores(ka, nb, sa);
      b.superblock_scores(kb, nb, sb);
      a.superblock_softmax(nb, sa);
      b.superblock_softmax(nb, sb);
      a.accumulate_values(nb);
      b.accumulate_values(nb);
    }
  }

  /// Writes the normalised output (out[0 .. D) for HeadDim == 0, else `out` given here).
  void finish(float* out) {
    const float inv = 1.0f / xsimd::hadd(lsum_);
    if constexpr (T::fixed) {
      for (int c = 0; c < NV; ++c) (o_[c] * V(inv)).store_unaligned(out + c * L);
    } else {
      MVAR_ASSERT(out == out_);
      for (std::ptrdiff_t e = 0; e < D_; ++e) out[e] *= inv;
    }
  }

 private:
  template <KeyStream Keys>
  void superblock_scores(Keys& keys, int nb, V* s) {
    const int nbat = (nb + L - 1) / L;
    for (int t = 0; t < nbat; ++t) s[t] = scores(keys, std::min(L, nb - t * L), vrow_ + t * L);
  }

  void superblock_softmax(int nb, const V* s) {
    const int nbat = (nb + L - 1) / L;
    V mx = s[0];
    for (int t = 1; t < nbat; ++t) mx = xsimd::max(mx, s[t]);
    const float alpha = sm_.rescale(reduce_max(mx));
    if (alpha != 1.0f) scale_accumulator(alpha);
    const V m(sm_.m);
    for (int t = 0; t < nbat; ++t) {
      const V p = xsimd::exp(s[t] - m);  // masked lanes: exp(−inf) = 0
      lsum_ += p;
      p.store_aligned(pb_ + t * L);
    }
  }

  /// Scores of the next n ≤ L keys as one batch (lanes ≥ n are −inf); records their value rows.
  template <KeyStream Keys>
  V scores(Keys& keys, int n, const float** vrow) {
    V acc[L];
    if constexpr (T::fixed) {
      V qv[NV];
      for (int c = 0; c < NV; ++c) qv[c] = qv_[c];
      if (n == 1) {  // e.g. the 49th key of a 7×7 window: one horizontal sum, not a full transpose
        const float* kp;
        keys.next(kp, vrow[0]);
        V a = qv[0] * V::load_unaligned(kp);
        for (int c = 1; c < NV; ++c) a = xsimd::fma(qv[c], V::load_unaligned(kp + c * L), a);
        return xsimd::select(lane_index<V>() < V(1.0f), V(xsimd::hadd(a)),
                             V(-std::numeric_limits<float>::infinity()));
      }
#pragma GCC unroll 16
      for (int j = 0; j < L; ++j) {
        V a(0.0f);
        if (j < n) {
          const float* kp;
          keys.next(kp, vrow[j]);
          a = qv[0] * V::load_unaligned(kp);
#pragma GCC unroll 8
          for (int c = 1; c < NV; ++c) a = xsimd::fma(qv[c], V::load_unaligned(kp + c * L), a);
        }
        acc[haddp_slot<Arch>(j)] = a;
      }
      V s = xsimd::haddp(acc);
      if (n < L) s = xsimd::select(lane_index<V>() < V(float(n)), s, V(-std::numeric_limits<float>::infinity()));
      return s;
    } else {
      // Run-time head_dim: q is re-read from memory (L1-resident), scalar tail after the body.
      const std::ptrdiff_t body = D_ - D_ % L;
      alignas(64) float tail[L], sb[L];
      for (int j = 0; j < L; ++j) {
        acc[j] = V(0.0f);
        tail[j] = 0.0f;
        if (j >= n) continue;
        const float* kp;
        keys.next(kp, vrow[j]);
        for (std::ptrdiff_t e = 0; e < body; e += L)
          acc[j] = xsimd::fma(V::load_unaligned(q_ + e), V::load_unaligned(kp + e), acc[j]);
        for (std::ptrdiff_t e = body; e < D_; ++e) tail[j] = std::fma(q_[e], kp[e], tail[j]);
      }
      transpose_sum<Arch>(acc).store_aligned(sb);
      for (int j = 0; j < L; ++j) sb[j] = j < n ? (sb[j] + tail[j]) * scale_ : -std::numeric_limits<float>::infinity();
      return V::load_aligned(sb);
    }
  }

  void scale_accumulator(float alpha) {
    lsum_ *= V(alpha);
    if constexpr (T::fixed) {
      for (int c = 0; c < NV; ++c) o_[c] *= V(alpha);
    } else {
      for (std::ptrdiff_t e = 0; e < D_; ++e) out_[e] *= alpha;
    }
  }

  void accumulate_values(int nb) {
    if constexpr (T::fixed) {
      // Two accumulator sets (even / odd keys) double the independent FMA chains: with NV = 4
      // one set would be bound by FMA latency, not throughput.
      // Local copies: members would be stored back on every iteration (possible aliasing).
      V o1[NV], o2[NV];
      for (int c = 0; c < NV; ++c) {
        o1[c] = o_[c];
        o2[c] = V(0.0f);
      }
      int j = 0;
      for (; j + 1 < nb; j += 2) {
        const V p0(pb_[j]), p1(pb_[j + 1]);
        const float *v0 = vrow_[j], *v1 = vrow_[j + 1];
#pragma GCC unroll 8
        for (int c = 0; c < NV; ++c) {
          o1[c] = xsimd::fma(p0, V::load_unaligned(v0 + c * L), o1[c]);
          o2[c] = xsimd::fma(p1, V::load_unaligned(v1 + c * L), o2[c]);
        }
      }
      if (j < nb) {
        const V p0(pb_[j]);
        for (int c = 0; c < NV; ++c) o1[c] = xsimd::fma(p0, V::load_unaligned(vrow_[j] + c * L), o1[c]);
      }
      for (int c = 0; c < NV; ++c) o_[c] = o1[c] + o2[c];
    } else {
      const std::ptrdiff_t body = D_ - D_ % L;
      for (int j = 0; j < nb; ++j) {
        const V pj(pb_[j]);
        const float* vp = vrow_[j];
        for (std::ptrdiff_t e = 0; e < body; e += L)
          xsimd::fma(pj, V::load_unaligned(vp + e), V::load_unaligned(out_ + e)).store_unaligned(out_ + e);
        for (std::ptrdiff_t e = body; e < D_; ++e) out_[e] = std::fma(pb_[j], vp[e], out_[e]);
      }
    }
  }

  const float* q_;
  float scale_;
  std::ptrdiff_t D_;
  float* out_;
  V qv_[NV], o_[NV];
  V lsum_ = V(0.0f);
  OnlineSoftmax sm_;
  alignas(64) float pb_[kSuperblock * L];  // probabilities of the current superblock
  const float* vrow_[kSuperblock * L];     // their value rows
};

/// Both queries of a pair at once (see QueryAccumulator::consume_pair).
template <int HeadDim, class Arch, KeyStream Keys>
void attend_query_pair(const float* qa, const float* qb, float scale, std::ptrdiff_t D, std::ptrdiff_t nk, Keys ka,
                       Keys kb, float* outa, float* outb) {
  MVAR_ASSERT(nk >= 1);
  QueryAccumulator<HeadDim, Arch> a(qa, scale, D, outa), b(qb, scale, D, outb);
  QueryAccumulator<HeadDim, Arch>::consume_pair(a, ka, b, kb, nk);
  a.finish(outa);
  b.finish(outb);
}

/// out[0 .. D) = Σ_j softmax_j(scale · q·k_j) v_j over nk ≥ 1 keys from `keys` (fp32, online).
template <int HeadDim, class Arch, KeyStream Keys>
void attend_query(const float* q, float scale, std::ptrdiff_t D, std::ptrdiff_t nk, Keys keys, float* out) {
  MVAR_ASSERT(nk >= 1);
  QueryAccumulator<HeadDim, Arch> acc(q, scale, D, out);
  acc.consume(keys, nk);
  acc.finish(out);
}

/// Copies rows [n, D] of a strided view (row stride `stride`, unit stride along D) into a
/// dense buffer: the kernels pack the keys and values a chunk reuses, so that they sit in
/// consecutive cache lines instead of one 4 KiB-aliased line per token (the model's qkv rows are
/// 3·C floats apart, a multiple of 4 KiB whenever C is a multiple of 1024/3… e.g. C = 1024 → 12 KiB).
template <class Arch = xsimd::default_arch>
void pack_rows(const float* src, std::ptrdiff_t stride, std::ptrdiff_t n, std::ptrdiff_t D, float* dst) {
  using V = xsimd::batch<float, Arch>;
  constexpr std::ptrdiff_t L = V::size;
  for (std::ptrdiff_t r = 0; r < n; ++r, src += stride, dst += D) {
    std::ptrdiff_t e = 0;
    for (; e + L <= D; e += L) V::load_unaligned(src + e).store_unaligned(dst + e);
    for (; e < D; ++e) dst[e] = src[e];
  }
}

/// Floats of the per-chunk packing buffer (stack): 96 KiB holds the K and V rows of a 4×8 query
/// tile's 10×14 key region at head_dim 64 (k = 7), or 64 keys at head_dim ≤ 192.
inline constexpr std::ptrdiff_t kPackFloats = 24576;

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

/// The blocked form for long prefixes (VAR's last scales: hundreds of queries over up to 2240
/// cached keys): per chunk of (batch, head, ≤ kBlockedChunk queries) the keys are packed once as
/// the B panels of S = q·kᵀ and the values as those of out = P·v, and both products run on the
/// packed-GEMM micro-kernel (gemm_packed.hpp) — each loaded key and value then serves a whole tile
/// of queries instead of one or two. Scores live in blocks of kBlockedRows queries × Nk; the softmax
/// of each row is exact (max over the whole row, then exp and normalisation: softmax_inplace).
/// Taken when there are more keys than one packed key block holds and at least kBlockedMinQueries
/// queries; below that the per-query kernel streams the keys with less packing per query.
inline constexpr std::ptrdiff_t kBlockedChunk = 256, kBlockedRows = 64, kBlockedMinQueries = 16;

template <class Arch>
void attention_blocked(ThreadPool& pool, TensorView<const float, 4> q, TensorView<const float, 4> k,
                       TensorView<const float, 4> v, TensorView<float, 4> out, float scale) {
  constexpr int NR = GemmTile<Arch>::NR;
  const auto B = q.extent(0), Nq = q.extent(1), H = q.extent(2), D = q.extent(3), Nk = k.extent(1);
  const std::ptrdiff_t kpan = (Nk + NR - 1) / NR, dpan = (D + NR - 1) / NR, ld_s = kpan * NR;
  const std::ptrdiff_t chunks_per_head = (Nq + kBlockedChunk - 1) / kBlockedChunk;
  const std::size_t floats = std::size_t(kpan * NR * D + dpan * NR * Nk + kBlockedRows * ld_s);
  parallel_for(pool, B * H * chunks_per_head, 1, [&](std::ptrdiff_t c0, std::ptrdiff_t c1) {
    thread_local ThreadScratch<float> scratch;  // counted in thread_scratch_bytes()
    float* const kp = scratch.grow(floats);
    float* const vp = kp + kpan * NR * D;
    float* const sc = vp + dpan * NR * Nk;
    for (std::ptrdiff_t c = c0; c < c1; ++c) {
      const auto h = c % H, b = c / (H * chunks_per_head);
      const auto i0 = ((c / H) % chunks_per_head) * kBlockedChunk, i1 = std::min(Nq, i0 + kBlockedChunk);
      // Keys: the rows of k are the columns of S, i.e. a weight matrix [Nk, D] (GEMM B panels).
      for (std::ptrdiff_t p = 0; p < kpan; ++p) pack_b_panel<Arch>(&k(b, 0, h, 0), k.stride(1), Nk, p, 0, D, kp + p * D * NR);
      // Values: panel p holds columns [p·NR, p·NR + NR) of v (zero beyond D), one key per row.
      for (std::ptrdiff_t p = 0; p < dpan; ++p) {
        const std::ptrdiff_t d0 = p * NR, w = std::min<std::ptrdiff_t>(NR, D - d0);
        float* dst = vp + p * Nk * NR;
        for (std::ptrdiff_t j = 0; j < Nk; ++j, dst += NR) {
          std::copy_n(&v(b, j, h, d0), w, dst);
          std::fill(dst + w, dst + NR, 0.0f);
        }
      }
      for (std::ptrdiff_t r0 = i0; r0 < i1; r0 += kBlockedRows) {
        const std::ptrdiff_t rows = std::min(kBlockedRows, i1 - r0);
        gemm_panels<Arch>(&q(b, r0, h, 0), q.stride(1), rows, D, BSource{kp, nullptr, 0}, Nk, 0, kpan, nullptr, sc, ld_s);
        using V = xsimd::batch<float, Arch>;
        for (std::ptrdiff_t r = 0; r < rows; ++r) {
          float* row = sc + r * ld_s;
          if (scale != 1.0f) {
            std::ptrdiff_t j = 0;
            for (; j + std::ptrdiff_t(V::size) <= Nk; j += V::size) (V::load_aligned(row + j) * V(scale)).store_aligned(row + j);
            for (; j < Nk; ++j) row[j] *= scale;
          }
          softmax_inplace<Arch>(std::span<float>(row, std::size_t(Nk)));
        }
        gemm_panels<Arch>(sc, ld_s, rows, Nk, BSource{vp, nullptr, 0}, D, 0, dpan, nullptr, &out(b, r0, h, 0),
                          out.stride(1));
      }
    }
  });
}

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
  if (2 * D > detail::kPackFloats)
    throw Error(concat("attention: head_dim ", D, " is too large (at most ", detail::kPackFloats / 2, ")"));
  const std::ptrdiff_t qblocks = (Nq + detail::kQueryBlock - 1) / detail::kQueryBlock;
  // Key blocks packed per chunk: as many keys as fit the stack buffer (K and V), ≤ 256.
  const std::ptrdiff_t kblock = std::min<std::ptrdiff_t>(256, std::max<std::ptrdiff_t>(1, detail::kPackFloats / (2 * D)));
  if (Nk > kblock && Nq >= detail::kBlockedMinQueries) {
    detail::attention_blocked<Arch>(pool, q, k, v, out, scale);
    return;
  }
  detail::dispatch_head_dim<Arch>(D, [&](auto hd) {
    constexpr int HeadDim = decltype(hd)::value;
    using Acc = detail::QueryAccumulator<HeadDim, Arch>;
    parallel_for(pool, B * H * qblocks, 1, [&](std::ptrdiff_t c0, std::ptrdiff_t c1) {
      alignas(64) float pack[detail::kPackFloats];
      for (std::ptrdiff_t c = c0; c < c1; ++c) {
        // Heads vary fastest (neighbouring slices of the same token rows, see NA).
        const auto h = c % H, b = c / (H * qblocks);
        const auto i0 = ((c / H) % qblocks) * detail::kQueryBlock, i1 = std::min(Nq, i0 + detail::kQueryBlock);
        if (Nk <= kblock) {
          // Common case (MVAR in-scale, VAR up to 256 keys at head_dim 64): pack once, one pass.
          detail::pack_rows<Arch>(&k(b, 0, h, 0), k.stride(1), Nk, D, pack);
          detail::pack_rows<Arch>(&v(b, 0, h, 0), v.stride(1), Nk, D, pack + Nk * D);
          const detail::DenseKeys keys{pack, pack + Nk * D, D, D};
          std::ptrdiff_t i = i0;
          for (; i + 1 < i1; i += 2)  // query pairs, phase-interleaved (see attend_query_pair)
            detail::attend_query_pair<HeadDim, Arch>(&q(b, i, h, 0), &q(b, i + 1, h, 0), scale, D, Nk, keys, keys,
                                                     &out(b, i, h, 0), &out(b, i + 1, h, 0));
          if (i < i1) detail::attend_query<HeadDim, Arch>(&q(b, i, h, 0), scale, D, Nk, keys, &out(b, i, h, 0));
        } else {
          // Long prefixes: stream packed key blocks past all queries of the chunk; the online
          // state of each query persists across blocks (same key order → same bits).
          alignas(Acc) unsigned char storage[detail::kQueryBlock * sizeof(Acc)];
          Acc* acc = reinterpret_cast<Acc*>(storage);
          for (std::ptrdiff_t i = i0; i < i1; ++i) new (acc + (i - i0)) Acc(&q(b, i, h, 0), scale, D, &out(b, i, h, 0));
          for (std::ptrdiff_t j0 = 0; j0 < Nk; j0 += kblock) {
            const auto nb = std::min(kblock, Nk - j0);
            detail::pack_rows<Arch>(&k(b, j0, h, 0), k.stride(1), nb, D, pack);
            detail::pack_rows<Arch>(&v(b, j0, h, 0), v.stride(1), nb, D, pack + nb * D);
            std::ptrdiff_t i = i0;
            for (; i + 1 < i1; i += 2) {
              detail::DenseKeys ka{pack, pack + nb * D, D, D}, kb = ka;
              Acc::consume_pair(acc[i - i0], ka, acc[i + 1 - i0], kb, nb);
            }
            if (i < i1) {
              detail::DenseKeys keys{pack, pack + nb * D, D, D};
              acc[i - i0].consume(keys, nb);
            }
          }
          for (std::ptrdiff_t i = i0; i < i1; ++i) {
            acc[i - i0].finish(&out(b, i, h, 0));
            acc[i - i0].~Acc();
          }
        }
      }
    });
  });
}

}  // namespace mvar

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
