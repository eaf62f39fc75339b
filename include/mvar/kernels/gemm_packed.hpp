// mvar/kernels/gemm_packed.hpp — the packed GEMM of the dense layer for many rows (BLIS-style):
// y[M, N] = x[M, K] · Bᵀ-panels (+ b), where B = Wᵀ is stored as column panels of NR outputs.
//
// Layouts (both zero-padded, so the micro-kernel never branches on edges while reading):
//   packed B — panel p holds outputs [p·NR, p·NR + NR) for every k: b[(p·K + k)·NR + j].
//              Built once at load time (PackedLinear) or per call by each column chunk (linear).
//   packed A — micro-panel i holds rows [i·MR, i·MR + MR) of a k-range: a[(i·kc + k)·MR + r].
//              Packed per call by each column chunk into its thread's scratch (no sharing
//              between cores): all of K when M fits one row block, else one MC × KC block at a time.
// Micro-kernel: MR × NR accumulators (MR rows of x, NR = NV vectors of outputs), one broadcast of
// a[k, r] and NV vector loads of b[k, ·] per k. AVX-512: 14 × 32 = 28 zmm accumulators + 2 B + 1
// broadcast (of 32); AVX2/SSE: 6 × 2 vectors = 12 + 2 + 1 (of 16).
// Loop order (drive_panels):
//   M ≤ MC rows (every batch-1 step of d16): panel-outer — for each output panel, all of K in KC
//     blocks, all row tiles. The chunk's panels are adjacent in the packed layout, so B is read as
//     one sequential stream from DRAM, with software prefetch 4 KiB ahead in the first row tile;
//     the KC × NR B micro-panel then stays in L1 for the remaining row tiles.
//     A K-outer variant (gemm_k_outer; off unless forced) runs K blocks outside the panels, so a
//     KC slice of A stays in L2 (same bits).
//   M > MC rows: K blocks of KC (B micro-panel in L1) × row blocks of MC (A block in L2) × panels.
// Threads: one contiguous range of output panels per thread (gemm_chunk_panels); each output
// element is computed by exactly one chunk.
//
// Reduction order of y[m, n]: one fp32 accumulator, k = 0, 1, …, K−1 in order (KC blocks are
// continued by reloading the partial sum from y), then + b[n]. It depends on nothing but the
// data and M, so any split of the columns over threads gives the same bits.
//
// Template parameters: Arch — xsimd architecture; MR, NV — register tile (GemmTile<Arch>);
// Rows ≤ MR — rows actually computed by an edge micro-kernel.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <xsimd/xsimd.hpp>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

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
  // Row micro-panels per A block: MC × KC × 4 ≈ 600 KiB, in L2 (1 MiB per core on the target);
  // 588 rows on AVX-512, so every d16 batch-1 step (≤ 512 rows) is one block.
  static constexpr std::ptrdiff_t MCP = std::ptrdiff_t(600 * 1024 / (KC * 4)) / MR;
};

/// Bytes ahead of the B stream that the first row tile prefetches in the panel-outer order.
inline constexpr std::ptrdiff_t kBPrefetchBytes = 4096;

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
/// on the first calls at a new largest shape only, never in the kernels' loops. Slot 0: a chunk's
/// packed A, slot 1: a chunk's packed B block, slot 2: A packed by all threads together for one
/// call (owned by the calling thread, read by every chunk). Grown to exactly the request
/// (Buffer::grow: no slack, never old and new resident together — slot 2 reaches 8 MiB at d16's
/// last scale, where the peak RSS of a run is reached).
inline float* thread_scratch(int slot, std::size_t n) {
  thread_local ThreadScratch<float> bufs[3];
  return bufs[slot].grow(n);
}

