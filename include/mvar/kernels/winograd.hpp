// mvar/kernels/winograd.hpp — 3×3 convolution (stride 1, zero padding 1) by Winograd's minimal
// filtering F(2×2, 3×3): each 2×2 block of outputs ("tile") costs 16 multiply-adds per input
// channel instead of 36, so the decoder's large 3×3 convolutions need 2.25× fewer FLOPs.
//
// For an output tile at (2·ty, 2·tx), d is the 4×4 input patch at padded rows 2ty…2ty+3 and padded
// columns 2tx…2tx+3 (PaddedImage coordinates: the border is the zero padding), g the 3×3 filter:
//   Y = Aᵀ [ Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B) ] A,
//   Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1],  G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1],
//   Aᵀ = [1 1 1 0; 0 1 −1 −1].
// The 16 products ξ = 4i + j are 16 independent GEMMs over the input channels: M_ξ[o, t] =
// Σ_c U_ξ[o, c] · V_ξ[c, t], with U = G g Gᵀ transformed once (in double, at construction) and
// V = Bᵀ d B per call. They run on the packed GEMM's micro-kernel (gemm_packed.hpp) with 8 output
// channels broadcast (MR = 8) and 48 tiles in three zmm (NR = 48), 24 accumulators.
//
// Work unit: a panel of three groups of 16 horizontally adjacent tiles of one tile row (groups
// numbered row by row, ⌈(W/2)/16⌉ per tile row; a panel may span tile rows) — or, for images
// narrower than 32 pixels ("packed" groups), of 16 consecutive tiles in row-major order, gathered
// and scattered lane by lane. Per panel: input
// transform of all channels (16 tiles per vector: even/odd columns split with vpermt2ps), 16 GEMMs,
// output transform (+ bias, + residual) written straight to the output rows. Groups that reach past
// the image (W not a multiple of 32, H odd, the right or bottom edge) read through a zero-filled
// 4 × 34 patch and write through a 2 × 32 staging tile, so every H, W ≥ 1 is handled. Panels are
// independent, so each output element is written by one task in a fixed order — identical bits
// for any thread count. The transforms reassociate the sums, so results differ from the direct
// convolution by a few float32 roundings (about 1e-6 relative to Σ|w·x|; tests/test_conv.cpp
// bounds it).
//
// bf16 form (Precision::BF16, AVX512-BF16 builds): U and V are rounded to bf16 (nearest even) and
// paired over input channels, the 16 GEMMs run on `vdpbf16ps` with fp32 sums (gemm_bf16.hpp's
// micro-kernel, 8 × 48 tile) — half the filter bytes and twice the multiply rate; the transforms,
// the products' sums and the output transform stay fp32. Relative error about 2⁻⁸ of Σ|U·V|.
//
// AVX-512 only (MVAR_HAS_WINOGRAD); other builds use the direct convolution of conv.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#if defined(__AVX512F__)
#include <immintrin.h>

#include <xsimd/xsimd.hpp>

#include "mvar/core/buffer.hpp"
#include "mvar/core/parallel.hpp"
#include "mvar/kernels/gemm_bf16.hpp"
#include "mvar/kernels/gemm_packed.hpp"

#define MVAR_HAS_WINOGRAD 1

