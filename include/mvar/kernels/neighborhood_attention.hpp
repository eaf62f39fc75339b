// mvar/kernels/neighborhood_attention.hpp — 2-D neighbourhood attention with NATTEN semantics
// (non-causal, stride 1): each query on an H×W grid attends to the kernel×kernel keys around it,
// the window shifted inward at borders so every query sees exactly kernel² keys (SPEC §3.3).
// With dilation d the axis splits into d interleaved groups (coordinate mod d); a query sees only
// keys of its own group, windowed on the group's own length.
//
// Layout: q/k/v/out [B, H, W, heads, head_dim] strided views (token-major, heads interleaved —
// a token t = row·W + col of the model's [B, N, 3C] qkv buffer); head_dim must be unit-stride.
//
// Computation: per query, its kernel² keys are streamed row by row of the window into the same
// register-blocked online-softmax loop as full attention (detail::QueryAccumulator in
// attention.hpp: vectorised over head_dim, fp32, no per-key horizontal sum), two neighbouring
// queries at a time with their phases interleaved. Queries are processed in tiles of
// kTileRows × kTileCols grid cells: a tile's queries share all but a border of their windows, so
// the chunk copies the tile's (kTileRows + k − 1)·(kTileCols + k − 1) keys and values once into
// a dense stack buffer (the model's qkv rows are 12 KiB apart, which would alias in L1) and
// reads them from there through a per-tile offset table. Threading: one chunk per (batch, tile,
// head); the tiling depends only on the problem, and every output row is written by one chunk
// with the same arithmetic whatever the tiling → identical bits for any thread count.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include <xsimd/xsimd.hpp>

#include "mvar/core/assert.hpp"
#include "mvar/core/error.hpp"
#include "mvar/core/parallel.hpp"
#include "mvar/core/tensor_view.hpp"
#include "mvar/kernels/attention.hpp"