/// C[Rows × NR] (+)= A-micro-panel · B-micro-panel over kc steps; then + bias if non-null.
/// a: kc × MR (stride MR), b: kc × NR (64-byte aligned rows), c: row stride ldc.
/// Prefetch: also prefetch the B stream kBPrefetchBytes ahead (the first row tile of a panel).
template <class Arch, int MR, int Rows, int NV, bool Prefetch = false>
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
    if constexpr (Prefetch) {
      const char* pf = reinterpret_cast<const char*>(b + k * NR) + kBPrefetchBytes;
#pragma GCC unroll 4
      for (int l = 0; l < NR * 4 / 64; ++l) __builtin_prefetch(pf + 64 * l, 0, 3);
    }
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
                            std::ptrdiff_t ldc, bool load_c, const float* bias, bool prefetch) {
  if constexpr (Rows > 1) {
    if (rows < Rows) return gemm_micro_rows<Arch, MR, Rows - 1, NV>(rows, kc, a, b, c, ldc, load_c, bias, prefetch);
  }
  if (prefetch)
    gemm_micro<Arch, MR, Rows, NV, true>(kc, a, b, c, ldc, load_c, bias);
  else
    gemm_micro<Arch, MR, Rows, NV, false>(kc, a, b, c, ldc, load_c, bias);
}

