// mvar/kernels/linear.hpp — the dense layer y = x·Wᵀ + b on row-major [out, in] weights (the
// checkpoint layout, nn.Linear), read in place (no copies).
//
// Few rows (M ≤ kStreamMaxRows): the weight-streaming kernel of gemm_stream.hpp, bound by reading
// W once. More rows: the packed GEMM of gemm_packed.hpp (each column chunk packs its W panels and
// its own copy of A per call). PackedLinear packs W once at load time instead, in the kernel form
// (fp32 / bf16 / int8 × AVX2 / AVX-512 / AMX) that the run-time dispatch picks
// (cpu_dispatch.hpp, gemm_simd.hpp, gemm_bf16.hpp, gemm_int8.hpp, gemm_amx.hpp); linear() uses the
// build's compile-time arch.
//
// Threading: the output columns are split into chunks (streaming: a width that depends only on N;
// packed: one contiguous range per thread), and each output element is computed by one chunk with
// a reduction order fixed by K (and M), so results are identical for any pool size.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "mvar/core/assert.hpp"
#include "mvar/core/buffer.hpp"
#include "mvar/core/error.hpp"
#include "mvar/core/parallel.hpp"
#include "mvar/core/tensor_view.hpp"
#include "mvar/kernels/cpu_dispatch.hpp"
#include "mvar/kernels/gemm_amx.hpp"
#include "mvar/kernels/gemm_bf16.hpp"
#include "mvar/kernels/gemm_int8.hpp"
#include "mvar/kernels/gemm_packed.hpp"
#include "mvar/kernels/gemm_simd.hpp"
#include "mvar/kernels/gemm_stream.hpp"
#include "mvar/kernels/precision.hpp"