namespace mvar::detail {

struct Wino {
  static constexpr int MR = 8;                // output channels per micro-tile
  static constexpr int NV = 3;                // zmm vectors of tiles per micro-tile
  static constexpr int NR = 48;               // tiles per panel
  static constexpr std::ptrdiff_t KC = 128;   // input channels per k block (V block 24 KiB, in L1)
  static constexpr std::ptrdiff_t KCP = 128;  // bf16: channel pairs per k block (V block 24 KiB)
};

/// U = G g Gᵀ (A × A, ξ = A·i + j) of eight 3×3 filters at once, in double, rounded to float once:
/// g[t·8 + m] is tap t (row-major) of filter m (the direct kernel's packed [tap][8] layout), and
/// u[ξ·ldu + m] receives U_ξ of filter m. (m innermost: the compiler vectorises over the filters.)
template <int A>
inline void winograd_filters8_g(const double (&G)[A][3], const float* g, float* u, std::ptrdiff_t ldu) {
  constexpr int R = 8;
  double t[A][3][R];  // G g
  for (int i = 0; i < A; ++i)
    for (int b = 0; b < 3; ++b)
      for (int m = 0; m < R; ++m)
        t[i][b][m] = G[i][0] * g[(0 * 3 + b) * R + m] + G[i][1] * g[(1 * 3 + b) * R + m] + G[i][2] * g[(2 * 3 + b) * R + m];
  for (int i = 0; i < A; ++i)
    for (int j = 0; j < A; ++j)
      for (int m = 0; m < R; ++m)
        u[(A * i + j) * ldu + m] = static_cast<float>(t[i][0][m] * G[j][0] + t[i][1][m] * G[j][1] + t[i][2][m] * G[j][2]);
}

/// F(2×2, 3×3)'s U (4 × 4) of eight filters (winograd_filters8_g).
inline void winograd_filters8(const float* g, float* u, std::ptrdiff_t ldu) {
  static constexpr double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  winograd_filters8_g(G, g, u, ldu);
}

/// V = Bᵀ d B for 16 tiles at once: d[r][q] holds element (r, q) of the 16 tiles' 4 × 4 input
/// patches (one lane per tile); v[ξ·ldv + 0…15] receives V_ξ, ξ = 4i + j.
inline void winograd_bt_d_b(const __m512 d[4][4], float* v, std::ptrdiff_t ldv) {
  __m512 e[4][4];  // e[r][j] = (d_r · B)_j
  for (int r = 0; r < 4; ++r) {
    e[r][0] = _mm512_sub_ps(d[r][0], d[r][2]);
    e[r][1] = _mm512_add_ps(d[r][1], d[r][2]);
    e[r][2] = _mm512_sub_ps(d[r][2], d[r][1]);
    e[r][3] = _mm512_sub_ps(d[r][1], d[r][3]);
  }
  for (int j = 0; j < 4; ++j) {
    _mm512_storeu_ps(v + (0 + j) * ldv, _mm512_sub_ps(e[0][j], e[2][j]));
    _mm512_storeu_ps(v + (4 + j) * ldv, _mm512_add_ps(e[1][j], e[2][j]));
    _mm512_storeu_ps(v + (8 + j) * ldv, _mm512_sub_ps(e[2][j], e[1][j]));
    _mm512_storeu_ps(v + (12 + j) * ldv, _mm512_sub_ps(e[1][j], e[3][j]));
  }
}

/// V_ξ for 16 consecutive tiles of one channel: base points at padded (row 2ty, column 2tx0), Wp
/// is the padded row stride; v[ξ·ldv + 0…15] receives the 16 tiles' ξ-th value. Reads padded
/// columns 2tx0 … 2tx0 + 33 of four rows.
inline void winograd_input16(const float* base, std::ptrdiff_t Wp, float* v, std::ptrdiff_t ldv) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  __m512 d[4][4];  // d[r][q]: row r, column q of the 16 tiles' 4 × 4 patches
  for (int r = 0; r < 4; ++r) {
    const float* p = base + r * Wp;
    const __m512 a0 = _mm512_loadu_ps(p), a1 = _mm512_loadu_ps(p + 16);
    const __m512 b0 = _mm512_loadu_ps(p + 2), b1 = _mm512_loadu_ps(p + 18);
    d[r][0] = _mm512_permutex2var_ps(a0, even, a1);
    d[r][1] = _mm512_permutex2var_ps(a0, odd, a1);
    d[r][2] = _mm512_permutex2var_ps(b0, even, b1);
    d[r][3] = _mm512_permutex2var_ps(b0, odd, b1);
  }
  winograd_bt_d_b(d, v, ldv);
}

/// Y = Aᵀ M A + bias for 16 tiles at once: m[ξ·ldm + 0…15] holds M_ξ of the 16 tiles; y[i][j] gets
/// output (i, j) of each tile's 2 × 2 block.
inline void winograd_at_m_a(const float* m, std::ptrdiff_t ldm, float bias, __m512 y[2][2]) {
  __m512 t[2][4];  // Aᵀ M
  for (int j = 0; j < 4; ++j) {
    const __m512 m0 = _mm512_loadu_ps(m + (0 + j) * ldm), m1 = _mm512_loadu_ps(m + (4 + j) * ldm);
    const __m512 m2 = _mm512_loadu_ps(m + (8 + j) * ldm), m3 = _mm512_loadu_ps(m + (12 + j) * ldm);
    t[0][j] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
    t[1][j] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
  }
  const __m512 b = _mm512_set1_ps(bias);
  for (int i = 0; i < 2; ++i) {
    y[i][0] = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(t[i][0], t[i][1]), t[i][2]), b);
    y[i][1] = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(t[i][1], t[i][2]), t[i][3]), b);
  }
}

