// mvar/kernels/gemm_int8.hpp — the dense layer with int8 weights (Precision::Int8):
// y[m, n] = sx[m]·sw[n]·Σ_k qx[m, k]·qw[n, k] + b[n], exact int32 sums.
//
// Quantisation (symmetric, round to nearest even, clamped to ±127):
//   weights     — per output channel n, at load time: sw[n] = max_k |w[n, k]| / 127,
//                 qw[n, k] = rne(w[n, k] · (127 / max_k |w[n, k]|));
//   activations — per row m, at run time: sx[m] = max_k |x[m, k]| / 127, qx likewise.
//   A row or channel of zeros has scale 0 (its products are 0). A row holding a NaN or ±Inf gets
//   scale NaN, so its outputs are NaN (never silently finite).
// The dot products use u8 × s8 instructions (AVX512-VNNI `vpdpbusd`, AMX `tdpbusd`), so the
// activations are stored shifted, ux = qx + 128 ∈ [1, 255], and the shift is taken back exactly:
// Σ ux·qw = Σ qx·qw + 128·Σ_k qw[n, k] (corr[n] = 128·Σ_k qw[n, k], computed at load time).
// |Σ ux·qw| ≤ 255·127·K < 2³¹ for K ≤ 65536 (checked), so every form's int32 sum is exact and
// the same; the epilogue y = fma(float(acc − corr[n]), sx[m]·sw[n], b[n]) is the same fp32
// operation sequence in every form. Hence every form (plain, AVX2, AVX512-VNNI, AMX-INT8) gives
// the same bits, for any thread count, row blocking or tile shape (tests/test_gemm_dispatch.cpp).
//
// Layouts:
//   packed W — panel p (NR = 32 outputs), k-quad q (Kq quads, a multiple of 16, zero-padded):
//              byte ((p·Kq + q)·2 + v)·64 + 4·jj + e  ↔  qw[32p + 16v + jj, 4q + e]. For AMX, the
//              rows q of output half v form a B tile (64 bytes per row, 128 bytes apart).
//   activations — row-major u8 [Mpad, 4·Kq] (Kpad = 4·Kq columns, padding 128 ≡ qx 0), read in
//              place by every form (VNNI: a 32-bit broadcast per row and quad; AMX: 16 × 64-byte
//              tiles). Quantised once per call, split over the threads by rows.
// Error against fp32 (per output, before the fp32 epilogue): |Δ| ≤ (sx/2)·Σ|w| + (sw/2)·Σ|x| +
// K·sx·sw/4 (each factor off by at most half a step); tests/test_gemm_dispatch.cpp uses exactly
// this bound.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "mvar/core/assert.hpp"
#include "mvar/kernels/cpu_dispatch.hpp"