namespace mvar {

/// First key coordinate of the window of query coordinate i on an axis of length P
/// (kernel k odd, dilation d): the window is [start, start + k·d) in steps of d.
/// Per group g = i mod d of length P_g, centre = clamp(i div d, k/2, P_g − 1 − k/2) (SPEC §3.3).
constexpr std::ptrdiff_t na_window_start(std::ptrdiff_t i, std::ptrdiff_t P, int k, int d = 1) {
  const std::ptrdiff_t g = i % d, ig = i / d;
  const std::ptrdiff_t Pg = P / d + (g < P % d ? 1 : 0);
  const std::ptrdiff_t r = k / 2;
  const std::ptrdiff_t c = std::clamp<std::ptrdiff_t>(ig, r, Pg - 1 - r);
  return (c - r) * d + g;
}

/// Throws mvar::Error unless (q, k, v, out, kernel, dilation) is a valid NA problem.
inline void check_na_args(const TensorView<const float, 5>& q, const TensorView<const float, 5>& k,
                          const TensorView<const float, 5>& v, const TensorView<float, 5>& out, int kernel,
                          int dilation) {
  if (kernel < 1 || kernel % 2 == 0)
    throw Error(concat("neighborhood_attention: kernel size must be odd and ≥ 1, got ", kernel));
  if (dilation < 1) throw Error(concat("neighborhood_attention: dilation must be ≥ 1, got ", dilation));
  if (k.extent(4) != q.extent(4) || v.extent(4) != q.extent(4) || out.extent(4) != q.extent(4))
    throw Error(concat("neighborhood_attention: head_dim mismatch: q has ", q.extent(4), ", k ", k.extent(4), ", v ",
                       v.extent(4), ", out ", out.extent(4)));
  for (int r = 0; r < 4; ++r)
    if (k.extent(r) != q.extent(r) || v.extent(r) != q.extent(r) || out.extent(r) != q.extent(r))
      throw Error(concat("neighborhood_attention: q, k, v, out shapes disagree on axis ", r, " (q has ", q.extent(r),
                         ", k ", k.extent(r), ", v ", v.extent(r), ", out ", out.extent(r),
                         "); expected [B, H, W, heads, head_dim] for all four"));
  if (q.extent(1) < std::ptrdiff_t(kernel) * dilation || q.extent(2) < std::ptrdiff_t(kernel) * dilation)
    throw Error(concat("neighborhood_attention: grid ", q.extent(1), "×", q.extent(2),
                       " is smaller than kernel·dilation = ", kernel * dilation));
  if (q.stride(4) != 1 || k.stride(4) != 1 || v.stride(4) != 1 || out.stride(4) != 1)
    throw Error("neighborhood_attention: head_dim must be the unit-stride axis of q, k, v and out");
}

namespace detail {

/// The keys of one query in a packed tile region: offsets from the window's first key, the same
/// table for every query of the tile (and for K and V, which are packed alike). Branch-free.
struct TableKeys {
  const float* k;
  const float* v;
  const std::int32_t* off;
  void next(const float*& kp, const float*& vp) {
    kp = k + *off;
    vp = v + *off;
    ++off;
  }
};

/// Entries of the per-tile offset table (stack); packing is used only when kernel² fits.
inline constexpr std::ptrdiff_t kMaxWindowKeys = 1536;

inline void prefetch_row(const float* p, std::ptrdiff_t n) {
  for (std::ptrdiff_t i = 0; i < n; i += 16) __builtin_prefetch(p + i);
}

/// The kernel² keys of one query, window row by window row (row-major within the window).
struct WindowKeys {
  const float* k;  // key (ys, xs)
  const float* v;
  std::ptrdiff_t k_row, k_col, v_row, v_col;  // strides of one window step (dilation folded in)
  int kernel, c = 0;
  void next(const float*& kp, const float*& vp) {
    kp = k + c * k_col;
    vp = v + c * v_col;
    if (++c == kernel) {
      c = 0;
      k += k_row;
      v += v_row;
    }
  }
};

/// Query tile of one parallel chunk (shrunk until its key region fits the packing buffer). 4×8
/// with k = 7 touches ≤ 10×14 keys (70 KiB of K and V at head_dim 64, L2-resident; each key is
/// packed ≈ 4 times per pass, < 2 % of the FLOPs) and gives 2·16·4·2 = 256 chunks at the model's
/// 16×16 grid with batch 2 and 16 heads. Other tiles: docs/performance.md, "Measured design choices".
inline constexpr std::ptrdiff_t kTileRows = 4, kTileCols = 8;

}  // namespace detail

/// out = NA(q, k, v) with softmax scale `scale` (1.0 for MVAR's L2-normalised q̂, k̂; NATTEN's
/// default is head_dim^-½). Throws mvar::Error on bad arguments (see check_na_args).
template <class Arch = xsimd::default_arch>
void neighborhood_attention_2d(ThreadPool& pool, TensorView<const float, 5> q, TensorView<const float, 5> k,
                               TensorView<const float, 5> v, TensorView<float, 5> out, int kernel, int dilation,
                               float scale) {
  check_na_args(q, k, v, out, kernel, dilation);
  const auto B = q.extent(0), Hg = q.extent(1), Wg = q.extent(2), heads = q.extent(3), D = q.extent(4);
  const std::ptrdiff_t nk = std::ptrdiff_t(kernel) * kernel, span = std::ptrdiff_t(kernel - 1) * dilation + 1;
  // Largest tile whose key region (K and V) fits the stack packing buffer; tiles too large for
  // it (very large kernel·head_dim) run on the strided views directly. The tiling changes only
  // which chunk computes a query and where its keys are read from, never the arithmetic.
  std::ptrdiff_t tr = detail::kTileRows, tc = detail::kTileCols;
  auto fits = [&](std::ptrdiff_t r, std::ptrdiff_t c) {
    return (std::min(Hg, r + span - 1) * std::min(Wg, c + span - 1)) * D * 2 <= detail::kPackFloats;
  };
  while ((tr > 1 || tc > 1) && !fits(tr, tc)) {
    if (tc > tr) tc /= 2; else tr /= 2;
  }
  const bool packed = fits(tr, tc) && dilation == 1 && nk <= detail::kMaxWindowKeys;
  const auto ty = (Hg + tr - 1) / tr, tx = (Wg + tc - 1) / tc;
  detail::dispatch_head_dim<Arch>(D, [&](auto hd) {
    constexpr int HeadDim = decltype(hd)::value;
    parallel_for(pool, B * heads * ty * tx, 1, [&](std::ptrdiff_t c0, std::ptrdiff_t c1) {
      alignas(64) float pack[detail::kPackFloats];
      std::int32_t window[detail::kMaxWindowKeys];
      for (std::ptrdiff_t c = c0; c < c1; ++c) {
        // Heads vary fastest: consecutive chunks read neighbouring head slices of the same qkv
        // rows (same pages, adjacent lines) instead of striding over the whole buffer per head.
        const auto h = c % heads, tile = (c / heads) % (ty * tx), b = c / (heads * ty * tx);
        const auto y0 = (tile / tx) * tr, x0 = (tile % tx) * tc;
        const auto y1 = std::min(Hg, y0 + tr), x1 = std::min(Wg, x0 + tc);
        if (packed) {
          // Key region of the tile (window starts are monotone in the coordinate for d = 1).
          const auto ry0 = na_window_start(y0, Hg, kernel, 1), ry1 = na_window_start(y1 - 1, Hg, kernel, 1) + kernel;
          const auto rx0 = na_window_start(x0, Wg, kernel, 1), rx1 = na_window_start(x1 - 1, Wg, kernel, 1) + kernel;
          const auto rw = rx1 - rx0, region = (ry1 - ry0) * rw * D;
          for (std::ptrdiff_t r = ry0; r < ry1; ++r) {
            detail::pack_rows<Arch>(&k(b, r, rx0, h, 0), k.stride(2), rw, D, pack + (r - ry0) * rw * D);
            detail::pack_rows<Arch>(&v(b, r, rx0, h, 0), v.stride(2), rw, D, pack + region + (r - ry0) * rw * D);
          }
          for (int a = 0; a < kernel; ++a)
            for (int cc = 0; cc < kernel; ++cc) window[a * kernel + cc] = std::int32_t((a * rw + cc) * D);
          for (std::ptrdiff_t y = y0; y < y1; ++y) {
            const auto ys = na_window_start(y, Hg, kernel, 1);
            auto keys_of = [&](std::ptrdiff_t x) {
              const auto off = ((ys - ry0) * rw + (na_window_start(x, Wg, kernel, 1) - rx0)) * D;
              return detail::TableKeys{pack + off, pack + region + off, window};
            };
            std::ptrdiff_t x = x0;
            for (; x + 1 < x1; x += 2) {  // pairs of neighbouring queries, interleaved for ILP
              if (x + 3 < x1) {
                detail::prefetch_row(&q(b, y, x + 2, h, 0), D);  // hide the next pair's q misses
                detail::prefetch_row(&q(b, y, x + 3, h, 0), D);
              }
              detail::attend_query_pair<HeadDim, Arch>(&q(b, y, x, h, 0), &q(b, y, x + 1, h, 0), scale, D, nk,
                                                       keys_of(x), keys_of(x + 1), &out(b, y, x, h, 0),
                                                       &out(b, y, x + 1, h, 0));
            }
            if (x < x1) detail::attend_query<HeadDim, Arch>(&q(b, y, x, h, 0), scale, D, nk, keys_of(x), &out(b, y, x, h, 0));
          }
        } else {
          for (std::ptrdiff_t y = y0; y < y1; ++y) {
            const auto ys = na_window_start(y, Hg, kernel, dilation);
            for (std::ptrdiff_t x = x0; x < x1; ++x) {
              const auto xs = na_window_start(x, Wg, kernel, dilation);
              detail::WindowKeys keys{&k(b, ys, xs, h, 0),    &v(b, ys, xs, h, 0),    k.stride(1) * dilation,
                                      k.stride(2) * dilation, v.stride(1) * dilation, v.stride(2) * dilation,
                                      kernel};
              detail::attend_query<HeadDim, Arch>(&q(b, y, x, h, 0), scale, D, nk, keys, &out(b, y, x, h, 0));
            }
          }
        }
      }
    });
  });
}

}  // namespace mvar