/// Output transform of 16 tiles of one output channel: m[ξ·ldm + 0…15] → the 2 × 32 outputs at
/// o + i·ldo (i = 0, 1; columns 2tx0 …), + bias, + residual r + i·ldr if r is non-null (added as
/// residual + (conv + bias), the direct kernel's order).
inline void winograd_output16(const float* m, std::ptrdiff_t ldm, float bias, float* o, std::ptrdiff_t ldo,
                              const float* r, std::ptrdiff_t ldr) {
  const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  __m512 y[2][2];
  winograd_at_m_a(m, ldm, bias, y);
  for (int i = 0; i < 2; ++i) {
    __m512 a = _mm512_permutex2var_ps(y[i][0], lo, y[i][1]), c = _mm512_permutex2var_ps(y[i][0], hi, y[i][1]);
    if (r) {
      a = _mm512_add_ps(_mm512_loadu_ps(r + i * ldr), a);
      c = _mm512_add_ps(_mm512_loadu_ps(r + i * ldr + 16), c);
    }
    _mm512_storeu_ps(o + i * ldo, a);
    _mm512_storeu_ps(o + i * ldo + 16, c);
  }
}

/// Where a Winograd convolution reads and writes (all strides in floats, unit innermost stride).
struct WinogradIo {
  const float* in = nullptr;  // padded planes (PaddedImage): row stride W + 2, plane stride in_plane
  std::ptrdiff_t in_plane = 0;
  float* out = nullptr;  // [co, H, W]
  std::ptrdiff_t out_plane = 0, out_row = 0;
  const float* res = nullptr;  // [co, H, W] or null; may be out itself
  std::ptrdiff_t res_plane = 0, res_row = 0;
};

/// Tile geometry of an H × W image: m × m output tiles (m = 2 for F(2×2, 3×3), 4 for F(4×4, 3×3))
/// in groups of 16 (one vector lane each), panels of three groups. Row mode (m·16 ≤ W, or any W
/// for m = 4): a group is 16 adjacent tiles of one tile row, ⌈tiles_x/16⌉ groups per tile row.
/// Packed mode (m = 2 on narrower images, e.g. the decoder's 16-px top level): group g is tiles
/// 16g … 16g + 15 in row-major tile order, spanning tile rows.
struct WinoGeom {
  std::ptrdiff_t H, W, Wp, m, tiles_x, tiles_y, groups_x, groups, panels;
  bool packed;
  WinoGeom(std::ptrdiff_t h, std::ptrdiff_t w, std::ptrdiff_t tile = 2)
      : H(h), W(w), Wp(w + 2), m(tile), tiles_x((w + tile - 1) / tile), tiles_y((h + tile - 1) / tile),
        groups_x((tiles_x + 15) / 16), groups(0), panels(0), packed(tile == 2 && tiles_x < 16) {
    groups = packed ? (tiles_x * tiles_y + 15) / 16 : tiles_y * groups_x;
    panels = (groups + 2) / 3;
  }
  /// Whether row-mode group (ty, tx0) lies wholly inside the image (padded rows m·ty … m·ty + m + 1
  /// and columns m·tx0 … m·tx0 + 16m + 1 exist; its m × 16m outputs are all pixels).
  bool whole(std::ptrdiff_t ty, std::ptrdiff_t tx0) const {
    return !packed && m * ty + m <= H && m * tx0 + 16 * m <= W;
  }
};

/// One group of a panel: its index, and in row mode its tile row ty and first tile column tx0;
/// valid = false past the last group.
struct WinoGroup {
  std::ptrdiff_t gi = 0, ty = 0, tx0 = 0;
  bool valid = false;
};

/// Packed mode, input: the 16 tiles of group gi gathered lane by lane (zero past the image), then
/// Bᵀ d B.
inline void winograd_input_packed(const WinoGeom& g, const float* plane, std::ptrdiff_t gi, float* v,
                                  std::ptrdiff_t ldv) {
  alignas(64) float d[16][16];  // d[4r + q][lane] = padded(2ty + r, 2tx + q)
  for (int lane = 0; lane < 16; ++lane) {
    const std::ptrdiff_t t = 16 * gi + lane, ty = t / g.tiles_x, tx = t % g.tiles_x;
    for (int r = 0; r < 4; ++r)
      for (int q = 0; q < 4; ++q) {
        const std::ptrdiff_t row = 2 * ty + r, col = 2 * tx + q;
        d[4 * r + q][lane] = (ty < g.tiles_y && row <= g.H + 1 && col <= g.W + 1) ? plane[row * g.Wp + col] : 0.0f;
      }
  }
  __m512 dv[4][4];
  for (int r = 0; r < 4; ++r)
    for (int q = 0; q < 4; ++q) dv[r][q] = _mm512_load_ps(d[4 * r + q]);
  winograd_bt_d_b(dv, v, ldv);
}