namespace mvar::detail {

inline constexpr int kI8NR = 32;                  // outputs per panel
inline constexpr std::ptrdiff_t kI8MaxK = 65536;  // int32 sums stay exact up to here

/// Quads per packed row for K columns (a multiple of 16: whole 64-byte AMX tile rows).
inline std::ptrdiff_t int8_quads(std::ptrdiff_t K) { return ((K + 3) / 4 + 15) / 16 * 16; }

/// Symmetric scale and its inverse for a max |value| (NaN/Inf → NaN scale, quantised as 0).
inline void int8_scale(float amax, bool bad, float& scale, float& inv) {
  if (bad || !(amax <= std::numeric_limits<float>::max())) {
    scale = std::numeric_limits<float>::quiet_NaN();
    inv = 0.0f;
  } else if (amax == 0.0f) {
    scale = inv = 0.0f;
  } else {
    scale = amax / 127.0f;
    inv = 127.0f / amax;
  }
}

/// rne(v·inv) clamped to ±127 (v·inv is one fp32 rounding; rne as vcvtps2dq under default MXCSR).
inline int int8_quantize(float v, float inv) {
  const float t = std::nearbyint(v * inv);
  if (!(t == t)) return 0;  // only in a NaN-scaled row, whose outputs are NaN anyway
  return int(std::clamp(t, -127.0f, 127.0f));
}

/// Per-channel quantisation of W [N, K] (row stride ldw) into packed panels (dst: ⌈N/32⌉·Kq·32
/// bytes), scales sw[⌈N/32⌉·32] and shift corrections corr[⌈N/32⌉·32] (zero past N).
inline void pack_w_int8(const float* w, std::ptrdiff_t ldw, std::ptrdiff_t N, std::ptrdiff_t K, std::int8_t* dst,
                        float* sw, std::int32_t* corr) {
  MVAR_ASSERT(K <= kI8MaxK);
  const std::ptrdiff_t Kq = int8_quads(K), panels = (N + kI8NR - 1) / kI8NR;
  std::fill(dst, dst + panels * Kq * 4 * kI8NR, std::int8_t(0));
  std::fill(sw, sw + panels * kI8NR, 0.0f);
  std::fill(corr, corr + panels * kI8NR, 0);
  for (std::ptrdiff_t n = 0; n < N; ++n) {
    const float* row = w + n * ldw;
    float amax = 0.0f;
    bool bad = false;
    for (std::ptrdiff_t k = 0; k < K; ++k) {
      const float a = std::fabs(row[k]);
      bad = bad || std::isnan(a);
      amax = a > amax ? a : amax;
    }
    float inv;
    int8_scale(amax, bad, sw[n], inv);
    const std::ptrdiff_t p = n / kI8NR, v = (n % kI8NR) / 16, jj = n % 16;
    std::int32_t sum = 0;
    for (std::ptrdiff_t k = 0; k < K; ++k) {
      const int q = int8_quantize(row[k], inv);
      sum += q;
      dst[((p * Kq + k / 4) * 2 + v) * 64 + 4 * jj + k % 4] = std::int8_t(q);
    }
    corr[n] = 128 * sum;
  }
}

/// Quantises rows [m0, m1) of x ([M, K], row stride ldx) into dst (row stride lda = 4·Kq bytes,
/// columns ≥ K set to 128) and their scales into sx[m]. Portable form.
inline void quantize_rows_plain(const float* x, std::ptrdiff_t ldx, std::ptrdiff_t m0, std::ptrdiff_t m1, std::ptrdiff_t K,
                                std::ptrdiff_t lda, std::uint8_t* dst, float* sx) {
  for (std::ptrdiff_t m = m0; m < m1; ++m) {
    const float* row = x + m * ldx;
    float amax = 0.0f;
    bool bad = false;
    for (std::ptrdiff_t k = 0; k < K; ++k) {
      const float a = std::fabs(row[k]);
      bad = bad || (a != a);
      amax = a > amax ? a : amax;
    }
    float inv;
    int8_scale(amax, bad, sx[m], inv);
    std::uint8_t* d = dst + m * lda;
    for (std::ptrdiff_t k = 0; k < K; ++k) d[k] = std::uint8_t(int8_quantize(row[k], inv) + 128);
    std::fill(d + K, d + lda, std::uint8_t(128));
  }
}

/// The same with AVX-512 (same bits: max is exact, the product and rounding are the same ops).
MVAR_TARGET_AVX512 inline void quantize_rows_avx512(const float* x, std::ptrdiff_t ldx, std::ptrdiff_t m0, std::ptrdiff_t m1,
                                                    std::ptrdiff_t K, std::ptrdiff_t lda, std::uint8_t* dst, float* sx) {
  const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127), shift = _mm512_set1_epi32(128);
  for (std::ptrdiff_t m = m0; m < m1; ++m) {
    const float* row = x + m * ldx;
    __m512 vmax = _mm512_setzero_ps();
    __mmask16 nan = 0;
    for (std::ptrdiff_t k = 0; k < K; k += 16) {
      const __mmask16 in = K - k >= 16 ? __mmask16(0xffff) : __mmask16((1u << (K - k)) - 1u);
      const __m512 v = _mm512_abs_ps(_mm512_maskz_loadu_ps(in, row + k));
      nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
      vmax = _mm512_max_ps(vmax, v);
    }
    float inv;
    int8_scale(_mm512_reduce_max_ps(vmax), nan != 0, sx[m], inv);
    const __m512 vinv = _mm512_set1_ps(inv);
    std::uint8_t* d = dst + m * lda;
    for (std::ptrdiff_t k = 0; k < lda; k += 16) {
      const std::ptrdiff_t left = std::max<std::ptrdiff_t>(0, K - k);
      const __mmask16 in = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1u);
      const __m512 v = _mm512_maskz_loadu_ps(in, row + k);
      // Masked-off lanes hold 0 → quantised 0 → stored 128, the padding value.
      __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(v, vinv));
      q = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(q, lo), hi), shift);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d + k), _mm512_cvtepi32_epi8(q));
    }
  }
}

// ---- Tiles: rows ≤ MT of A × one 32-output panel over all Kq quads → int32 out[MT × 32] ----

