// mvar/kernels/gemm_amx.hpp — AMX tile forms of the bf16 and int8 dense layers (Sapphire /
// Emerald / Granite Rapids Xeons), chosen at run time (cpu_dispatch.hpp: Isa::Amx needs the CPU
// flags, XCR0's tile state and Linux's XTILEDATA permission).
//
// Tiles (palette 1, configured per chunk, released after): tmm0–3 the 32 × 32 output block
// (2 × 2 tiles of 16 rows × 16 fp32/int32), tmm4–5 two A tiles (16 rows × 64 bytes: 32 bf16 or
// 64 u8 of k), tmm6–7 two B tiles (16 k-rows × 64 bytes: 16 outputs × 2 bf16 or × 4 int8).
// Both read the packed weights of the AVX-512 forms in place — the rows of k-pairs (bf16) or
// k-quads (int8) of one 16-output half are 64 bytes each, 128 bytes apart — with K padded to whole
// tiles (16 pairs / 16 quads of zeros). A is the activations row-major (bf16 pairs or shifted u8),
// with rows padded to a multiple of 32 and K to whole tiles (zeros, or u8 128 ≡ 0 for int8).
//
// bf16: tdpbf16ps sums pairs of bf16 products into fp32 (the hardware's fixed order inside an
// instruction, k in increasing tile order across instructions): not the bits of the vdpbf16ps
// form but within the same bf16 bound, and the same bits for any thread count.
// int8: tdpbusd sums exact int32: the same bits as every other int8 form (gemm_int8.hpp).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "mvar/kernels/cpu_dispatch.hpp"
#include "mvar/kernels/gemm_bf16.hpp"
#include "mvar/kernels/gemm_int8.hpp"

