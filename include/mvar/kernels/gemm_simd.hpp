// mvar/kernels/gemm_simd.hpp — the fp32 packed-GEMM micro-kernels of gemm_packed.hpp in forms
// chosen at run time (cpu_dispatch.hpp): AVX-512 (14 × 32 tile, 28 zmm accumulators) and AVX2
// (6 × 16 tile, 12 ymm accumulators), written with intrinsics inside target-attributed functions
// so that a build without -march=native carries them. The portable form is gemm_packed.hpp's
// xsimd kernel for the build's own arch.
//
// Each form has the layout of gemm_packed.hpp (packed B: kc × NR panels; packed A: k-major MR-row
// micro-panels) and the same reduction order: per output one fp32 accumulator, one FMA per k in
// increasing k, KC blocks continued through y, then + bias. So every form gives the same bits as
// every other one that uses FMA (tests/test_gemm_dispatch.cpp checks it), and any thread count the
// same bits as one thread.
//
// A form is a traits struct: MR, NR, KC, MCP (as GemmTile), pack_a() and micro() (one tile of
// rows ≤ MR × NR over kc steps). gemm_f32_chunk<Form> runs drive_panels with it.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "mvar/kernels/cpu_dispatch.hpp"
#include "mvar/kernels/gemm_packed.hpp"

