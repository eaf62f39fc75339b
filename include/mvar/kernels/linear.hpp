// mvar/kernels/linear.hpp — the dense layer y = x·Wᵀ + b on row-major [out, in] weights (the
// checkpoint layout, nn.Linear), read in place (no copies).
//
// Few rows (M ≤ kStreamMaxRows): the weight-streaming kernel of gemm_stream.hpp, bound by reading
// W once. More rows: the packed GEMM of gemm_packed.hpp (each column chunk packs its W panels and
// its own copy of A per call). PackedLinear packs W once at load time instead.
//
// Threading: the output columns are split into chunks (streaming: a width that depends only on N;
// packed: one contiguous range per thread), and each output element is computed by one chunk with
// a reduction order fixed by K (and M), so results are identical for any pool size.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "mvar/core/assert.hpp"
#include "mvar/core/buffer.hpp"
#include "mvar/core/parallel.hpp"
#include "mvar/core/tensor_view.hpp"
#include "mvar/kernels/gemm_bf16.hpp"
#include "mvar/kernels/gemm_packed.hpp"
#include "mvar/kernels/gemm_stream.hpp"
#include "mvar/kernels/precision.hpp"

namespace mvar {

namespace detail {
/// Rows up to which linear() streams W in place; above, packing W per call pays off. Measured on
/// the d16 shapes (one core, docs/performance_gemm.md): streaming beats pack-per-call + GEMM up to
/// M = 200 (packing cold W costs ~0.3–0.4 ms per 4 MB), loses from M ≈ 338 on. PackedLinear,
/// which packs at load time, beats both from M ≈ 8 on.
inline constexpr std::ptrdiff_t kStreamMaxRows = 256;
}  // namespace detail

/// y[M, N] = x[M, K] · w[N, K]ᵀ (+ bias[N] if non-null). y must not alias x or w. Unit stride
/// along the last axis of x, w and y; any row strides and alignments.
inline void linear(ThreadPool& pool, TensorView<const float, 2> x, TensorView<const float, 2> w, const float* bias,
                   TensorView<float, 2> y) {
  MVAR_ASSERT(x.extent(1) == w.extent(1));
  MVAR_ASSERT(y.extent(0) == x.extent(0) && y.extent(1) == w.extent(0));
  MVAR_ASSERT(x.stride(1) == 1 || x.extent(1) <= 1);
  MVAR_ASSERT(w.stride(1) == 1 || w.extent(1) <= 1);
  MVAR_ASSERT(y.stride(1) == 1 || y.extent(1) <= 1);
  const std::ptrdiff_t M = x.extent(0), K = x.extent(1), N = w.extent(0);
  if (M == 0 || N == 0) return;
  if (M <= detail::kStreamMaxRows) {
    parallel_for(pool, N, detail::stream_grain(N), [&](std::ptrdiff_t n0, std::ptrdiff_t n1) {
      detail::stream_columns(x.data(), x.stride(0), M, w.data(), w.stride(0), K, bias, y.data(),
                             y.stride(0), n0, n1);
    });
    return;
  }
  if (K == 0) {
    for (std::ptrdiff_t m = 0; m < M; ++m)
      for (std::ptrdiff_t n = 0; n < N; ++n) y(m, n) = bias ? bias[n] : 0.0f;
    return;
  }
  using Arch = xsimd::default_arch;
  using T = detail::GemmTile<Arch>;
  const std::ptrdiff_t panels_b = (N + T::NR - 1) / T::NR;
  const detail::BSource bs{nullptr, w.data(), w.stride(0)};
  parallel_for(pool, panels_b, detail::gemm_chunk_panels(panels_b, pool.threads()), [&](std::ptrdiff_t p0, std::ptrdiff_t p1) {
    detail::gemm_panels<Arch>(x.data(), x.stride(0), M, K, bs, N, p0, p1, bias, y.data(), y.stride(0));
  });
}

/// A dense layer whose weights are packed once (at load time) into the GEMM's panel layout:
/// y[M, N] = x[M, K] · w[N, K]ᵀ (+ bias). The layer owns copies of w (packed) and of bias.
/// Results are identical for any pool size; with F32 they are not bitwise equal to linear()'s
/// streaming path (a different summation order) but within the same fp32 bound.
class PackedLinear {
 public:
  PackedLinear() = default;
  /// w: [N, K] row-major with unit stride along K (any row stride, any alignment); bias: N
  /// floats or null. Both may be released after construction.
  PackedLinear(TensorView<const float, 2> w, const float* bias, Precision precision = Precision::F32)
      : K_(w.extent(1)), N_(w.extent(0)), has_bias_(bias != nullptr) {
    MVAR_ASSERT(w.stride(1) == 1 || w.extent(1) <= 1);
#if defined(MVAR_HAS_BF16_GEMM)
    if (precision == Precision::BF16) {
      precision_ = Precision::BF16;
      using B = detail::Bf16Tile;
      const std::ptrdiff_t panels = (N_ + B::NR - 1) / B::NR, Kp = (K_ + 1) / 2;
      wb_ = Buffer<std::uint16_t>(std::size_t(panels * Kp * 2 * B::NR));
      for (std::ptrdiff_t p = 0; p < panels; ++p)
        detail::pack_b_bf16_panel(w.data(), w.stride(0), N_, K_, p, wb_.data() + p * Kp * 2 * B::NR);
    }
#else
    (void)precision;  // no AVX512-BF16 in this build: fp32 (precision() says so)
#endif
    if (precision_ == Precision::F32) {
      const std::ptrdiff_t panels = (N_ + T::NR - 1) / T::NR;
      w_ = Buffer<float>(std::size_t(panels * K_ * T::NR));
      for (std::ptrdiff_t p = 0; p < panels; ++p)
        detail::pack_b_panel<Arch>(w.data(), w.stride(0), N_, p, 0, K_, w_.data() + p * K_ * T::NR);
    }
    if (bias) {
      b_ = Buffer<float>(std::size_t(N_));
      std::copy(bias, bias + N_, b_.data());
    }
  }