/// Packed mode, output: Aᵀ M A + bias for the 16 tiles of group gi of output channel o, scattered
/// to the pixels inside the image (+ residual, added as in winograd_output16).
inline void winograd_output_packed(const WinoGeom& g, const WinogradIo& io, std::ptrdiff_t o, std::ptrdiff_t gi,
                                   const float* m, std::ptrdiff_t ldm, float bias) {
  alignas(64) float y[2][2][16];  // y[i][jj][lane]: output (2ty + i, 2tx + jj)
  __m512 yv[2][2];
  winograd_at_m_a(m, ldm, bias, yv);
  for (int i = 0; i < 2; ++i)
    for (int jj = 0; jj < 2; ++jj) _mm512_store_ps(y[i][jj], yv[i][jj]);
  for (int lane = 0; lane < 16; ++lane) {
    const std::ptrdiff_t tt = 16 * gi + lane, ty = tt / g.tiles_x, tx = tt % g.tiles_x;
    if (ty >= g.tiles_y) break;
    for (int i = 0; i < 2 && 2 * ty + i < g.H; ++i)
      for (int jj = 0; jj < 2 && 2 * tx + jj < g.W; ++jj) {
        const std::ptrdiff_t yy = 2 * ty + i, xx = 2 * tx + jj;
        float* out = io.out + o * io.out_plane + yy * io.out_row + xx;
        *out = io.res ? io.res[o * io.res_plane + yy * io.res_row + xx] + y[i][jj][lane] : y[i][jj][lane];
      }
  }
}

// ---- F(4×4, 3×3): 6 × 6 input patches, 4 × 4 output tiles, 36 products per tile and channel
// (2.25 per output instead of F(2×2)'s 4). Bᵀ, G, Aᵀ for the points 0, ±1, ±2, ∞:
//   Bᵀ = [4 0 −5 0 1 0; 0 −4 −4 1 1 0; 0 4 −4 −1 1 0; 0 −2 −1 2 1 0; 0 2 −1 −2 1 0; 0 4 0 −5 0 1],
//   G = [¼ 0 0; −⅙ −⅙ −⅙; −⅙ ⅙ −⅙; 1/24 1/12 ⅙; 1/24 −1/12 ⅙; 0 0 1],
//   Aᵀ = [1 1 1 1 1 0; 0 1 −1 2 −2 0; 0 1 1 4 4 0; 0 1 −1 8 −8 1].
// fp32 only: its transforms amplify rounding more than F(2×2)'s (entries up to 8, sums of 5
// terms), harmless in fp32 (≈ 1e-8 of Σ|w·x| measured) but several times the bf16 form's error.

/// F(4×4, 3×3)'s U (6 × 6, ξ = 6i + j) of eight filters (winograd_filters8_g).
inline void winograd4_filters8(const float* g, float* u, std::ptrdiff_t ldu) {
  static constexpr double G[6][3] = {{0.25, 0, 0},           {-1.0 / 6, -1.0 / 6, -1.0 / 6}, {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                     {1.0 / 24, 1.0 / 12, 1.0 / 6}, {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};
  winograd_filters8_g(G, g, u, ldu);
}

/// out = Bᵀ d for six vectors (one 1-D input transform, 16 tiles per vector).
inline void winograd4_bt(const __m512 d[6], __m512 out[6]) {
  const __m512 two = _mm512_set1_ps(2.0f), four = _mm512_set1_ps(4.0f), five = _mm512_set1_ps(5.0f);
  const __m512 t1 = _mm512_fnmadd_ps(four, d[2], d[4]), t2 = _mm512_fnmadd_ps(four, d[1], d[3]);  // d4 − 4d2, d3 − 4d1
  const __m512 t3 = _mm512_sub_ps(d[4], d[2]), t4 = _mm512_mul_ps(two, _mm512_sub_ps(d[3], d[1]));
  out[0] = _mm512_fmadd_ps(four, d[0], _mm512_fnmadd_ps(five, d[2], d[4]));
  out[1] = _mm512_add_ps(t1, t2);
  out[2] = _mm512_sub_ps(t1, t2);
  out[3] = _mm512_add_ps(t3, t4);
  out[4] = _mm512_sub_ps(t3, t4);
  out[5] = _mm512_fmadd_ps(four, d[1], _mm512_fnmadd_ps(five, d[3], d[5]));
}

/// out = Aᵀ m for six vectors (one 1-D output transform).
inline void winograd4_at(const __m512 m[6], __m512 out[4]) {
  const __m512 s12 = _mm512_add_ps(m[1], m[2]), d12 = _mm512_sub_ps(m[1], m[2]);
  const __m512 s34 = _mm512_add_ps(m[3], m[4]), d34 = _mm512_sub_ps(m[3], m[4]);
  out[0] = _mm512_add_ps(_mm512_add_ps(m[0], s12), s34);
  out[1] = _mm512_fmadd_ps(_mm512_set1_ps(2.0f), d34, d12);
  out[2] = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), s34, s12);
  out[3] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0f), d34, d12), m[5]);
}