/// Portable tile (4 rows); the loops are plain C++ the compiler vectorises for its target.
#define MVAR_INT8_PLAIN_TILE(NAME, ATTR)                                                                   \
  ATTR inline void NAME(int rows, std::ptrdiff_t Kq, const std::uint8_t* a, std::ptrdiff_t lda,           \
                        const std::int8_t* b, std::int32_t* out) {                                        \
    for (int r = 0; r < rows; ++r) {                                                                      \
      std::int32_t acc[32] = {};                                                                          \
      const std::uint8_t* ar = a + r * lda;                                                               \
      for (std::ptrdiff_t q = 0; q < Kq; ++q) {                                                           \
        const std::int8_t* bq = b + q * 128;                                                              \
        for (int j = 0; j < 32; ++j) {                                                                    \
          const std::int8_t* bj = bq + (j / 16) * 64 + (j % 16) * 4;                                      \
          acc[j] += int(ar[4 * q]) * bj[0] + int(ar[4 * q + 1]) * bj[1] + int(ar[4 * q + 2]) * bj[2] +    \
                    int(ar[4 * q + 3]) * bj[3];                                                           \
        }                                                                                                 \
      }                                                                                                   \
      std::memcpy(out + r * 32, acc, sizeof acc);                                                         \
    }                                                                                                     \
  }
MVAR_INT8_PLAIN_TILE(int8_tile_plain, )
MVAR_INT8_PLAIN_TILE(int8_tile_avx2, MVAR_TARGET_AVX2)
#undef MVAR_INT8_PLAIN_TILE

template <int Rows>
MVAR_TARGET_AVX512 inline void int8_tile_vnni_rows(std::ptrdiff_t Kq, const std::uint8_t* __restrict a, std::ptrdiff_t lda,
                                                   const std::int8_t* __restrict b, std::int32_t* __restrict out) {
  __m512i acc[Rows][2];
#pragma GCC unroll 16
  for (int r = 0; r < Rows; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
#pragma GCC unroll 2
  for (std::ptrdiff_t q = 0; q < Kq; ++q) {
    const __m512i b0 = _mm512_load_si512(b + q * 128), b1 = _mm512_load_si512(b + q * 128 + 64);
#pragma GCC unroll 16
    for (int r = 0; r < Rows; ++r) {
      std::int32_t quad;
      std::memcpy(&quad, a + r * lda + 4 * q, 4);
      const __m512i av = _mm512_set1_epi32(quad);
      acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], av, b0);
      acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], av, b1);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < Rows; ++r) {
    _mm512_storeu_si512(out + r * 32, acc[r][0]);
    _mm512_storeu_si512(out + r * 32 + 16, acc[r][1]);
  }
}

template <int Rows>
MVAR_TARGET_AVX512 inline void int8_tile_vnni(int rows, std::ptrdiff_t Kq, const std::uint8_t* a, std::ptrdiff_t lda,
                                              const std::int8_t* b, std::int32_t* out) {
  if constexpr (Rows > 1) {
    if (rows < Rows) return int8_tile_vnni<Rows - 1>(rows, Kq, a, lda, b, out);
  }
  int8_tile_vnni_rows<Rows>(Kq, a, lda, b, out);
}

// ---- Epilogues: y[r, j] = fma(float(out[r, j] − corr[j]), sx[r]·sw[j], bias[j] or 0), j < cols ----

inline void int8_epilogue_plain(int rows, int cols, const std::int32_t* out, const float* sx, const float* sw,
                                const std::int32_t* corr, const float* bias, float* y, std::ptrdiff_t ldy) {
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < cols; ++j) {
      const float f = float(out[r * 32 + j] - corr[j]);
      const float s = sx[r] * sw[j];
      y[r * ldy + j] = std::fma(f, s, bias ? bias[j] : 0.0f);
    }
}

MVAR_TARGET_AVX512 inline void int8_epilogue_avx512(int rows, int cols, const std::int32_t* out, const float* sx, const float* sw,
                                                    const std::int32_t* corr, const float* bias, float* y, std::ptrdiff_t ldy) {
  __m512 s_w[2], b_v[2];
  __m512i c_v[2];
  __mmask16 keep[2];
  for (int v = 0; v < 2; ++v) {
    s_w[v] = _mm512_loadu_ps(sw + 16 * v);
    c_v[v] = _mm512_loadu_si512(corr + 16 * v);
    b_v[v] = bias ? _mm512_loadu_ps(bias + 16 * v) : _mm512_setzero_ps();
    const int c = std::clamp(cols - 16 * v, 0, 16);
    keep[v] = __mmask16((1u << c) - 1u);
  }
  for (int r = 0; r < rows; ++r) {
    const __m512 sr = _mm512_set1_ps(sx[r]);
    for (int v = 0; v < 2; ++v) {
      const __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_loadu_si512(out + r * 32 + 16 * v), c_v[v]));
      _mm512_mask_storeu_ps(y + r * ldy + 16 * v, keep[v], _mm512_fmadd_ps(f, _mm512_mul_ps(sr, s_w[v]), b_v[v]));
    }
  }
}