namespace mvar {

namespace detail {
/// Rows up to which linear() streams W in place; above, packing W per call pays off (the
/// crossover on the d16 shapes: docs/performance_gemm.md). PackedLinear, which packs at load
/// time, beats both from a few rows on.
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

/// The kernel form a PackedLinear was packed for (its packed layout depends on it).
enum class GemmForm { F32Portable, F32Avx2, F32Avx512, Bf16Avx512, Bf16Amx, Int8Plain, Int8Avx2, Int8Vnni, Int8Amx };

inline const char* gemm_form_name(GemmForm f) {
  switch (f) {
    case GemmForm::F32Portable: return "fp32 portable";
    case GemmForm::F32Avx2: return "fp32 avx2";
    case GemmForm::F32Avx512: return "fp32 avx512";
    case GemmForm::Bf16Avx512: return "bf16 avx512-bf16";
    case GemmForm::Bf16Amx: return "bf16 amx";
    case GemmForm::Int8Plain: return "int8 portable";
    case GemmForm::Int8Avx2: return "int8 avx2";
    case GemmForm::Int8Vnni: return "int8 avx512-vnni";
    case GemmForm::Int8Amx: return "int8 amx";
  }
  return "?";
}

/// The form a layer of `precision` gets at level `isa` (already limited to what the CPU has):
///   F32  — Avx512 / Avx2 intrinsics forms, else the portable xsimd form;
///   BF16 — AMX tiles, else AVX512-BF16 dot products, else (no bf16 dot product) the fp32 form;
///   Int8 — AMX-INT8 tiles, else AVX512-VNNI, else AVX2 / portable C++ (same bits everywhere).
inline GemmForm gemm_form_for(Precision precision, Isa isa) {
  const GemmForm f32 = isa >= Isa::Avx512 ? GemmForm::F32Avx512 : isa >= Isa::Avx2 ? GemmForm::F32Avx2 : GemmForm::F32Portable;
  switch (precision) {
    case Precision::F32: return f32;
    case Precision::BF16:
      if (isa == Isa::Amx) return GemmForm::Bf16Amx;
      return isa_has_bf16_dot(isa) ? GemmForm::Bf16Avx512 : f32;
    case Precision::Int8:
      if (isa == Isa::Amx) return GemmForm::Int8Amx;
      if (isa_has_int8_dot(isa)) return GemmForm::Int8Vnni;
      return isa >= Isa::Avx2 ? GemmForm::Int8Avx2 : GemmForm::Int8Plain;
  }
  return f32;
}

/// A dense layer whose weights are packed once (at load time) into the GEMM's panel layout:
/// y[M, N] = x[M, K] · w[N, K]ᵀ (+ bias). The layer owns copies of w (packed) and of bias.
/// The kernel form is chosen when the layer is built, from active_isa() (the CPU, the OS and the
/// MVAR_ISA / set_isa_limit ceiling; cpu_dispatch.hpp) or the level passed in (never above what
/// the CPU has). Results are identical for any pool size; the fp32 forms give the same bits as
/// each other (one FMA chain per output), not as linear()'s streaming path (a different summation
/// order) but within the same fp32 bound; the int8 forms give the same bits as each other.
class PackedLinear {
 public:
  PackedLinear() = default;
  /// w: [N, K] row-major with unit stride along K (any row stride, any alignment); bias: N
  /// floats or null. Both may be released after construction. Int8 needs K ≤ 65536.
  PackedLinear(TensorView<const float, 2> w, const float* bias, Precision precision = Precision::F32,
               std::optional<Isa> isa = std::nullopt)
      : K_(w.extent(1)), N_(w.extent(0)), has_bias_(bias != nullptr) {
    MVAR_ASSERT(w.stride(1) == 1 || w.extent(1) <= 1);
    Isa level = isa ? *isa : active_isa();
    if (int(level) > int(cpu_isa())) level = cpu_isa();
    form_ = gemm_form_for(precision, level);
    switch (form_) {
      case GemmForm::F32Portable: pack_f32<detail::F32Portable::NR>(w); break;
      case GemmForm::F32Avx2: pack_f32<detail::F32Avx2::NR>(w); break;
      case GemmForm::F32Avx512: pack_f32<detail::F32Avx512::NR>(w); break;
      case GemmForm::Bf16Avx512:
      case GemmForm::Bf16Amx: {
        precision_ = Precision::BF16;
        kp_ = form_ == GemmForm::Bf16Amx ? detail::amx_bf16_pairs(K_) : (K_ + 1) / 2;
        const std::ptrdiff_t panels = (N_ + 31) / 32;
        wb_ = Buffer<std::uint16_t>(std::size_t(panels * kp_ * 64));
        for (std::ptrdiff_t p = 0; p < panels; ++p)
          detail::pack_b_bf16_panel(w.data(), w.stride(0), N_, K_, p, wb_.data() + p * kp_ * 64, kp_);
        break;
      }
      default: {
        if (K_ > detail::kI8MaxK) throw Error(concat("int8 weights: K = ", K_, " exceeds ", detail::kI8MaxK));
        precision_ = Precision::Int8;
        kq_ = detail::int8_quads(K_);
        const std::ptrdiff_t panels = (N_ + 31) / 32;
        wq_ = Buffer<std::int8_t>(std::size_t(panels * kq_ * 4 * 32));
        sw_ = Buffer<float>(std::size_t(panels * 32));
        corr_ = Buffer<std::int32_t>(std::size_t(panels * 32));
        detail::pack_w_int8(w.data(), w.stride(0), N_, K_, wq_.data(), sw_.data(), corr_.data());
        if (bias) {
          b_ = Buffer<float>(std::size_t(panels * 32));  // zero-padded: the epilogue reads whole panels
          std::copy(bias, bias + N_, b_.data());
        }
        return;
      }
    }
    if (bias) {
      b_ = Buffer<float>(std::size_t(N_));
      std::copy(bias, bias + N_, b_.data());
    }
  }

  /// y = x · wᵀ + bias. x: [M, K], y: [M, N], unit stride along the last axis, any row
  /// strides; y must not alias x. Packing scratch: per-thread buffers grown on first use (fp32:
  /// min(M, 588)·K floats at most; bf16 half that; int8 M·K bytes + M floats) — allocated on the
  /// first calls only. With several threads A is packed (bf16 AMX, int8: always) once, split over
  /// the threads, into the calling thread's buffer, and every column chunk reads it.
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
    switch (form_) {
      case GemmForm::F32Portable: return run_f32<detail::F32Portable>(pool, x, y, bias);
      case GemmForm::F32Avx2: return run_f32<detail::F32Avx2>(pool, x, y, bias);
      case GemmForm::F32Avx512: return run_f32<detail::F32Avx512>(pool, x, y, bias);
      case GemmForm::Bf16Avx512: return run_bf16(pool, x, y, bias);
      case GemmForm::Bf16Amx: return run_bf16_amx(pool, x, y, bias);
      case GemmForm::Int8Plain: return run_int8<detail::I8Plain>(pool, x, y, bias);
      case GemmForm::Int8Avx2: return run_int8<detail::I8Avx2>(pool, x, y, bias);
      case GemmForm::Int8Vnni: return run_int8<detail::I8Vnni>(pool, x, y, bias);
      case GemmForm::Int8Amx: return run_int8<detail::I8Amx>(pool, x, y, bias);
    }
  }

