// mvar/kernels/gemm_packed.hpp — the packed GEMM of the dense layer for many rows (BLIS-style):
// y[M, N] = x[M, K] · Bᵀ-panels (+ b), where B = Wᵀ is stored as column panels of NR outputs.
//
// Layouts (both zero-padded, so the micro-kernel never branches on edges while reading):
//   packed B — panel p holds outputs [p·NR, p·NR + NR) for every k: b[(p·K + k)·NR + j].
//              Built once at load time (PackedLinear) or per call by each column chunk (linear).
//   packed A — micro-panel i holds rows [i·MR, i·MR + MR) for every k: a[(i·K + k)·MR + r].
//              Built per call, once for all column chunks.
// Micro-kernel: MR × NR accumulators (MR rows of x, NR = NV vectors of outputs), one broadcast of
// a[k, r] and NV vector loads of b[k, ·] per k. AVX-512: 14 × 32 = 28 zmm accumulators + 2 B + 1
// broadcast (of 32); AVX2/SSE: 6 × 2 vectors = 12 + 2 + 1 (of 16).
// Blocking: K in blocks of KC (one KC×NR B micro-panel stays in L1 while the MR-row micro-panels
// of the A block — MC×KC, sized for L2 — stream past it).
//
// Reduction order of y[m, n]: one fp32 accumulator, k = 0, 1, …, K−1 in order (KC blocks are
// continued by reloading the partial sum from y), then + b[n]. It depends on nothing but the
// data, so any split of the columns over threads gives the same bits.
//
// Template parameters: Arch — xsimd architecture; MR, NV — register tile (GemmTile<Arch>);
// Rows ≤ MR — rows actually computed by an edge micro-kernel.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>

#include <xsimd/xsimd.hpp>

#include "mvar/core/assert.hpp"
#include "mvar/core/buffer.hpp"