#if defined(__AVX512F__)
/// Transposes 16 rows of 16 u32 (rows[r], lane q) and stores column q's first `n` rows to
/// dst + q·ld (masked stores: rows[n…15] are never written).
inline void transpose16_store(const __m512i rows[16], int n, std::uint32_t* dst, std::ptrdiff_t ld) {
  __m512i t[16], u[16];
  for (int i = 0; i < 8; ++i) {  // in each 128-bit lane L: (a, b) → a0 b0 a1 b1 | a2 b2 a3 b3
    t[2 * i] = _mm512_unpacklo_epi32(rows[2 * i], rows[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(rows[2 * i], rows[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // u[4i + k], 128-bit lane L: rows 4i…4i+3 of column 4L + k
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

#endif

/// dst[k·R + r] = src[r·ld + k] for k < kc, r < R, and 0 for rows r ≥ valid: R rows of a row-major
/// matrix transposed into k-major order. k is blocked by KB so the destination block (KB·R floats)
/// stays in L1 while the R source rows are read (writing column by column over the whole strip
/// would evict each line R times). AVX-512 with R ≤ 16 (the A micro-panels): blocks of 16 k go
/// through an in-register transpose, the rest element by element.
template <int R, std::ptrdiff_t KB>
inline void pack_transposed(const float* src, std::ptrdiff_t ld, int valid, std::ptrdiff_t kc, float* dst) {
#if defined(__AVX512F__)
  if constexpr (R <= 16) {
    const std::ptrdiff_t vec = kc / 16 * 16;
    for (std::ptrdiff_t k = 0; k < vec; k += 16) {
      __m512i rows[16];
      for (int r = 0; r < 16; ++r)
        rows[r] = r < valid ? _mm512_castps_si512(_mm512_loadu_ps(src + r * ld + k)) : _mm512_setzero_si512();
      transpose16_store(rows, R, reinterpret_cast<std::uint32_t*>(dst + k * R), R);
    }
    for (std::ptrdiff_t k = vec; k < kc; ++k)
      for (int r = 0; r < R; ++r) dst[k * R + r] = r < valid ? src[r * ld + k] : 0.0f;
    return;
  }
#endif
  for (std::ptrdiff_t kb = 0; kb < kc; kb += KB) {
    const std::ptrdiff_t ke = std::min(kc, kb + KB);
    if (valid == R) {
      for (std::ptrdiff_t k = kb; k < ke; ++k)
#pragma GCC unroll 32
        for (int r = 0; r < R; ++r) dst[k * R + r] = src[r * ld + k];
    } else {
      for (std::ptrdiff_t k = kb; k < ke; ++k)
        for (int r = 0; r < R; ++r) dst[k * R + r] = r < valid ? src[r * ld + k] : 0.0f;
    }
  }
}

/// Packs rows of x (row stride ldx, M rows in all) into MR-row micro-panels [i0, i1), columns
/// [k0, k0 + kc): panel i goes to dst + (i − i0)·kc·MR, zero-padded past row M.
template <class Arch>
inline void pack_a(const float* x, std::ptrdiff_t ldx, std::ptrdiff_t M, std::ptrdiff_t i0, std::ptrdiff_t i1,
                   std::ptrdiff_t k0, std::ptrdiff_t kc, float* dst) {
  constexpr int MR = GemmTile<Arch>::MR;
  for (std::ptrdiff_t i = i0; i < i1; ++i)
    pack_transposed<MR, 64>(x + i * MR * ldx + k0, ldx, int(std::min<std::ptrdiff_t>(MR, M - i * MR)), kc,
                            dst + (i - i0) * kc * MR);
}

/// Packs W rows (outputs) [p·NR, p·NR + NR) ∩ [0, N), columns [k0, k0 + kc) into a kc × NR panel
/// (zero-padded).
template <class Arch>
inline void pack_b_panel(const float* w, std::ptrdiff_t ldw, std::ptrdiff_t N, std::ptrdiff_t p,
                         std::ptrdiff_t k0, std::ptrdiff_t kc, float* dst) {
  constexpr int NR = GemmTile<Arch>::NR;
  const std::ptrdiff_t n0 = p * NR;
  pack_transposed<NR, 32>(w + n0 * ldw + k0, ldw, int(std::min<std::ptrdiff_t>(NR, N - n0)), kc, dst);
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

/// The loop nest shared by the fp32 and bf16 packed GEMMs over output panels [p0, p1) for all M
/// rows; k is counted in the kernel's units (fp32: k, bf16: k-pairs; Ku of them, KC per block).
///   pack(i0, i1, k0, kc)                    packs row micro-panels [i0, i1) × k-range [k0, k0 + kc)
///                                           to the start of the A scratch;
///   kernel(rows, a_offset, p, k0, kc, c, ldc, load_c, bias, prefetch)
///                                           one micro-tile: rows ≤ MR rows of A (scratch offset
///                                           a_offset) × output panel p over [k0, k0 + kc) into c.
/// The right-edge panel (< NR valid columns) goes through a full-width tile on the stack.
template <int MR, int NR, std::ptrdiff_t KC, std::ptrdiff_t MCP, class Pack, class Kernel>
inline void drive_panels(std::ptrdiff_t M, std::ptrdiff_t Ku, std::ptrdiff_t N, std::ptrdiff_t p0, std::ptrdiff_t p1,
                         const float* bias, float* y, std::ptrdiff_t ldy, Pack&& pack, Kernel&& kernel,
                         bool k_outer = false) {
  const std::ptrdiff_t panels_a = (M + MR - 1) / MR;
  alignas(64) float tmp[MR * NR];
  alignas(64) float bias_pad[NR];
  auto tile = [&](std::ptrdiff_t i, std::ptrdiff_t a_off, std::ptrdiff_t p, std::ptrdiff_t k0, std::ptrdiff_t kc,
                  bool prefetch) {
    const std::ptrdiff_t n0 = p * NR, cols = std::min<std::ptrdiff_t>(NR, N - n0);
    const int rows = int(std::min<std::ptrdiff_t>(MR, M - i * MR));
    const bool first = k0 == 0, last = k0 + kc >= Ku;
    const float* bb = last ? panel_bias(bias, n0, cols, NR, bias_pad) : nullptr;
    float* c = y + i * MR * ldy + n0;
    if (cols == NR) return kernel(rows, a_off, p, k0, kc, c, ldy, !first, bb, prefetch);
    if (!first)
      for (int r = 0; r < rows; ++r) std::copy(c + r * ldy, c + r * ldy + cols, tmp + r * NR);
    kernel(rows, a_off, p, k0, kc, tmp, NR, !first, bb, prefetch);
    for (int r = 0; r < rows; ++r) std::copy(tmp + r * NR, tmp + r * NR + cols, c + r * ldy);
  };
  if (panels_a <= MCP) {  // one row block: panel-outer, B streamed sequentially
    pack(0, panels_a, 0, Ku);
    if (k_outer) {  // K blocks outside the panels: a KC slice of A stays in L2 (gemm_k_outer)
      for (std::ptrdiff_t k0 = 0; k0 < Ku; k0 += KC) {
        const std::ptrdiff_t kc = std::min(KC, Ku - k0);
        for (std::ptrdiff_t p = p0; p < p1; ++p)
          for (std::ptrdiff_t i = 0; i < panels_a; ++i) tile(i, (i * Ku + k0) * MR, p, k0, kc, i == 0);
      }
      return;
    }
    for (std::ptrdiff_t p = p0; p < p1; ++p)
      for (std::ptrdiff_t k0 = 0; k0 < Ku; k0 += KC) {
        const std::ptrdiff_t kc = std::min(KC, Ku - k0);
        for (std::ptrdiff_t i = 0; i < panels_a; ++i) tile(i, (i * Ku + k0) * MR, p, k0, kc, i == 0);
      }
    return;
  }
  for (std::ptrdiff_t k0 = 0; k0 < Ku; k0 += KC) {
    const std::ptrdiff_t kc = std::min(KC, Ku - k0);
    for (std::ptrdiff_t ic = 0; ic < panels_a; ic += MCP) {
      const std::ptrdiff_t ie = std::min(panels_a, ic + MCP);
      pack(ic, ie, k0, kc);
      for (std::ptrdiff_t p = p0; p < p1; ++p)
        for (std::ptrdiff_t i = ic; i < ie; ++i) tile(i, (i - ic) * kc * MR, p, k0, kc, false);
    }
  }
}

/// Whether a one-row-block GEMM runs its K blocks outside the output panels (drive_panels'
/// k_outer). Panel-outer streams all of packed A (a_bytes) once per output panel and reads B
/// strictly sequentially (best at 2 threads on the project machine, docs/performance_gemm.md);
/// K-outer keeps one KC slice of A in L2 across the chunk's panels and still reads every B
/// micro-panel once. Same bits either way (same k order per output). It was meant for many
/// threads sharing one L3 (16-core Xeon: fp32 at 16 threads at 28 % of the FMA peak against 67 %
/// at 2), but an interleaved A/B there showed no difference beyond noise (docs/performance.md),
/// so the automatic choice is panel-outer; the variant stays for A/B runs on other machines.
/// gemm_k_outer_override(): −1 automatic, 0 / 1 forced (bench_generate's MVAR_BENCH_KOUTER, tests).
inline int& gemm_k_outer_override() {
  static int v = -1;
  return v;
}
inline bool gemm_k_outer(std::size_t a_bytes, int threads) {
  (void)a_bytes;
  (void)threads;
  return gemm_k_outer_override() == 1;
}

/// Elements of A scratch drive_panels' pack() fills for M rows and Ku k-units.
template <int MR, std::ptrdiff_t KC, std::ptrdiff_t MCP>
inline std::size_t a_scratch_elems(std::ptrdiff_t M, std::ptrdiff_t Ku) {
  const std::ptrdiff_t panels_a = (M + MR - 1) / MR;
  return std::size_t(panels_a <= MCP ? panels_a * Ku * MR : MCP * std::min(KC, Ku) * MR);
}

/// Where the B panels come from: pre-packed for all of K (PackedLinear), or raw W that each
/// column chunk packs into its thread's scratch (linear).
struct BSource {
  const float* packed = nullptr;  // panel-major, all of K
  const float* w = nullptr;       // raw [N, K] rows
  std::ptrdiff_t ldw = 0;
};

/// Output panels [p0, p1) of y = x · B (+ bias) for all M rows. Packs A (and, from raw W, this
/// chunk's B panels) into the calling thread's scratch — or reads A already packed for all of K
/// (a_packed, one row block: M ≤ MCP·MR; see shares_packed_a).
template <class Arch>
inline void gemm_panels(const float* x, std::ptrdiff_t ldx, std::ptrdiff_t M, std::ptrdiff_t K, const BSource& bs,
                        std::ptrdiff_t N, std::ptrdiff_t p0, std::ptrdiff_t p1, const float* bias, float* y,
                        std::ptrdiff_t ldy, const float* a_packed = nullptr) {
  using T = GemmTile<Arch>;
  constexpr int MR = T::MR, NV = T::NV, NR = T::NR;
  // Raw W: pack this chunk's panels over all of K first, reading each W row front to back (long
  // sequential runs the hardware prefetcher follows; KC-sized runs from 32 rows at once are not).
  const float* bpacked = bs.packed;
  std::ptrdiff_t pbase = 0;
  if (!bpacked) {
    // Cold W read as NR interleaved 128-byte runs is slow (too many streams for the hardware
    // prefetcher); one sequential pass over a panel's NR rows first brings them into L2 at
    // stream speed (docs/performance.md, "Measured design choices"). Per panel, not per
    // chunk: a whole chunk's rows (up to 1.5 MB for N = 6144) would not fit L2.
    float* scratch = thread_scratch(1, std::size_t(K * NR * (p1 - p0)));
    for (std::ptrdiff_t p = p0; p < p1; ++p) {
      touch_rows(bs.w, bs.ldw, p * NR, std::min(N, p * NR + NR), K);
      pack_b_panel<Arch>(bs.w, bs.ldw, N, p, 0, K, scratch + (p - p0) * K * NR);
    }
    bpacked = scratch;
    pbase = p0;
  }
  float* scratch = a_packed ? nullptr : thread_scratch(0, a_scratch_elems<MR, T::KC, T::MCP>(M, K));
  const float* ap = a_packed ? a_packed : scratch;
  drive_panels<MR, NR, T::KC, T::MCP>(
      M, K, N, p0, p1, bias, y, ldy,
      [&](std::ptrdiff_t i0, std::ptrdiff_t i1, std::ptrdiff_t k0, std::ptrdiff_t kc) {
        if (scratch) pack_a<Arch>(x, ldx, M, i0, i1, k0, kc, scratch);
      },
      [&](int rows, std::ptrdiff_t a_off, std::ptrdiff_t p, std::ptrdiff_t k0, std::ptrdiff_t kc, float* c,
          std::ptrdiff_t ldc, bool load_c, const float* bb, bool prefetch) {
        gemm_micro_rows<Arch, MR, MR, NV>(rows, kc, ap + a_off, bpacked + ((p - pbase) * K + k0) * NR, c, ldc, load_c,
                                          bb, prefetch);
      });
}

/// Column-panel chunk size for threading: one contiguous range of panels per thread. Any split
/// gives the same bits (each output is computed whole by one chunk); one chunk per thread keeps
/// each core on its own stretch of the B stream and packs A once per core.
inline std::ptrdiff_t gemm_chunk_panels(std::ptrdiff_t panels, int threads) {
  return std::max<std::ptrdiff_t>(1, (panels + threads - 1) / std::max(threads, 1));
}

/// Whether a call packs A once, split over the threads, instead of once per thread: with more
/// than one thread, M rows in one row block (≤ mcp micro-panels of mr rows) and enough rows that
/// the packing outweighs one more dispatch of the pool.
inline bool shares_packed_a(std::ptrdiff_t M, int mr, std::ptrdiff_t mcp, int threads) {
  return threads > 1 && M >= 4 * mr && (M + mr - 1) / mr <= mcp;
}

}  // namespace mvar::detail