namespace mvar::detail {

struct alignas(64) AmxTileConfig {
  std::uint8_t palette = 1, start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t colsb[16] = {};
  std::uint8_t rows[16] = {};
};

/// tmm0–7 as 16 rows × 64 bytes each (the only shape these kernels use).
MVAR_TARGET_AMX inline void amx_begin() {
  AmxTileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  __asm__ volatile("ldtilecfg (%0)" ::"r"(&cfg) : "memory");
}
MVAR_TARGET_AMX inline void amx_end() { __asm__ volatile("tilerelease" ::: "memory"); }

/// The one tile loop of both AMX forms: out[32 × 32] (4-byte lanes; rows 16..31 only when rows > 16)
/// = A rows [0, rows ≤ 32) × one B panel of 32 columns, over kb_n blocks of 64 bytes of K per row
/// (int8: 64 values, bf16: 32 pairs). A: row stride lda bytes; B: per block 16 rows of 128 bytes
/// (two 64-byte column halves). Dot::rows32() / rows16() issue the tile products (dpbusd or
/// dpbf16ps; the tile numbers must be literals) into accumulators 0..3 / 0..1 from A row blocks
/// 4..5 and B column halves 6..7.
template <class Dot>
MVAR_TARGET_AMX inline void amx_tile_32x32(int rows, std::ptrdiff_t kb_n, const void* a_, std::ptrdiff_t lda,
                                           const void* b_, void* out_) {
  const auto* a = static_cast<const char*>(a_);
  const auto* b = static_cast<const char*>(b_);
  auto* out = static_cast<char*>(out_);
  _tile_zero(0);
  _tile_zero(1);
  if (rows > 16) {
    _tile_zero(2);
    _tile_zero(3);
    for (std::ptrdiff_t kb = 0; kb < kb_n; ++kb) {
      _tile_loadd(6, b + kb * 16 * 128, 128);
      _tile_loadd(7, b + kb * 16 * 128 + 64, 128);
      _tile_loadd(4, a + kb * 64, lda);
      _tile_loadd(5, a + 16 * lda + kb * 64, lda);
      Dot::rows32();
    }
    _tile_stored(2, out + 16 * 128, 128);
    _tile_stored(3, out + 16 * 128 + 64, 128);
  } else {
    for (std::ptrdiff_t kb = 0; kb < kb_n; ++kb) {
      _tile_loadd(6, b + kb * 16 * 128, 128);
      _tile_loadd(7, b + kb * 16 * 128 + 64, 128);
      _tile_loadd(4, a + kb * 64, lda);
      Dot::rows16();
    }
  }
  _tile_stored(0, out, 128);
  _tile_stored(1, out + 64, 128);
}

struct DotInt8Amx {  // u8 × s8 → int32
  MVAR_TARGET_AMX static void rows16() {
    _tile_dpbusd(0, 4, 6);
    _tile_dpbusd(1, 4, 7);
  }
  MVAR_TARGET_AMX static void rows32() {
    rows16();
    _tile_dpbusd(2, 5, 6);
    _tile_dpbusd(3, 5, 7);
  }
};
struct DotBf16Amx {  // bf16 pairs → fp32
  MVAR_TARGET_AMX static void rows16() {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
  }
  MVAR_TARGET_AMX static void rows32() {
    rows16();
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
};

/// int8: out[32 × 32] int32 = A rows [0, 32) (lda bytes apart) × panel, all Kq k-quads (a multiple
/// of 16: 16 quads = 64 bytes per block).
MVAR_TARGET_AMX inline void int8_tile_amx(int rows, std::ptrdiff_t Kq, const std::uint8_t* a, std::ptrdiff_t lda,
                                          const std::int8_t* b, std::int32_t* out) {
  amx_tile_32x32<DotInt8Amx>(rows, Kq / 16, a, lda, b, out);
}

struct I8Amx : I8Vnni {
  static constexpr int MT = 32;
  static constexpr std::ptrdiff_t kRowPad = 32;
  static void begin() { amx_begin(); }
  static void end() { amx_end(); }
  static void tile(int rows, std::ptrdiff_t Kq, const std::uint8_t* a, std::ptrdiff_t lda, const std::int8_t* b, std::int32_t* out) {
    int8_tile_amx(rows, Kq, a, lda, b, out);
  }
};

// ---- bf16 ----------------------------------------------------------------------------------------

/// Pairs per A row / B panel for K columns in the AMX bf16 form (a multiple of 16).
inline std::ptrdiff_t amx_bf16_pairs(std::ptrdiff_t K) { return ((K + 1) / 2 + 15) / 16 * 16; }

/// Rows [m0, m1) of x as bf16 pairs, row-major with kp pairs per row (zero past K).
MVAR_TARGET_AVX512 inline void bf16_rows(const float* x, std::ptrdiff_t ldx, std::ptrdiff_t m0, std::ptrdiff_t m1,
                                         std::ptrdiff_t K, std::ptrdiff_t kp, std::uint32_t* dst) {
  const std::ptrdiff_t vec = K / 32 * 16;  // pairs read in whole blocks of 32 floats
  for (std::ptrdiff_t m = m0; m < m1; ++m) {
    const float* src = x + m * ldx;
    std::uint32_t* d = dst + m * kp;
    for (std::ptrdiff_t q = 0; q < vec; q += 16)
      _mm512_storeu_si512(d + q, bf16_pairs16(src + 2 * q));
    for (std::ptrdiff_t q = vec; q < kp; ++q) {
      const std::ptrdiff_t k = 2 * q;
      const std::uint32_t lo = k < K ? bf16_round(src[k]) : 0u, hi = k + 1 < K ? bf16_round(src[k + 1]) : 0u;
      d[q] = lo | (hi << 16);
    }
  }
}

/// out[32 × 32] fp32 = A rows [0, 32) (bf16 pairs, kp per row) × bf16 panel (kp pairs).
MVAR_TARGET_AMX inline void bf16_tile_amx(int rows, std::ptrdiff_t kp, const std::uint32_t* a, const std::uint16_t* b,
                                          float* out) {
  amx_tile_32x32<DotBf16Amx>(rows, kp / 16, a, kp * 4, b, out);
}

/// y[r, j] = out[r, j] + bias[j] for r < rows, j < cols.
MVAR_TARGET_AVX512 inline void f32_tile_store(int rows, int cols, const float* out, const float* bias, float* y, std::ptrdiff_t ldy) {
  for (int v = 0; v < 2; ++v) {
    const int c = std::clamp(cols - 16 * v, 0, 16);
    if (c == 0) break;
    const __mmask16 keep = __mmask16((1u << c) - 1u);
    const __m512 bb = bias ? _mm512_maskz_loadu_ps(keep, bias + 16 * v) : _mm512_setzero_ps();
    for (int r = 0; r < rows; ++r)
      _mm512_mask_storeu_ps(y + r * ldy + 16 * v, keep, _mm512_add_ps(_mm512_loadu_ps(out + r * 32 + 16 * v), bb));
  }
}

/// Output panels [p0, p1) of the AMX bf16 GEMM: a = bf16 rows (kp pairs each, rows padded to 32),
/// bp = panels of kp pairs. Row blocks as gemm_int8_chunk.
inline void gemm_bf16_amx_chunk(const std::uint32_t* a, std::ptrdiff_t M, std::ptrdiff_t kp, const std::uint16_t* bp,
                                std::ptrdiff_t N, std::ptrdiff_t p0, std::ptrdiff_t p1, const float* bias, float* y,
                                std::ptrdiff_t ldy) {
  alignas(64) float out[32 * 32];
  const std::ptrdiff_t block = std::max<std::ptrdiff_t>(32, (512 * 1024 / (kp * 4)) / 32 * 32);
  amx_begin();
  for (std::ptrdiff_t m0 = 0; m0 < M; m0 += block) {
    const std::ptrdiff_t m1 = std::min(M, m0 + block);
    for (std::ptrdiff_t p = p0; p < p1; ++p) {
      const std::ptrdiff_t n0 = p * 32;
      const int cols = int(std::min<std::ptrdiff_t>(32, N - n0));
      for (std::ptrdiff_t m = m0; m < m1; m += 32) {
        const int rows = int(std::min<std::ptrdiff_t>(32, m1 - m));
        bf16_tile_amx(rows, kp, a + m * kp, bp + p * kp * 64, out);
        f32_tile_store(rows, cols, out, bias ? bias + n0 : nullptr, y + m * ldy + n0, ldy);
      }
    }
  }
  amx_end();
}

}  // namespace mvar::detail