/// Everything a chunk of the int8 GEMM reads.
struct Int8Gemm {
  const std::uint8_t* a = nullptr;  // quantised activations, [Mpad, lda] bytes
  std::ptrdiff_t lda = 0;           // 4·Kq
  const float* sx = nullptr;        // [M]
  std::ptrdiff_t M = 0, N = 0, Kq = 0;
  const std::int8_t* w = nullptr;   // packed panels
  const float* sw = nullptr;        // [panels·32]
  const std::int32_t* corr = nullptr;
  const float* bias = nullptr;      // [panels·32] or null
  float* y = nullptr;
  std::ptrdiff_t ldy = 0;
};

/// Output panels [p0, p1) for all rows with form F (F::MT rows per tile, F::tile, F::epilogue,
/// F::begin/end around the chunk). Rows go in blocks whose activations (≤ 256 KiB) stay in L2
/// while the block sweeps the chunk's panels; each panel (Kq·128 bytes) stays in L2 over a block.
template <class F>
inline void gemm_int8_chunk(const Int8Gemm& g, std::ptrdiff_t p0, std::ptrdiff_t p1) {
  constexpr int MT = F::MT;
  alignas(64) std::int32_t out[MT * 32];
  const std::ptrdiff_t block = std::max<std::ptrdiff_t>(MT, (256 * 1024 / std::max<std::ptrdiff_t>(g.lda, 1)) / MT * MT);
  F::begin();
  for (std::ptrdiff_t m0 = 0; m0 < g.M; m0 += block) {
    const std::ptrdiff_t m1 = std::min(g.M, m0 + block);
    for (std::ptrdiff_t p = p0; p < p1; ++p) {
      const std::ptrdiff_t n0 = p * kI8NR;
      const int cols = int(std::min<std::ptrdiff_t>(kI8NR, g.N - n0));
      const std::int8_t* wp = g.w + p * g.Kq * 4 * kI8NR;
      for (std::ptrdiff_t m = m0; m < m1; m += MT) {
        const int rows = int(std::min<std::ptrdiff_t>(MT, m1 - m));
        F::tile(rows, g.Kq, g.a + m * g.lda, g.lda, wp, out);
        F::epilogue(rows, cols, out, g.sx + m, g.sw + n0, g.corr + n0, g.bias ? g.bias + n0 : nullptr, g.y + m * g.ldy + n0, g.ldy);
      }
    }
  }
  F::end();
}

struct I8Plain {
  static constexpr int MT = 4;
  static constexpr std::ptrdiff_t kRowPad = 1;
  static void begin() {}
  static void end() {}
  static void quantize(const float* x, std::ptrdiff_t ldx, std::ptrdiff_t m0, std::ptrdiff_t m1, std::ptrdiff_t K,
                       std::ptrdiff_t lda, std::uint8_t* dst, float* sx) {
    quantize_rows_plain(x, ldx, m0, m1, K, lda, dst, sx);
  }
  static void tile(int rows, std::ptrdiff_t Kq, const std::uint8_t* a, std::ptrdiff_t lda, const std::int8_t* b, std::int32_t* out) {
    int8_tile_plain(rows, Kq, a, lda, b, out);
  }
  static void epilogue(int rows, int cols, const std::int32_t* out, const float* sx, const float* sw, const std::int32_t* corr,
                       const float* bias, float* y, std::ptrdiff_t ldy) {
    int8_epilogue_plain(rows, cols, out, sx, sw, corr, bias, y, ldy);
  }
};

struct I8Avx2 : I8Plain {
  static void tile(int rows, std::ptrdiff_t Kq, const std::uint8_t* a, std::ptrdiff_t lda, const std::int8_t* b, std::int32_t* out) {
    int8_tile_avx2(rows, Kq, a, lda, b, out);
  }
};

struct I8Vnni {
  static constexpr int MT = 14;
  static constexpr std::ptrdiff_t kRowPad = 1;
  static void begin() {}
  static void end() {}
  static void quantize(const float* x, std::ptrdiff_t ldx, std::ptrdiff_t m0, std::ptrdiff_t m1, std::ptrdiff_t K,
                       std::ptrdiff_t lda, std::uint8_t* dst, float* sx) {
    quantize_rows_avx512(x, ldx, m0, m1, K, lda, dst, sx);
  }
  static void tile(int rows, std::ptrdiff_t Kq, const std::uint8_t* a, std::ptrdiff_t lda, const std::int8_t* b, std::int32_t* out) {
    int8_tile_vnni<MT>(rows, Kq, a, lda, b, out);
  }
  static void epilogue(int rows, int cols, const std::int32_t* out, const float* sx, const float* sw, const std::int32_t* corr,
                       const float* bias, float* y, std::ptrdiff_t ldy) {
    int8_epilogue_avx512(rows, cols, out, sx, sw, corr, bias, y, ldy);
  }
};

}  // namespace mvar::detail