  std::ptrdiff_t in_features() const { return K_; }
  std::ptrdiff_t out_features() const { return N_; }
  Precision precision() const { return precision_; }
  GemmForm form() const { return form_; }
  /// Bytes held (packed weights incl. zero padding to whole panels, scales, bias).
  std::size_t bytes() const { return w_.bytes() + wb_.bytes() + wq_.bytes() + sw_.bytes() + corr_.bytes() + b_.bytes(); }

 private:
  template <int NR>
  void pack_f32(TensorView<const float, 2> w) {
    const std::ptrdiff_t panels = (N_ + NR - 1) / NR;
    w_ = Buffer<float>(std::size_t(panels * K_ * NR));
    for (std::ptrdiff_t p = 0; p < panels; ++p)
      detail::pack_b_panel_plain<NR>(w.data(), w.stride(0), N_, K_, p, w_.data() + p * K_ * NR);
  }

  // Packs A's micro-panels [0, ⌈M/mr⌉) once for all chunks, split over the threads (pack(i0, i1)
  // packs panels [i0, i1) into the calling thread's shared slot; the bits do not depend on the
  // split). Every chunk then reads the same packed A instead of packing its own copy.
  template <class Pack>
  static void pack_shared(ThreadPool& pool, std::ptrdiff_t M, int mr, Pack&& pack) {
    const std::ptrdiff_t panels_a = (M + mr - 1) / mr;
    parallel_for(pool, panels_a, detail::gemm_chunk_panels(panels_a, pool.threads()), pack);
  }

  template <class F>
  void run_f32(ThreadPool& pool, TensorView<const float, 2> x, TensorView<float, 2> y, const float* bias) const {
    const std::ptrdiff_t M = x.extent(0), panels_b = (N_ + F::NR - 1) / F::NR;
    const bool k_outer = detail::gemm_k_outer(std::size_t(M * K_) * sizeof(float), pool.threads());
    const float* ap = nullptr;
    if (detail::shares_packed_a(M, F::MR, F::MCP, pool.threads())) {
      float* dst = detail::thread_scratch(2, detail::a_scratch_elems<F::MR, F::KC, F::MCP>(M, K_));
      pack_shared(pool, M, F::MR, [&](std::ptrdiff_t i0, std::ptrdiff_t i1) {
        F::pack_a(x.data(), x.stride(0), M, i0, i1, 0, K_, dst + i0 * K_ * F::MR);
      });
      ap = dst;
    }
    parallel_for(pool, panels_b, detail::gemm_chunk_panels(panels_b, pool.threads()), [&](std::ptrdiff_t p0, std::ptrdiff_t p1) {
      detail::gemm_f32_chunk<F>(x.data(), x.stride(0), M, K_, w_.data(), N_, p0, p1, bias, y.data(), y.stride(0), ap, k_outer);
    });
  }

  void run_bf16(ThreadPool& pool, TensorView<const float, 2> x, TensorView<float, 2> y, const float* bias) const {
    using B = detail::Bf16Tile;
    const std::ptrdiff_t M = x.extent(0), panels_b = (N_ + B::NR - 1) / B::NR;
    const bool k_outer = detail::gemm_k_outer(std::size_t(M * kp_) * 4, pool.threads());
    const std::uint32_t* ap = nullptr;
    if (detail::shares_packed_a(M, B::MR, B::MCP, pool.threads())) {
      auto* dst = reinterpret_cast<std::uint32_t*>(detail::thread_scratch(2, detail::bf16_a_scratch_elems(M, K_)));
      pack_shared(pool, M, B::MR, [&](std::ptrdiff_t i0, std::ptrdiff_t i1) {
        detail::pack_a_bf16(x.data(), x.stride(0), M, K_, i0, i1, 0, kp_, dst + i0 * kp_ * B::MR);
      });
      ap = dst;
    }
    parallel_for(pool, panels_b, detail::gemm_chunk_panels(panels_b, pool.threads()), [&](std::ptrdiff_t p0, std::ptrdiff_t p1) {
      detail::gemm_bf16_panels(x.data(), x.stride(0), M, K_, wb_.data(), N_, p0, p1, bias, y.data(), y.stride(0), ap, k_outer);
    });
  }