/// V_ξ (ξ = 6i + j) for 16 consecutive tiles of one channel: base points at padded (row 4ty,
/// column 4tx0), Wp the row stride; reads padded columns 4tx0 … 4tx0 + 65 of six rows.
inline void winograd4_input16(const float* base, std::ptrdiff_t Wp, float* v, std::ptrdiff_t ldv) {
  alignas(64) static constexpr std::int32_t kPhase[4][16] = {
      {0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28},
      {1, 5, 9, 13, 17, 21, 25, 29, 1, 5, 9, 13, 17, 21, 25, 29},
      {2, 6, 10, 14, 18, 22, 26, 30, 2, 6, 10, 14, 18, 22, 26, 30},
      {3, 7, 11, 15, 19, 23, 27, 31, 3, 7, 11, 15, 19, 23, 27, 31}};
  __m512 e[6][6];  // e[r] = Bᵀ applied along the row to d[r][q] = padded(4ty + r, 4(tx0 + lane) + q)
  for (int r = 0; r < 6; ++r) {
    const float* p = base + r * Wp;
    const __m512 a0 = _mm512_loadu_ps(p), a1 = _mm512_loadu_ps(p + 16), a2 = _mm512_loadu_ps(p + 32),
                 a3 = _mm512_loadu_ps(p + 48);
    __m512 d[6];
    for (int q = 0; q < 4; ++q) {  // column 4t + q: stride-4 lanes of the 64 floats
      const __m512i idx = _mm512_load_si512(kPhase[q]);
      const __m512 lo = _mm512_permutex2var_ps(a0, idx, a1), hi = _mm512_permutex2var_ps(a2, idx, a3);
      d[q] = _mm512_shuffle_f32x4(lo, hi, 0x44);
    }
    // Columns 4t + 4 and 4t + 5: the next tile's 0 and 1, the last lane from columns 64 and 65.
    d[4] = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(_mm512_maskz_loadu_ps(1, p + 64)),
                                                    _mm512_castps_si512(d[0]), 1));
    d[5] = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(_mm512_maskz_loadu_ps(1, p + 65)),
                                                    _mm512_castps_si512(d[1]), 1));
    winograd4_bt(d, e[r]);
  }
  for (int j = 0; j < 6; ++j) {
    const __m512 col[6] = {e[0][j], e[1][j], e[2][j], e[3][j], e[4][j], e[5][j]};
    __m512 out[6];
    winograd4_bt(col, out);
    for (int i = 0; i < 6; ++i) _mm512_storeu_ps(v + (6 * i + j) * ldv, out[i]);
  }
}

/// Output transform of 16 tiles of one output channel: m[ξ·ldm + 0…15] → the 4 × 64 outputs at
/// o + a·ldo (a = 0…3), + bias, + residual r + a·ldr if r is non-null (added as residual +
/// (conv + bias), the direct kernel's order).
inline void winograd4_output16(const float* m, std::ptrdiff_t ldm, float bias, float* o, std::ptrdiff_t ldo,
                               const float* r, std::ptrdiff_t ldr) {
  __m512 t[4][6];  // Aᵀ M, per column j
  for (int j = 0; j < 6; ++j) {
    __m512 col[6], out[4];
    for (int i = 0; i < 6; ++i) col[i] = _mm512_loadu_ps(m + (6 * i + j) * ldm);
    winograd4_at(col, out);
    for (int a = 0; a < 4; ++a) t[a][j] = out[a];
  }
  const __m512 b = _mm512_set1_ps(bias);
  for (int a = 0; a < 4; ++a) {
    __m512 y[4];  // y[c]: output (a, c) of each tile
    winograd4_at(t[a], y);
    for (int c = 0; c < 4; ++c) y[c] = _mm512_add_ps(y[c], b);
    // Interleave: pixel 4·lane + c. Within 128-bit lanes first, then the lanes themselves.
    const __m512 lo01 = _mm512_unpacklo_ps(y[0], y[1]), hi01 = _mm512_unpackhi_ps(y[0], y[1]);
    const __m512 lo23 = _mm512_unpacklo_ps(y[2], y[3]), hi23 = _mm512_unpackhi_ps(y[2], y[3]);
    const __m512 q0 = _mm512_shuffle_ps(lo01, lo23, 0x44), q1 = _mm512_shuffle_ps(lo01, lo23, 0xEE);
    const __m512 q2 = _mm512_shuffle_ps(hi01, hi23, 0x44), q3 = _mm512_shuffle_ps(hi01, hi23, 0xEE);
    const __m512 r0 = _mm512_shuffle_f32x4(q0, q1, 0x44), r1 = _mm512_shuffle_f32x4(q2, q3, 0x44);
    const __m512 r2 = _mm512_shuffle_f32x4(q0, q1, 0xEE), r3 = _mm512_shuffle_f32x4(q2, q3, 0xEE);
    __m512 out[4] = {_mm512_shuffle_f32x4(r0, r1, 0x88), _mm512_shuffle_f32x4(r0, r1, 0xDD),
                     _mm512_shuffle_f32x4(r2, r3, 0x88), _mm512_shuffle_f32x4(r2, r3, 0xDD)};
    float* row = o + a * ldo;
    for (int k = 0; k < 4; ++k) {
      if (r) out[k] = _mm512_add_ps(_mm512_loadu_ps(r + a * ldr + 16 * k), out[k]);
      _mm512_storeu_ps(row + 16 * k, out[k]);
    }
  }
}

