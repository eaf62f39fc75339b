// mvar/kernels/gemm_bf16.hpp — the packed GEMM with bf16 weights and activations and fp32
// accumulation (AVX512-BF16 `vdpbf16ps`: acc[j] += a[2j]·b[2j] + a[2j+1]·b[2j+1], 64 FLOP per
// instruction, twice an fp32 FMA). Halves the bytes of streamed weights, which is what bounds the
// early scales (few rows); doubles the peak FLOP rate for the late ones.
//
// Same structure as gemm_packed.hpp, with k taken in pairs (K padded to even with zeros):
//   packed B — panel p (NR = 32 outputs), k-pair q: two zmm of 16 outputs × (k = 2q, 2q+1),
//              u16 index ((p·Kp + q)·2 + v)·32 + 2·jj + e  ↔  w[p·32 + 16·v + jj, 2q + e].
//   packed A — micro-panel i (MR = 14 rows), k-pair q: 14 u32 (two bf16) — a[(i·Kp + q)·14 + r].
// Micro-kernel 14 × 32: 28 zmm accumulators, 2 B loads and 14 32-bit broadcasts per k-pair.
// Rounding: fp32 → bf16 round-to-nearest-even (bf16_round); the summation order over k is fixed
// (k-pairs in order, KC blocks continued through y), so results do not depend on threads.
//
// The kernels are compiled for AVX-512 + AVX512-BF16 by target attributes, whatever -march says,
// and must only run where cpu_features().avx512_bf16 (PackedLinear checks, cpu_dispatch.hpp).
// MVAR_HAS_BF16_GEMM is defined when the build's own flags include AVX512-BF16: the Winograd
// convolution's bf16 form (decided at compile time) uses that.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "mvar/kernels/cpu_dispatch.hpp"
#include "mvar/kernels/gemm_packed.hpp"
#include "mvar/kernels/gemm_simd.hpp"

#if defined(__AVX512BF16__) && defined(__AVX512F__)
#define MVAR_HAS_BF16_GEMM 1
#endif

namespace mvar::detail {

/// fp32 → bf16, round to nearest even (NaN stays NaN).
inline std::uint16_t bf16_round(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return std::uint16_t(u >> 16);
}

struct Bf16Tile {
  static constexpr int MR = 14, NR = 32;
  static constexpr std::ptrdiff_t KCP = 128;  // k-pairs per block: B micro-panel 16 KiB
  static constexpr std::ptrdiff_t MCP = 42;   // micro-panels per A block: 588 rows × 128 pairs × 4 B ≈ 294 KiB
};

/// Packs all of K of output panel p (W rows [32p, 32p + 32) ∩ [0, N)) — Kp = ⌈K/2⌉ pairs, or
/// kp_stride ≥ ⌈K/2⌉ pairs with zero pairs at the end (the AMX form reads 16 pairs at a time).
inline void pack_b_bf16_panel(const float* w, std::ptrdiff_t ldw, std::ptrdiff_t N, std::ptrdiff_t K,
                              std::ptrdiff_t p, std::uint16_t* dst, std::ptrdiff_t kp_stride = 0) {
  const std::ptrdiff_t Kp = kp_stride > 0 ? kp_stride : (K + 1) / 2;
  for (std::ptrdiff_t q = 0; q < Kp; ++q)
    for (int v = 0; v < 2; ++v)
      for (int jj = 0; jj < 16; ++jj)
        for (int e = 0; e < 2; ++e) {
          const std::ptrdiff_t n = p * 32 + 16 * v + jj, k = 2 * q + e;
          dst[((q * 2 + v) * 16 + jj) * 2 + e] = (n < N && k < K) ? bf16_round(w[n * ldw + k]) : 0;
        }
}

/// Sixteen fp32 lanes rounded as bf16_round does (nearest even; a NaN stays a quiet NaN), the
/// bf16 in the high half of each 32-bit lane.
MVAR_TARGET_AVX512 inline __m512i bf16_round_hi16(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                _mm512_set1_epi32(0x7f800000));
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff)));
  return _mm512_mask_or_epi32(r, nan, u, _mm512_set1_epi32(0x00400000));
}