  /// y = x · wᵀ + bias. x: [M, K], y: [M, N], unit stride along the last axis, any row
  /// strides; y must not alias x. Packing scratch: a per-thread buffer grown on first use to
  /// min(M, 588)·K floats at most (fp32; half for bf16) — allocated on the first calls only. With
  /// several threads and 56…588 rows, A is packed once, split over the threads, into the calling
  /// thread's buffer, and every column chunk reads it.
  void operator()(ThreadPool& pool, TensorView<const float, 2> x, TensorView<float, 2> y) const {
    MVAR_ASSERT(x.extent(1) == K_ && y.extent(1) == N_ && y.extent(0) == x.extent(0));
    MVAR_ASSERT(x.stride(1) == 1 || x.extent(1) <= 1);
    MVAR_ASSERT(y.stride(1) == 1 || y.extent(1) <= 1);
    const std::ptrdiff_t M = x.extent(0);
    const float* bias = has_bias_ ? b_.data() : nullptr;
    if (M == 0 || N_ == 0) return;
    if (K_ == 0) {
      for (std::ptrdiff_t m = 0; m < M; ++m)
        for (std::ptrdiff_t n = 0; n < N_; ++n) y(m, n) = bias ? bias[n] : 0.0f;
      return;
    }
#if defined(MVAR_HAS_BF16_GEMM)
    if (precision_ == Precision::BF16) {
      using B = detail::Bf16Tile;
      const std::ptrdiff_t panels_b = (N_ + B::NR - 1) / B::NR, Kp = (K_ + 1) / 2;
      const std::uint32_t* ap = nullptr;
      if (detail::shares_packed_a(M, B::MR, B::MCP, pool.threads())) {
        auto* dst = reinterpret_cast<std::uint32_t*>(detail::thread_scratch(2, detail::bf16_a_scratch_elems(M, K_)));
        pack_shared(pool, M, B::MR, [&](std::ptrdiff_t i0, std::ptrdiff_t i1) {
          detail::pack_a_bf16(x.data(), x.stride(0), M, K_, i0, i1, 0, Kp, dst + i0 * Kp * B::MR);
        });
        ap = dst;
      }
      parallel_for(pool, panels_b, detail::gemm_chunk_panels(panels_b, pool.threads()), [&](std::ptrdiff_t p0, std::ptrdiff_t p1) {
        detail::gemm_bf16_panels(x.data(), x.stride(0), M, K_, wb_.data(), N_, p0, p1, bias, y.data(), y.stride(0), ap);
      });
      return;
    }
#endif
    const std::ptrdiff_t panels_b = (N_ + T::NR - 1) / T::NR;
    const detail::BSource bs{w_.data(), nullptr, 0};
    const float* ap = nullptr;
    if (detail::shares_packed_a(M, T::MR, T::MCP, pool.threads())) {
      float* dst = detail::thread_scratch(2, detail::a_scratch_elems<T::MR, T::KC, T::MCP>(M, K_));
      pack_shared(pool, M, T::MR, [&](std::ptrdiff_t i0, std::ptrdiff_t i1) {
        detail::pack_a<Arch>(x.data(), x.stride(0), M, i0, i1, 0, K_, dst + i0 * K_ * T::MR);
      });
      ap = dst;
    }
    parallel_for(pool, panels_b, detail::gemm_chunk_panels(panels_b, pool.threads()), [&](std::ptrdiff_t p0, std::ptrdiff_t p1) {
      detail::gemm_panels<Arch>(x.data(), x.stride(0), M, K_, bs, N_, p0, p1, bias, y.data(), y.stride(0), ap);
    });
  }

  std::ptrdiff_t in_features() const { return K_; }
  std::ptrdiff_t out_features() const { return N_; }
  Precision precision() const { return precision_; }
  /// Bytes held (packed weights incl. zero padding to a multiple of the panel width, and bias).
  std::size_t bytes() const { return w_.bytes() + wb_.bytes() + b_.bytes(); }

 private:
  using Arch = xsimd::default_arch;
  using T = detail::GemmTile<Arch>;

  // Packs A's micro-panels [0, ⌈M/mr⌉) once for all chunks, split over the threads (pack(i0, i1)
  // packs panels [i0, i1) into the calling thread's shared slot; the bits do not depend on the
  // split). Every chunk then reads the same packed A instead of packing its own copy.
  template <class Pack>
  static void pack_shared(ThreadPool& pool, std::ptrdiff_t M, int mr, Pack&& pack) {
    const std::ptrdiff_t panels_a = (M + mr - 1) / mr;
    parallel_for(pool, panels_a, detail::gemm_chunk_panels(panels_a, pool.threads()), pack);
  }

  std::ptrdiff_t K_ = 0, N_ = 0;
  bool has_bias_ = false;
  Precision precision_ = Precision::F32;
  Buffer<float> w_, b_;
  Buffer<std::uint16_t> wb_;  // bf16 panels (Precision::BF16)
};

}  // namespace mvar