/// Input transform of one group of one padded plane in the F(Tile×Tile) form (g.m == Tile): packed
/// groups are gathered; row-mode groups that reach past the image go through a zero-filled
/// (Tile + 2) × (16·Tile + 2) patch (values past the padded image read as zero).
template <int Tile>
inline void winograd_input_group(const WinoGeom& g, const float* plane, const WinoGroup& grp, float* v,
                                 std::ptrdiff_t ldv) {
  auto input16 = [&](const float* base, std::ptrdiff_t wp) {
    if constexpr (Tile == 4) winograd4_input16(base, wp, v, ldv);
    else winograd_input16(base, wp, v, ldv);
  };
  if (g.packed) return winograd_input_packed(g, plane, grp.gi, v, ldv);
  constexpr std::ptrdiff_t rows = Tile + 2, pw = 16 * Tile + 2;
  const std::ptrdiff_t y0 = Tile * grp.ty, x0 = Tile * grp.tx0;
  if (g.whole(grp.ty, grp.tx0)) return input16(plane + y0 * g.Wp + x0, g.Wp);
  alignas(64) float patch[rows * pw + 16];  // + one vector: F(4×4)'s masked loads at columns 64, 65
  for (std::ptrdiff_t r = 0; r < rows; ++r)
    for (std::ptrdiff_t j = 0; j < pw; ++j)
      patch[r * pw + j] = (y0 + r <= g.H + 1 && x0 + j <= g.W + 1) ? plane[(y0 + r) * g.Wp + x0 + j] : 0.0f;
  input16(patch, pw);
}

/// Output transform of one group of output channel o in the F(Tile×Tile) form: packed groups are
/// scattered; row-mode groups that reach past the image are staged in a Tile × 16·Tile tile so
/// only pixels inside it are read (residual) and written.
template <int Tile>
inline void winograd_output_group(const WinoGeom& g, const WinogradIo& io, std::ptrdiff_t o, const WinoGroup& grp,
                                  const float* m, std::ptrdiff_t ldm, float bias) {
  auto output16 = [&](float* out, std::ptrdiff_t ldo, const float* res, std::ptrdiff_t ldr) {
    if constexpr (Tile == 4) winograd4_output16(m, ldm, bias, out, ldo, res, ldr);
    else winograd_output16(m, ldm, bias, out, ldo, res, ldr);
  };
  if (g.packed) return winograd_output_packed(g, io, o, grp.gi, m, ldm, bias);
  constexpr std::ptrdiff_t w = 16 * Tile;
  const std::ptrdiff_t y = Tile * grp.ty, x = Tile * grp.tx0;
  float* o0 = io.out + o * io.out_plane + y * io.out_row + x;
  const float* r0 = io.res ? io.res + o * io.res_plane + y * io.res_row + x : nullptr;
  if (g.whole(grp.ty, grp.tx0)) return output16(o0, io.out_row, r0, io.res_row);
  const std::ptrdiff_t rows = std::min<std::ptrdiff_t>(Tile, g.H - y), cols = std::min(w, g.W - x);
  alignas(64) float ob[Tile * w], rb[Tile * w] = {};
  if (r0)
    for (std::ptrdiff_t i = 0; i < rows; ++i) std::copy(r0 + i * io.res_row, r0 + i * io.res_row + cols, rb + i * w);
  output16(ob, w, r0 ? rb : nullptr, w);
  for (std::ptrdiff_t i = 0; i < rows; ++i) std::copy(ob + i * w, ob + i * w + cols, o0 + i * io.out_row);
}