/// The 16 bf16 pairs of 32 consecutive floats: lane j = bf16(p[2j]) | bf16(p[2j + 1]) << 16.
MVAR_TARGET_AVX512 inline __m512i bf16_pairs16(const float* p) {
  // The high 16-bit word of each of the 32 rounded lanes, in order: words 1, 3, …, 63 of (r0, r1).
  alignas(64) static constexpr std::uint16_t kOddWords[32] = {1,  3,  5,  7,  9,  11, 13, 15, 17, 19, 21,
                                                             23, 25, 27, 29, 31, 33, 35, 37, 39, 41, 43,
                                                             45, 47, 49, 51, 53, 55, 57, 59, 61, 63};
  return _mm512_permutex2var_epi16(bf16_round_hi16(_mm512_loadu_ps(p)), _mm512_load_si512(kOddWords),
                                   bf16_round_hi16(_mm512_loadu_ps(p + 16)));
}

/// Packs rows of x (M rows, K columns) into 14-row micro-panels [i0, i1) of bf16 pairs, k-pairs
/// [q0, q0 + kcp): panel i goes to dst + (i − i0)·kcp·MR (zero-padded rows and k). Blocks of 16
/// pairs are rounded and transposed in registers; a block reaching past K goes pair by pair.
MVAR_TARGET_AVX512 inline void pack_a_bf16(const float* x, std::ptrdiff_t ldx, std::ptrdiff_t M, std::ptrdiff_t K, std::ptrdiff_t i0,
                        std::ptrdiff_t i1, std::ptrdiff_t q0, std::ptrdiff_t kcp, std::uint32_t* dst) {
  constexpr int MR = Bf16Tile::MR;
  static_assert(MR <= 16);
  // Pairs [q0, q0 + vec) read only columns < K in whole blocks of 16.
  const std::ptrdiff_t vec = std::clamp<std::ptrdiff_t>((K / 2 - q0) / 16 * 16, 0, kcp / 16 * 16);
  for (std::ptrdiff_t i = i0; i < i1; ++i) {
    std::uint32_t* d = dst + (i - i0) * kcp * MR;
    const int rows = int(std::clamp<std::ptrdiff_t>(M - i * MR, 0, MR));
    for (std::ptrdiff_t qb = 0; qb < vec; qb += 16) {
      __m512i blk[16];
      for (int r = 0; r < 16; ++r)
        blk[r] = r < rows ? bf16_pairs16(x + (i * MR + r) * ldx + 2 * (q0 + qb)) : _mm512_setzero_si512();
      transpose16_store_rt(blk, MR, d + qb * MR, MR);
    }
    for (int r = 0; r < MR; ++r) {
      const std::ptrdiff_t m = i * MR + r;
      if (m >= M) {
        for (std::ptrdiff_t q = vec; q < kcp; ++q) d[q * MR + r] = 0;
        continue;
      }
      const float* src = x + m * ldx;
      for (std::ptrdiff_t q = vec; q < kcp; ++q) {
        const std::ptrdiff_t k = 2 * (q0 + q);
        const std::uint32_t lo = bf16_round(src[k]);
        const std::uint32_t hi = k + 1 < K ? bf16_round(src[k + 1]) : 0u;
        d[q * MR + r] = lo | (hi << 16);
      }
    }
  }
}

/// C[Rows × 16·NV] (+)= A · B over kcp k-pairs, then + bias (16·NV floats) if non-null.
/// a: kcp × MR u32 pairs (stride MR); b: kcp × NV zmm of 16 outputs × 2 (64-byte aligned, k-pair q
/// at b + q·32·NV); c: row stride ldc. Prefetch: also prefetch the B stream kBPrefetchBytes ahead
/// (the first row tile of a panel). NV = 2 for the dense layers, 3 for the Winograd GEMMs.
template <int MR, int Rows, int NV, bool Prefetch = false>
MVAR_TARGET_AVX512 inline void gemm_bf16_micro(std::ptrdiff_t kcp, const std::uint32_t* __restrict a,
                            const std::uint16_t* __restrict b, float* __restrict c, std::ptrdiff_t ldc,
                            bool load_c, const float* bias) {
  __m512 acc[Rows][NV];
#pragma GCC unroll 16
  for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = load_c ? _mm512_loadu_ps(c + r * ldc + 16 * v) : _mm512_setzero_ps();
#pragma GCC unroll 2
  for (std::ptrdiff_t q = 0; q < kcp; ++q) {
    if constexpr (Prefetch) {
      const char* pf = reinterpret_cast<const char*>(b + q * 32 * NV) + kBPrefetchBytes;
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) __builtin_prefetch(pf + 64 * v, 0, 3);
    }
    __m512bh bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = (__m512bh)_mm512_load_si512(b + q * 32 * NV + 32 * v);
#pragma GCC unroll 16
    for (int r = 0; r < Rows; ++r) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(int(a[q * MR + r]));
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], av, bv[v]);
    }
  }
  if (bias) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const __m512 bb = _mm512_loadu_ps(bias + 16 * v);