namespace mvar::detail {

/// Portable-C form of pack_transposed (no intrinsics): dst[k·R + r] = src[r·ld + k], zero rows
/// from `valid` on. Used for the load-time B packing of every dispatched form.
template <int R>
inline void pack_transposed_plain(const float* src, std::ptrdiff_t ld, int valid, std::ptrdiff_t kc, float* dst) {
  constexpr std::ptrdiff_t KB = 32;
  for (std::ptrdiff_t kb = 0; kb < kc; kb += KB) {
    const std::ptrdiff_t ke = std::min(kc, kb + KB);
    for (std::ptrdiff_t k = kb; k < ke; ++k)
      for (int r = 0; r < R; ++r) dst[k * R + r] = r < valid ? src[r * ld + k] : 0.0f;
  }
}

// ---- AVX-512 ------------------------------------------------------------------------------------

template <int Rows, bool Prefetch>
MVAR_TARGET_AVX512 inline void f32_micro_avx512(std::ptrdiff_t kc, const float* __restrict a, const float* __restrict b,
                                                float* __restrict c, std::ptrdiff_t ldc, bool load_c, const float* bias) {
  constexpr int MR = 14;
  __m512 acc[Rows][2];
#pragma GCC unroll 16
  for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < 2; ++v) acc[r][v] = load_c ? _mm512_loadu_ps(c + r * ldc + 16 * v) : _mm512_setzero_ps();
#pragma GCC unroll 2
  for (std::ptrdiff_t k = 0; k < kc; ++k) {
    if constexpr (Prefetch) {
      const char* pf = reinterpret_cast<const char*>(b + k * 32) + kBPrefetchBytes;
      __builtin_prefetch(pf, 0, 3);
      __builtin_prefetch(pf + 64, 0, 3);
    }
    const __m512 b0 = _mm512_load_ps(b + k * 32), b1 = _mm512_load_ps(b + k * 32 + 16);
#pragma GCC unroll 16
    for (int r = 0; r < Rows; ++r) {
      const __m512 av = _mm512_set1_ps(a[k * MR + r]);
      acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
    }
  }
  if (bias) {
    const __m512 bb0 = _mm512_loadu_ps(bias), bb1 = _mm512_loadu_ps(bias + 16);
#pragma GCC unroll 16
    for (int r = 0; r < Rows; ++r) {
      acc[r][0] = _mm512_add_ps(acc[r][0], bb0);
      acc[r][1] = _mm512_add_ps(acc[r][1], bb1);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < Rows; ++r) {
    _mm512_storeu_ps(c + r * ldc, acc[r][0]);
    _mm512_storeu_ps(c + r * ldc + 16, acc[r][1]);
  }
}

template <int Rows>
MVAR_TARGET_AVX512 inline void f32_micro_avx512_rows(int rows, std::ptrdiff_t kc, const float* a, const float* b, float* c,
                                                     std::ptrdiff_t ldc, bool load_c, const float* bias, bool prefetch) {
  if constexpr (Rows > 1) {
    if (rows < Rows) return f32_micro_avx512_rows<Rows - 1>(rows, kc, a, b, c, ldc, load_c, bias, prefetch);
  }
  if (prefetch)
    f32_micro_avx512<Rows, true>(kc, a, b, c, ldc, load_c, bias);
  else
    f32_micro_avx512<Rows, false>(kc, a, b, c, ldc, load_c, bias);
}

/// 16 × 16 u32 in-register transpose; stores column q's first n rows to dst + q·ld.
// (GCC 12 warns about the _mm512_undefined_* "source" inside its own shuffle intrinsics.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
MVAR_TARGET_AVX512 inline void transpose16_store_rt(const __m512i rows[16], int n, std::uint32_t* dst, std::ptrdiff_t ld) {
  __m512i t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(rows[2 * i], rows[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(rows[2 * i], rows[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    u[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  const __mmask16 m = __mmask16((1u << n) - 1u);
  for (int k = 0; k < 4; ++k) {
    const __m512i s0 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0x44), s1 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0xEE);
    const __m512i s2 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0x44), s3 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0xEE);
    _mm512_mask_storeu_epi32(dst + (0 + k) * ld, m, _mm512_shuffle_i32x4(s0, s2, 0x88));
    _mm512_mask_storeu_epi32(dst + (4 + k) * ld, m, _mm512_shuffle_i32x4(s0, s2, 0xDD));
    _mm512_mask_storeu_epi32(dst + (8 + k) * ld, m, _mm512_shuffle_i32x4(s1, s3, 0x88));
    _mm512_mask_storeu_epi32(dst + (12 + k) * ld, m, _mm512_shuffle_i32x4(s1, s3, 0xDD));
  }
}
#pragma GCC diagnostic pop

/// A micro-panels of 14 rows (k-major), as pack_a for the AVX-512 tile.
MVAR_TARGET_AVX512 inline void f32_pack_a_avx512(const float* x, std::ptrdiff_t ldx, std::ptrdiff_t M, std::ptrdiff_t i0,
                                                 std::ptrdiff_t i1, std::ptrdiff_t k0, std::ptrdiff_t kc, float* dst) {
  constexpr int MR = 14;
  const std::ptrdiff_t vec = kc / 16 * 16;
  for (std::ptrdiff_t i = i0; i < i1; ++i) {
    const float* src = x + i * MR * ldx + k0;
    const int valid = int(std::min<std::ptrdiff_t>(MR, M - i * MR));
    float* d = dst + (i - i0) * kc * MR;
    for (std::ptrdiff_t k = 0; k < vec; k += 16) {
      __m512i rows[16];
      for (int r = 0; r < 16; ++r)
        rows[r] = r < valid ? _mm512_castps_si512(_mm512_loadu_ps(src + r * ldx + k)) : _mm512_setzero_si512();
      transpose16_store_rt(rows, MR, reinterpret_cast<std::uint32_t*>(d + k * MR), MR);
    }
    for (std::ptrdiff_t k = vec; k < kc; ++k)
      for (int r = 0; r < MR; ++r) d[k * MR + r] = r < valid ? src[r * ldx + k] : 0.0f;
  }
}

struct F32Avx512 {
  static constexpr int MR = 14, NR = 32;
  static constexpr std::ptrdiff_t KC = 256, MCP = std::ptrdiff_t(600 * 1024 / (KC * 4)) / MR;
  static void pack_a(const float* x, std::ptrdiff_t ldx, std::ptrdiff_t M, std::ptrdiff_t i0, std::ptrdiff_t i1,
                     std::ptrdiff_t k0, std::ptrdiff_t kc, float* dst) {
    f32_pack_a_avx512(x, ldx, M, i0, i1, k0, kc, dst);
  }
  static void micro(int rows, std::ptrdiff_t kc, const float* a, const float* b, float* c, std::ptrdiff_t ldc, bool load_c,
                    const float* bias, bool prefetch) {
    f32_micro_avx512_rows<MR>(rows, kc, a, b, c, ldc, load_c, bias, prefetch);
  }
};

// ---- AVX2 ---------------------------------------------------------------------------------------

template <int Rows, bool Prefetch>
MVAR_TARGET_AVX2 inline void f32_micro_avx2(std::ptrdiff_t kc, const float* __restrict a, const float* __restrict b,
                                            float* __restrict c, std::ptrdiff_t ldc, bool load_c, const float* bias) {
  constexpr int MR = 6;
  __m256 acc[Rows][2];
#pragma GCC unroll 8
  for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < 2; ++v) acc[r][v] = load_c ? _mm256_loadu_ps(c + r * ldc + 8 * v) : _mm256_setzero_ps();
#pragma GCC unroll 2
  for (std::ptrdiff_t k = 0; k < kc; ++k) {
    if constexpr (Prefetch) __builtin_prefetch(reinterpret_cast<const char*>(b + k * 16) + kBPrefetchBytes, 0, 3);
    const __m256 b0 = _mm256_load_ps(b + k * 16), b1 = _mm256_load_ps(b + k * 16 + 8);
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r) {
      const __m256 av = _mm256_set1_ps(a[k * MR + r]);
      acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
    }
  }
  if (bias) {
    const __m256 bb0 = _mm256_loadu_ps(bias), bb1 = _mm256_loadu_ps(bias + 8);
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r) {
      acc[r][0] = _mm256_add_ps(acc[r][0], bb0);
      acc[r][1] = _mm256_add_ps(acc[r][1], bb1);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < Rows; ++r) {
    _mm256_storeu_ps(c + r * ldc, acc[r][0]);
    _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);
  }
}