/// The panel loop shared by the fp32 and bf16 forms. Per panel: transform(V, groups) fills the
/// thread's V scratch (v_floats floats) for the panel's three groups, multiply(V, M) computes the
/// (Tile + 2)² products M [ξ][co_pad][48], then the output transform writes the panel's pixels.
template <int Tile = 2, class Transform, class Multiply>
inline void winograd_panels(ThreadPool& pool, const WinogradIo& io, std::ptrdiff_t co, std::ptrdiff_t H,
                            std::ptrdiff_t W, const float* bias, std::size_t v_floats, Transform&& transform,
                            Multiply&& multiply) {
  constexpr int NR = Wino::NR, Xi = (Tile + 2) * (Tile + 2);
  const WinoGeom geo(H, W, Tile);
  const std::ptrdiff_t co_pad = (co + Wino::MR - 1) / Wino::MR * Wino::MR;
  parallel_for(pool, geo.panels, 1, [&](std::ptrdiff_t q0, std::ptrdiff_t q1) {
    thread_local ThreadScratch<float> vbuf, mbuf;  // grown on first use, reused by every later call
    const std::size_t mn = std::size_t(Xi * co_pad * NR);
    float* V = vbuf.grow(v_floats);
    float* M = mbuf.grow(mn);  // [16][co_pad][48]
    for (std::ptrdiff_t q = q0; q < q1; ++q) {
      WinoGroup grp[3];
      for (int g = 0; g < 3; ++g) {
        const std::ptrdiff_t gi = 3 * q + g;
        if (gi < geo.groups) grp[g] = {gi, gi / geo.groups_x, gi % geo.groups_x * 16, true};
      }
      transform(geo, grp, V);
      multiply(static_cast<const float*>(V), M);
      for (std::ptrdiff_t o = 0; o < co; ++o)
        for (int g = 0; g < 3; ++g)
          if (grp[g].valid) winograd_output_group<Tile>(geo, io, o, grp[g], M + o * NR + 16 * g, co_pad * NR, bias[o]);
    }
  });
}

/// out = conv3×3(in) + bias (+ residual), any H, W ≥ 1, in the F(Tile×Tile, 3×3) form (Tile = 2
/// or 4). u: the transformed filters, [(Tile + 2)²][⌈co/8⌉][ci][8] (zero rows past co), from
/// winograd_filters8 or winograd4_filters8.
template <int Tile = 2>
inline void winograd_conv3x3(ThreadPool& pool, const WinogradIo& io, std::ptrdiff_t ci, std::ptrdiff_t co,
                             std::ptrdiff_t H, std::ptrdiff_t W, const float* u, const float* bias) {
  static_assert(Tile == 2 || Tile == 4);
  using Arch = xsimd::default_arch;
  constexpr int MR = Wino::MR, NV = Wino::NV, NR = Wino::NR, Xi = (Tile + 2) * (Tile + 2);
  static_assert(NR == NV * int(xsimd::batch<float, Arch>::size), "Winograd panel = three AVX-512 vectors");
  const std::ptrdiff_t blocks = (co + MR - 1) / MR, co_pad = blocks * MR;
  winograd_panels<Tile>(
      pool, io, co, H, W, bias, std::size_t(Xi * ci * NR),
      [&](const WinoGeom& geo, const WinoGroup* grp, float* V) {  // V [Xi][ci][48]
        for (int g = 0; g < 3; ++g) {
          if (grp[g].valid) {
            for (std::ptrdiff_t c = 0; c < ci; ++c)
              winograd_input_group<Tile>(geo, io.in + c * io.in_plane, grp[g], V + c * NR + 16 * g, ci * NR);
          } else {
            for (int xi = 0; xi < Xi; ++xi)
              for (std::ptrdiff_t c = 0; c < ci; ++c) std::fill_n(V + (xi * ci + c) * NR + 16 * g, 16, 0.0f);
          }
        }
      },
      [&](const float* V, float* M) {
        for (int xi = 0; xi < Xi; ++xi)
          for (std::ptrdiff_t k0 = 0; k0 < ci; k0 += Wino::KC) {
            const std::ptrdiff_t kc = std::min(Wino::KC, ci - k0);
            const float* b = V + (xi * ci + k0) * NR;
            for (std::ptrdiff_t bl = 0; bl < blocks; ++bl)
              gemm_micro<Arch, MR, MR, NV, false>(kc, u + ((xi * blocks + bl) * ci + k0) * MR, b,
                                                  M + (xi * co_pad + bl * MR) * NR, NR, k0 > 0, nullptr);
          }
      });
}

#if defined(MVAR_HAS_BF16_GEMM)
#define MVAR_HAS_WINOGRAD_BF16 1