  // Row chunks for converting / quantising A: a fixed grain (16 rows), so the split depends on M
  // only; each row is converted whole by one chunk.
  static constexpr std::ptrdiff_t kRowGrain = 16;

  void run_bf16_amx(ThreadPool& pool, TensorView<const float, 2> x, TensorView<float, 2> y, const float* bias) const {
    const std::ptrdiff_t M = x.extent(0), Mpad = (M + 31) / 32 * 32, panels_b = (N_ + 31) / 32;
    auto* a = reinterpret_cast<std::uint32_t*>(detail::thread_scratch(2, std::size_t(Mpad * kp_)));
    parallel_for(pool, Mpad, kRowGrain, [&](std::ptrdiff_t m0, std::ptrdiff_t m1) {
      const std::ptrdiff_t e = std::min(m1, M);
      if (m0 < e) detail::bf16_rows(x.data(), x.stride(0), m0, e, K_, kp_, a);
      for (std::ptrdiff_t m = std::max(m0, M); m < m1; ++m) std::fill(a + m * kp_, a + (m + 1) * kp_, 0u);
    });
    parallel_for(pool, panels_b, detail::gemm_chunk_panels(panels_b, pool.threads()), [&](std::ptrdiff_t p0, std::ptrdiff_t p1) {
      detail::gemm_bf16_amx_chunk(a, M, kp_, wb_.data(), N_, p0, p1, bias, y.data(), y.stride(0));
    });
  }

  template <class F>
  void run_int8(ThreadPool& pool, TensorView<const float, 2> x, TensorView<float, 2> y, const float* bias) const {
    const std::ptrdiff_t M = x.extent(0), lda = 4 * kq_, Mpad = (M + F::kRowPad - 1) / F::kRowPad * F::kRowPad;
    const std::ptrdiff_t panels_b = (N_ + 31) / 32;
    // Scratch: Mpad scales, then Mpad rows of lda bytes (lda is a multiple of 64).
    float* sx = detail::thread_scratch(2, std::size_t(Mpad + Mpad * lda / 4 + 16));
    auto* a = reinterpret_cast<std::uint8_t*>(sx + (Mpad + 15) / 16 * 16);
    parallel_for(pool, Mpad, kRowGrain, [&](std::ptrdiff_t m0, std::ptrdiff_t m1) {
      const std::ptrdiff_t e = std::min(m1, M);
      if (m0 < e) F::quantize(x.data(), x.stride(0), m0, e, K_, lda, a, sx);
      for (std::ptrdiff_t m = std::max(m0, M); m < m1; ++m) {
        sx[m] = 0.0f;
        std::fill(a + m * lda, a + (m + 1) * lda, std::uint8_t(128));
      }
    });
    detail::Int8Gemm g;
    g.a = a;
    g.lda = lda;
    g.sx = sx;
    g.M = M;
    g.N = N_;
    g.Kq = kq_;
    g.w = wq_.data();
    g.sw = sw_.data();
    g.corr = corr_.data();
    g.bias = bias;
    g.y = y.data();
    g.ldy = y.stride(0);
    parallel_for(pool, panels_b, detail::gemm_chunk_panels(panels_b, pool.threads()), [&](std::ptrdiff_t p0, std::ptrdiff_t p1) {
      detail::gemm_int8_chunk<F>(g, p0, p1);
    });
  }

  std::ptrdiff_t K_ = 0, N_ = 0, kp_ = 0, kq_ = 0;
  bool has_bias_ = false;
  Precision precision_ = Precision::F32;
  GemmForm form_ = GemmForm::F32Portable;
  Buffer<float> w_, b_;
  Buffer<std::uint16_t> wb_;    // bf16 panels (Precision::BF16)
  Buffer<std::int8_t> wq_;      // int8 panels (Precision::Int8)
  Buffer<float> sw_;            // int8: per-output scales (zero-padded to whole panels)
  Buffer<std::int32_t> corr_;   // int8: 128·Σ_k qw[n, k]
};

}  // namespace mvar