namespace mvar::detail {

template <class Arch>
struct GemmTile {
  using V = xsimd::batch<float, Arch>;
  static constexpr bool kWide = V::size >= 16;  // AVX-512: 32 vector registers
  static constexpr int MR = kWide ? 14 : 6;
  static constexpr int NV = 2;
  static constexpr int NR = NV * int(V::size);
  static constexpr std::ptrdiff_t KC = 256;  // B micro-panel KC·NR·4 = 32 KiB (AVX-512) in L1
  static constexpr std::ptrdiff_t MC = std::ptrdiff_t(512 * 1024 / (KC * 4)) / MR * MR;  // A block ≈ 512 KiB, L2
};

/// The bias of one NR-wide output panel starting at column n0 with `cols` valid columns: a pointer
/// into bias for a full panel, the zero-padded copy in pad (NR floats) for the last, narrow one.
inline const float* panel_bias(const float* bias, std::ptrdiff_t n0, std::ptrdiff_t cols, std::ptrdiff_t NR, float* pad) {
  if (!bias) return nullptr;
  if (cols == NR) return bias + n0;
  std::fill(pad, pad + NR, 0.0f);
  std::copy(bias + n0, bias + n0 + cols, pad);
  return pad;
}

/// Per-thread packing scratch, grown (never shrunk) to the largest request: memory is allocated
/// on the first calls at a new largest shape only, never in the kernels' loops. Slot 0: packed A
/// (caller thread, read by all chunks), slot 1: a chunk's packed B block.
inline float* thread_scratch(int slot, std::size_t n) {
  thread_local Buffer<float> bufs[2];
  if (bufs[slot].size() < n) bufs[slot] = Buffer<float>(n + n / 4);
  return bufs[slot].data();
}

/// C[Rows × NR] (+)= A-micro-panel · B-micro-panel over kc steps; then + bias if non-null.
/// a: kc × MR (stride MR), b: kc × NR (64-byte aligned rows), c: row stride ldc.
template <class Arch, int MR, int Rows, int NV>
inline void gemm_micro(std::ptrdiff_t kc, const float* __restrict a, const float* __restrict b,
                       float* __restrict c, std::ptrdiff_t ldc, bool load_c, const float* bias) {
  using V = xsimd::batch<float, Arch>;
  constexpr int L = int(V::size);
  constexpr int NR = NV * L;
  V acc[Rows][NV];
  if (load_c) {
#pragma GCC unroll 16
    for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = V::load_unaligned(c + r * ldc + v * L);
  } else {
#pragma GCC unroll 16
    for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = V(0.0f);
  }
#pragma GCC unroll 2
  for (std::ptrdiff_t k = 0; k < kc; ++k) {
    V bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = V::load_aligned(b + k * NR + v * L);
#pragma GCC unroll 16
    for (int r = 0; r < Rows; ++r) {
      const V av(a[k * MR + r]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = xsimd::fma(av, bv[v], acc[r][v]);
    }
  }
  if (bias) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const V bb = V::load_unaligned(bias + v * L);
#pragma GCC unroll 16
      for (int r = 0; r < Rows; ++r) acc[r][v] += bb;
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v].store_unaligned(c + r * ldc + v * L);
}

/// Dispatches rows ≤ MR to the instantiation with exactly that many rows.
template <class Arch, int MR, int Rows, int NV>
inline void gemm_micro_rows(int rows, std::ptrdiff_t kc, const float* a, const float* b, float* c,
                            std::ptrdiff_t ldc, bool load_c, const float* bias) {
  if constexpr (Rows > 1) {
    if (rows < Rows) return gemm_micro_rows<Arch, MR, Rows - 1, NV>(rows, kc, a, b, c, ldc, load_c, bias);
  }
  gemm_micro<Arch, MR, Rows, NV>(kc, a, b, c, ldc, load_c, bias);
}

/// Packs rows [0, M) of x (row stride ldx) into MR-row micro-panels [i0, i1), zero-padded.
/// k is blocked by 64 so the destination block (64·MR floats) stays in L1 while the MR source
/// rows are read (writing column by column over the whole panel would evict each line MR times).
template <class Arch>
inline void pack_a(const float* x, std::ptrdiff_t ldx, std::ptrdiff_t M, std::ptrdiff_t K,
                   std::ptrdiff_t i0, std::ptrdiff_t i1, float* ap) {
  constexpr int MR = GemmTile<Arch>::MR;
  constexpr std::ptrdiff_t kBlock = 64;
  for (std::ptrdiff_t i = i0; i < i1; ++i) {
    float* dst = ap + i * K * MR;
    const int rows = int(std::min<std::ptrdiff_t>(MR, M - i * MR));
    const float* src = x + i * MR * ldx;
    for (std::ptrdiff_t k0 = 0; k0 < K; k0 += kBlock) {
      const std::ptrdiff_t k1 = std::min(K, k0 + kBlock);
      if (rows == MR) {
        for (std::ptrdiff_t k = k0; k < k1; ++k)
#pragma GCC unroll 16
          for (int r = 0; r < MR; ++r) dst[k * MR + r] = src[r * ldx + k];
      } else {
        for (std::ptrdiff_t k = k0; k < k1; ++k)
          for (int r = 0; r < MR; ++r) dst[k * MR + r] = r < rows ? src[r * ldx + k] : 0.0f;
      }
    }
  }
}

/// Packs W rows (outputs) [p·NR, p·NR + NR) ∩ [0, N), columns [k0, k0 + kc) into a kc × NR panel
/// (zero-padded). k is blocked as in pack_a.
template <class Arch>
inline void pack_b_panel(const float* w, std::ptrdiff_t ldw, std::ptrdiff_t N, std::ptrdiff_t p,
                         std::ptrdiff_t k0, std::ptrdiff_t kc, float* dst) {
  constexpr int NR = GemmTile<Arch>::NR;
  constexpr std::ptrdiff_t kBlock = 32;
  const std::ptrdiff_t n0 = p * NR;
  const int cols = int(std::min<std::ptrdiff_t>(NR, N - n0));
  const float* src = w + n0 * ldw + k0;
  for (std::ptrdiff_t kb = 0; kb < kc; kb += kBlock) {
    const std::ptrdiff_t ke = std::min(kc, kb + kBlock);
    if (cols == NR) {
      for (std::ptrdiff_t k = kb; k < ke; ++k)
#pragma GCC unroll 32
        for (int j = 0; j < NR; ++j) dst[k * NR + j] = src[j * ldw + k];
    } else {
      for (std::ptrdiff_t k = kb; k < ke; ++k)
        for (int j = 0; j < NR; ++j) dst[k * NR + j] = j < cols ? src[j * ldw + k] : 0.0f;
    }
  }
}

/// Reads one byte per cache line of rows [n0, n1) × [0, K) of w, front to back (char reads may
/// alias the floats; the volatile sink keeps the loads).
inline void touch_rows(const float* w, std::ptrdiff_t ldw, std::ptrdiff_t n0, std::ptrdiff_t n1,
                       std::ptrdiff_t K) {
  unsigned acc = 0;
  for (std::ptrdiff_t n = n0; n < n1; ++n) {
    const auto* row = reinterpret_cast<const unsigned char*>(w + n * ldw);
    for (std::ptrdiff_t b = 0; b < K * std::ptrdiff_t(sizeof(float)); b += 64) acc += row[b];
  }
  volatile unsigned sink = acc;
  (void)sink;
}

/// Where the B panels come from: pre-packed for all of K (PackedLinear), or raw W that each
/// column chunk packs into its thread's scratch (linear).
struct BSource {
  const float* packed = nullptr;  // panel-major, all of K
  const float* w = nullptr;       // raw [N, K] rows
  std::ptrdiff_t ldw = 0;
};

/// Output panels [p0, p1) of y for all M rows, from the packed A (all micro-panels).
template <class Arch>
inline void gemm_panels(const float* ap, std::ptrdiff_t M, std::ptrdiff_t K, const BSource& bs,
                        std::ptrdiff_t N, std::ptrdiff_t p0, std::ptrdiff_t p1, const float* bias,
                        float* y, std::ptrdiff_t ldy) {
  using T = GemmTile<Arch>;
  constexpr int MR = T::MR, NV = T::NV, NR = T::NR;
  const std::ptrdiff_t panels_a = (M + MR - 1) / MR;
  alignas(64) float tmp[MR * NR];
  alignas(64) float bias_pad[NR];
  // Raw W: pack this chunk's panels over all of K first, reading each W row front to back (long
  // sequential runs the hardware prefetcher follows; KC-sized runs from 32 rows at once are not).
  const float* bpacked = bs.packed;
  std::ptrdiff_t pbase = 0;
  if (!bpacked) {
    // Cold W read as NR interleaved 128-byte runs is slow (too many streams for the hardware
    // prefetcher); one sequential pass over a panel's NR rows first brings them into L2 at
    // stream speed (measured: 530 → 370 µs per 4 MB packed, one core). Per panel, not per
    // chunk: a whole chunk's rows (up to 1.5 MB for N = 6144) would not fit L2.
    float* scratch = thread_scratch(1, std::size_t(K * NR * (p1 - p0)));
    for (std::ptrdiff_t p = p0; p < p1; ++p) {
      touch_rows(bs.w, bs.ldw, p * NR, std::min(N, p * NR + NR), K);
      pack_b_panel<Arch>(bs.w, bs.ldw, N, p, 0, K, scratch + (p - p0) * K * NR);
    }
    bpacked = scratch;
    pbase = p0;
  }
  for (std::ptrdiff_t pc = 0; pc < K; pc += T::KC) {
    const std::ptrdiff_t kc = std::min(T::KC, K - pc);
    const bool first = pc == 0, last = pc + kc >= K;
    for (std::ptrdiff_t ic = 0; ic < panels_a; ic += T::MC / MR) {
      const std::ptrdiff_t ie = std::min(panels_a, ic + T::MC / MR);
      for (std::ptrdiff_t p = p0; p < p1; ++p) {
        const float* b = bpacked + ((p - pbase) * K + pc) * NR;
        const std::ptrdiff_t n0 = p * NR, cols = std::min<std::ptrdiff_t>(NR, N - n0);
        const float* bb = last ? panel_bias(bias, n0, cols, NR, bias_pad) : nullptr;
        for (std::ptrdiff_t i = ic; i < ie; ++i) {
          const float* a = ap + (i * K + pc) * MR;
          const int rows = int(std::min<std::ptrdiff_t>(MR, M - i * MR));
          float* c = y + i * MR * ldy + n0;
          if (cols == NR) {
            if (rows == MR)
              gemm_micro<Arch, MR, MR, NV>(kc, a, b, c, ldy, !first, bb);
            else
              gemm_micro_rows<Arch, MR, MR, NV>(rows, kc, a, b, c, ldy, !first, bb);
          } else {  // right edge: through a full-width tile on the stack
            if (!first)
              for (int r = 0; r < rows; ++r) std::copy(c + r * ldy, c + r * ldy + cols, tmp + r * NR);
            gemm_micro_rows<Arch, MR, MR, NV>(rows, kc, a, b, tmp, NR, !first, bb);
            for (int r = 0; r < rows; ++r) std::copy(tmp + r * NR, tmp + r * NR + cols, c + r * ldy);
          }
        }
      }
    }
  }
}

/// Column-panel chunk size (in panels) for threading: a function of N alone, ~16 chunks.
template <class Arch>
inline std::ptrdiff_t gemm_grain_panels(std::ptrdiff_t N) {
  const std::ptrdiff_t panels = (N + GemmTile<Arch>::NR - 1) / GemmTile<Arch>::NR;
  return std::max<std::ptrdiff_t>(1, (panels + 15) / 16);
}

}  // namespace mvar::detail