/// The bf16 filters: U rounded to bf16 and paired over input channels, [16][⌈co/8⌉][⌈ci/2⌉][8]
/// u32 (low half: channel 2q, high half: 2q + 1; zero past ci and co), from the fp32 form.
inline void winograd_filters_bf16(const float* u, std::ptrdiff_t ci, std::ptrdiff_t co, std::uint32_t* dst) {
  constexpr int MR = Wino::MR;
  const std::ptrdiff_t blocks = (co + MR - 1) / MR, cip = (ci + 1) / 2;
  for (std::ptrdiff_t xb = 0; xb < 16 * blocks; ++xb)
    for (std::ptrdiff_t q = 0; q < cip; ++q)
      for (int m = 0; m < MR; ++m) {
        const std::uint32_t lo = bf16_round(u[(xb * ci + 2 * q) * MR + m]);
        const std::uint32_t hi = 2 * q + 1 < ci ? bf16_round(u[(xb * ci + 2 * q + 1) * MR + m]) : 0u;
        dst[(xb * cip + q) * MR + m] = lo | (hi << 16);
      }
}

/// winograd_conv3x3 with bf16 products: ub from winograd_filters_bf16. V is [16][⌈ci/2⌉][3 × 32]
/// u16: per channel pair, 48 tiles × (channel 2q, 2q + 1).
inline void winograd_conv3x3_bf16(ThreadPool& pool, const WinogradIo& io, std::ptrdiff_t ci, std::ptrdiff_t co,
                                  std::ptrdiff_t H, std::ptrdiff_t W, const std::uint32_t* ub, const float* bias) {
  constexpr int MR = Wino::MR, NV = Wino::NV, NR = Wino::NR;
  const std::ptrdiff_t blocks = (co + MR - 1) / MR, co_pad = blocks * MR, cip = (ci + 1) / 2;
  // V in u16 lives in the fp32 scratch: 16 · cip · 96 u16 = 16 · cip · 48 floats.
  winograd_panels(
      pool, io, co, H, W, bias, std::size_t(16 * cip * NR),
      [&](const WinoGeom& geo, const WinoGroup* grp, float* Vf) {
        auto* V = reinterpret_cast<std::uint16_t*>(Vf);
        // Lane 2t ← tile t of channel 2q, lane 2t + 1 ← tile t of channel 2q + 1.
        alignas(64) static constexpr std::uint16_t kInterleave[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,
                                                                     21, 6, 22, 7, 23, 8,  24, 9,  25, 10, 26,
                                                                     11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
        const __m512i idx = _mm512_load_si512(kInterleave);
        for (int g = 0; g < 3; ++g)
          for (std::ptrdiff_t q = 0; q < cip; ++q) {
            alignas(64) float t[16 * 32];  // ξ-th row: 16 tiles of channel 2q, then of 2q + 1
            if (grp[g].valid) {
              winograd_input_group<2>(geo, io.in + 2 * q * io.in_plane, grp[g], t, 32);
              if (2 * q + 1 < ci)
                winograd_input_group<2>(geo, io.in + (2 * q + 1) * io.in_plane, grp[g], t + 16, 32);
              else
                for (int xi = 0; xi < 16; ++xi) std::fill_n(t + xi * 32 + 16, 16, 0.0f);
            } else {
              std::fill_n(t, 16 * 32, 0.0f);
            }
            for (int xi = 0; xi < 16; ++xi) {
              const __m512bh pair = _mm512_cvtne2ps_pbh(_mm512_load_ps(t + xi * 32 + 16), _mm512_load_ps(t + xi * 32));
              _mm512_store_si512(V + ((xi * cip + q) * NV + g) * 32, _mm512_permutexvar_epi16(idx, (__m512i)pair));
            }
          }
      },
      [&](const float* Vf, float* M) {
        const auto* V = reinterpret_cast<const std::uint16_t*>(Vf);
        for (int xi = 0; xi < 16; ++xi)
          for (std::ptrdiff_t q0 = 0; q0 < cip; q0 += Wino::KCP) {
            const std::ptrdiff_t kcp = std::min(Wino::KCP, cip - q0);
            const std::uint16_t* b = V + (xi * cip + q0) * NV * 32;
            for (std::ptrdiff_t bl = 0; bl < blocks; ++bl)
              gemm_bf16_micro<MR, MR, NV, false>(kcp, ub + ((xi * blocks + bl) * cip + q0) * MR, b,
                                                 M + (xi * co_pad + bl * MR) * NR, NR, q0 > 0, nullptr);
          }
      });
}
#endif  // MVAR_HAS_BF16_GEMM

}  // namespace mvar::detail

#endif  // __AVX512F__