#pragma GCC unroll 16
      for (int r = 0; r < Rows; ++r) acc[r][v] = _mm512_add_ps(acc[r][v], bb);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(c + r * ldc + 16 * v, acc[r][v]);
}

template <int Rows>
MVAR_TARGET_AVX512 inline void gemm_bf16_micro_rows(int rows, std::ptrdiff_t kcp, const std::uint32_t* a, const std::uint16_t* b,
                                 float* c, std::ptrdiff_t ldc, bool load_c, const float* bias, bool prefetch) {
  if constexpr (Rows > 1) {
    if (rows < Rows) return gemm_bf16_micro_rows<Rows - 1>(rows, kcp, a, b, c, ldc, load_c, bias, prefetch);
  }
  constexpr int MR = Bf16Tile::MR, NV = Bf16Tile::NR / 16;
  if (prefetch)
    gemm_bf16_micro<MR, Rows, NV, true>(kcp, a, b, c, ldc, load_c, bias);
  else
    gemm_bf16_micro<MR, Rows, NV, false>(kcp, a, b, c, ldc, load_c, bias);
}

/// Elements (u32 bf16 pairs) of A scratch gemm_bf16_panels packs for M rows and K columns.
inline std::size_t bf16_a_scratch_elems(std::ptrdiff_t M, std::ptrdiff_t K) {
  return a_scratch_elems<Bf16Tile::MR, Bf16Tile::KCP, Bf16Tile::MCP>(M, (K + 1) / 2);
}

/// Output panels [p0, p1) of y = x · B (+ bias) for all M rows, from x (packed here as bf16 pairs
/// into the calling thread's scratch) and packed B (bf16 panels); loop order as drive_panels.
inline void gemm_bf16_panels(const float* x, std::ptrdiff_t ldx, std::ptrdiff_t M, std::ptrdiff_t K,
                             const std::uint16_t* bp, std::ptrdiff_t N, std::ptrdiff_t p0, std::ptrdiff_t p1,
                             const float* bias, float* y, std::ptrdiff_t ldy, const std::uint32_t* a_packed = nullptr,
                             bool k_outer = false) {
  constexpr int MR = Bf16Tile::MR, NR = Bf16Tile::NR;
  const std::ptrdiff_t Kp = (K + 1) / 2;
  // The u32 pairs live in the fp32 scratch slot (same element size).
  static_assert(sizeof(float) == sizeof(std::uint32_t));
  auto* scratch = a_packed ? nullptr : reinterpret_cast<std::uint32_t*>(thread_scratch(0, bf16_a_scratch_elems(M, K)));
  const std::uint32_t* ap = a_packed ? a_packed : scratch;
  drive_panels<MR, NR, Bf16Tile::KCP, Bf16Tile::MCP>(
      M, Kp, N, p0, p1, bias, y, ldy,
      [&](std::ptrdiff_t i0, std::ptrdiff_t i1, std::ptrdiff_t q0, std::ptrdiff_t kcp) {
        if (scratch) pack_a_bf16(x, ldx, M, K, i0, i1, q0, kcp, scratch);
      },
      [&](int rows, std::ptrdiff_t a_off, std::ptrdiff_t p, std::ptrdiff_t q0, std::ptrdiff_t kcp, float* c,
          std::ptrdiff_t ldc, bool load_c, const float* bb, bool prefetch) {
        gemm_bf16_micro_rows<MR>(rows, kcp, ap + a_off, bp + (p * Kp + q0) * 2 * NR, c, ldc, load_c, bb, prefetch);
      },
      k_outer);
}

}  // namespace mvar::detail

