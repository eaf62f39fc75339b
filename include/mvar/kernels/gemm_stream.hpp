// mvar/kernels/gemm_stream.hpp — the weight-streaming kernel of the dense layer for few rows:
// y[M, N] = x[M, K] · w[N, K]ᵀ (+ b) with M small (the CFG-doubled tokens of an early scale).
//
// With M ≤ ~50 the layer is bound by reading W once from DRAM (4·N·K bytes), not by FLOPs: every
// BLAS packs W per call, i.e. reads it and writes it back, which doubles the traffic. Here each
// weight row is read in place, once, for all M rows: a register tile of MR rows of x × NR rows of
// W holds MR·NR vector accumulators that are vectorised along K (the contiguous axis of both x and
// W, so nothing is packed or transposed). The W tile (NR rows) stays in L1/L2 while the MR-row
// tiles of x sweep over it; x (M·K floats, ≤ 800 KiB here) stays in L2.
//
// Reduction order of one output y[m, n]: lane-wise sums over k ≡ j (mod V::size) in increasing k,
// one xsimd::hadd, then the scalar tail k ≥ K − K % V::size in increasing k, then + b[n]. The
// order depends only on K and the arch — not on the tile an output falls in, nor on the thread
// that computes it — so any column split gives the same bits.
//
// Template parameters: Arch — the xsimd architecture (default: the one the flags select); MR, NR —
// the register tile (rows of x, rows of W); TileShape<Arch> picks them from the register count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

#include <xsimd/xsimd.hpp>

#include "mvar/core/assert.hpp"

namespace mvar::detail {

/// Register tile of the streaming kernel: MR·NR accumulators + NR weight vectors + 1 x vector
/// must fit the vector register file (32 with AVX-512, 16 with AVX/SSE).
template <class Arch>
struct StreamTile {
  static constexpr bool kWide = xsimd::batch<float, Arch>::size >= 16;  // AVX-512: 32 registers
  static constexpr int MR = kWide ? 4 : 3;                              // 4·6 + 6 + 1 = 31 ≤ 32
  static constexpr int NR = kWide ? 6 : 3;                              // 3·3 + 3 + 1 = 13 ≤ 16
};

/// One MR×NR tile: y[i, j] = Σ_k x[i, k]·w[j, k] (+ bias[j]), for i < MR, j < NR.
template <class Arch, int MR, int NR>
inline void stream_tile(const float* x, std::ptrdiff_t ldx, const float* w, std::ptrdiff_t ldw,
                        std::ptrdiff_t K, const float* bias, float* y, std::ptrdiff_t ldy) {
  using V = xsimd::batch<float, Arch>;
  constexpr std::ptrdiff_t L = V::size;
  V acc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = V(0.0f);
  const std::ptrdiff_t body = K - K % L;
  for (std::ptrdiff_t k = 0; k < body; k += L) {
    V wv[NR];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) wv[j] = V::load_unaligned(w + j * ldw + k);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const V xv = V::load_unaligned(x + i * ldx + k);
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) acc[i][j] = xsimd::fma(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) {
      float s = xsimd::hadd(acc[i][j]);
      for (std::ptrdiff_t k = body; k < K; ++k) s = std::fma(x[i * ldx + k], w[j * ldw + k], s);
      if (bias) s += bias[j];
      y[i * ldy + j] = s;
    }
}

/// Picks the instantiation for an edge tile of mr ≤ MR rows and nr ≤ NR columns.
template <class Arch, int MR, int NR>
inline void stream_tile_edge(int mr, int nr, const float* x, std::ptrdiff_t ldx, const float* w,
                             std::ptrdiff_t ldw, std::ptrdiff_t K, const float* bias, float* y,
                             std::ptrdiff_t ldy) {
  if constexpr (MR > 1) {
    if (mr < MR)
      return stream_tile_edge<Arch, MR - 1, NR>(mr, nr, x, ldx, w, ldw, K, bias, y, ldy);
  }
  if constexpr (NR > 1) {
    if (nr < NR)
      return stream_tile_edge<Arch, MR, NR - 1>(mr, nr, x, ldx, w, ldw, K, bias, y, ldy);
  }
  stream_tile<Arch, MR, NR>(x, ldx, w, ldw, K, bias, y, ldy);
}

/// Columns [n0, n1) of y for all M rows. Loop order: W tile outer (read from memory once),
/// x tiles inner (from L2).
template <class Arch = xsimd::default_arch>
inline void stream_columns(const float* x, std::ptrdiff_t ldx, std::ptrdiff_t M, const float* w,
                           std::ptrdiff_t ldw, std::ptrdiff_t K, const float* bias, float* y,
                           std::ptrdiff_t ldy, std::ptrdiff_t n0, std::ptrdiff_t n1) {
  constexpr int MR = StreamTile<Arch>::MR, NR = StreamTile<Arch>::NR;
  for (std::ptrdiff_t n = n0; n < n1; n += NR) {
    const int nr = int(std::min<std::ptrdiff_t>(NR, n1 - n));
    const float* wn = w + n * ldw;
    const float* bn = bias ? bias + n : nullptr;
    for (std::ptrdiff_t m = 0; m < M; m += MR) {
      const int mr = int(std::min<std::ptrdiff_t>(MR, M - m));
      const float* xm = x + m * ldx;
      float* ym = y + m * ldy + n;
      if (mr == MR && nr == NR)
        stream_tile<Arch, MR, NR>(xm, ldx, wn, ldw, K, bn, ym, ldy);
      else
        stream_tile_edge<Arch, MR, NR>(mr, nr, xm, ldx, wn, ldw, K, bn, ym, ldy);
    }
  }
}

/// Column chunk width for the streaming kernel: a function of N alone (never of the thread
/// count), a multiple of the tile width, ~32 chunks so that 2–3 threads end within a chunk of
/// each other.
template <class Arch = xsimd::default_arch>
inline std::ptrdiff_t stream_grain(std::ptrdiff_t N) {
  constexpr std::ptrdiff_t NR = StreamTile<Arch>::NR;
  const std::ptrdiff_t g = (N + 31) / 32;
  return std::max<std::ptrdiff_t>(NR, (g + NR - 1) / NR * NR);
}

}  // namespace mvar::detail