template <int Rows>
MVAR_TARGET_AVX2 inline void f32_micro_avx2_rows(int rows, std::ptrdiff_t kc, const float* a, const float* b, float* c,
                                                 std::ptrdiff_t ldc, bool load_c, const float* bias, bool prefetch) {
  if constexpr (Rows > 1) {
    if (rows < Rows) return f32_micro_avx2_rows<Rows - 1>(rows, kc, a, b, c, ldc, load_c, bias, prefetch);
  }
  if (prefetch)
    f32_micro_avx2<Rows, true>(kc, a, b, c, ldc, load_c, bias);
  else
    f32_micro_avx2<Rows, false>(kc, a, b, c, ldc, load_c, bias);
}

struct F32Avx2 {
  static constexpr int MR = 6, NR = 16;
  static constexpr std::ptrdiff_t KC = 256, MCP = std::ptrdiff_t(600 * 1024 / (KC * 4)) / MR;
  static void pack_a(const float* x, std::ptrdiff_t ldx, std::ptrdiff_t M, std::ptrdiff_t i0, std::ptrdiff_t i1,
                     std::ptrdiff_t k0, std::ptrdiff_t kc, float* dst) {
    for (std::ptrdiff_t i = i0; i < i1; ++i)
      pack_transposed_plain<MR>(x + i * MR * ldx + k0, ldx, int(std::min<std::ptrdiff_t>(MR, M - i * MR)), kc,
                                dst + (i - i0) * kc * MR);
  }
  static void micro(int rows, std::ptrdiff_t kc, const float* a, const float* b, float* c, std::ptrdiff_t ldc, bool load_c,
                    const float* bias, bool prefetch) {
    f32_micro_avx2_rows<MR>(rows, kc, a, b, c, ldc, load_c, bias, prefetch);
  }
};

// ---- Portable (the build's xsimd arch) -----------------------------------------------------------

struct F32Portable {
  using Arch = xsimd::default_arch;
  using T = GemmTile<Arch>;
  static constexpr int MR = T::MR, NR = T::NR;
  static constexpr std::ptrdiff_t KC = T::KC, MCP = T::MCP;
  static void pack_a(const float* x, std::ptrdiff_t ldx, std::ptrdiff_t M, std::ptrdiff_t i0, std::ptrdiff_t i1,
                     std::ptrdiff_t k0, std::ptrdiff_t kc, float* dst) {
    detail::pack_a<Arch>(x, ldx, M, i0, i1, k0, kc, dst);
  }
  static void micro(int rows, std::ptrdiff_t kc, const float* a, const float* b, float* c, std::ptrdiff_t ldc, bool load_c,
                    const float* bias, bool prefetch) {
    gemm_micro_rows<Arch, MR, MR, T::NV>(rows, kc, a, b, c, ldc, load_c, bias, prefetch);
  }
};

/// Packs all of K of output panel p of W ([N, K], row stride ldw) for a form of NR columns.
template <int NR>
inline void pack_b_panel_plain(const float* w, std::ptrdiff_t ldw, std::ptrdiff_t N, std::ptrdiff_t K, std::ptrdiff_t p,
                               float* dst) {
  const std::ptrdiff_t n0 = p * NR;
  pack_transposed_plain<NR>(w + n0 * ldw, ldw, int(std::min<std::ptrdiff_t>(NR, N - n0)), K, dst);
}

/// Output panels [p0, p1) of y = x · B (+ bias) for all M rows with form F; B packed for all of K
/// (panel p at bp + p·K·NR). A is packed into the calling thread's scratch unless a_packed (all
/// of K, one row block) is given.
template <class F>
inline void gemm_f32_chunk(const float* x, std::ptrdiff_t ldx, std::ptrdiff_t M, std::ptrdiff_t K, const float* bp,
                           std::ptrdiff_t N, std::ptrdiff_t p0, std::ptrdiff_t p1, const float* bias, float* y,
                           std::ptrdiff_t ldy, const float* a_packed = nullptr, bool k_outer = false) {
  constexpr int MR = F::MR, NR = F::NR;
  float* scratch = a_packed ? nullptr : thread_scratch(0, a_scratch_elems<MR, F::KC, F::MCP>(M, K));
  const float* ap = a_packed ? a_packed : scratch;
  drive_panels<MR, NR, F::KC, F::MCP>(
      M, K, N, p0, p1, bias, y, ldy,
      [&](std::ptrdiff_t i0, std::ptrdiff_t i1, std::ptrdiff_t k0, std::ptrdiff_t kc) {
        if (scratch) F::pack_a(x, ldx, M, i0, i1, k0, kc, scratch);
      },
      [&](int rows, std::ptrdiff_t a_off, std::ptrdiff_t p, std::ptrdiff_t k0, std::ptrdiff_t kc, float* c,
          std::ptrdiff_t ldc, bool load_c, const float* bb, bool prefetch) {
        F::micro(rows, kc, ap + a_off, bp + (p * K + k0) * NR, c, ldc, load_c, bb, prefetch);
      },
      k_outer);
}

}  // namespace mvar::detail
