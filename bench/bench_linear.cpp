// bench/bench_linear.cpp — the dense layer y = x·Wᵀ + b on the d16 shapes (C = 1024).
//
// Rows M = 2·n (CFG-doubled tokens of one scale, n ∈ {1,4,9,16,25,36,64,100,169,256}); layers
// qkv 1024→3072, proj 1024→1024, fc1 1024→4096, fc2 4096→1024, AdaLN 1024→6144, head 1024→4096.
// Variants: `linear` (weights in place, the model's call), `packed` (PackedLinear, weights packed
// at load), `eigen_slabs` (the previous implementation: one single-threaded Eigen product per
// 256-column slab), `naive` (the fp32 triple loop, a few shapes only); and BM_pack_a, the packing
// of the activations alone (fp32 and bf16).
// Counters: FLOP/s (2·M·N·K per call), pct_peak (of 451 GFLOP/s, 2 cores fp32 FMA), W_GB/s (bytes
// of W read per call / time) and pct_dram (of 45 GB/s). Wall time (UseRealTime), pool of 2.
// Cache state: every iteration uses the next of several weight copies totalling ≥ kColdBytes,
// more than the last-level cache, so W comes from DRAM as in the model (d16's weights: 1.24 GB).
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <cstring>
#include <random>
#include <vector>

#include "mvar/kernels/linear.hpp"
#include "bench_env.hpp"
#include "reference/linear_ref.hpp"

namespace {

using Index = std::ptrdiff_t;
constexpr double kPeakFlops = 451e9;  // measured: 2 cores × AVX-512 FMA, fp32
constexpr double kDramBytes = 45e9;   // measured stream read bandwidth
constexpr std::size_t kColdBytes = std::size_t(256) << 20;

struct Layer {
  const char* name;
  Index K, N;
};
constexpr Layer kLayers[] = {{"qkv", 1024, 3072}, {"proj", 1024, 1024}, {"fc1", 1024, 4096},
                             {"fc2", 4096, 1024}, {"ada", 1024, 6144},  {"head", 1024, 4096}};
constexpr int kTokens[] = {1, 4, 9, 16, 25, 36, 64, 100, 169, 256};

enum class Variant { Linear, Packed, PackedBF16, PackedInt8, EigenSlabs, Naive };

struct Problem {
  Index M, K, N;
  std::vector<mvar::Buffer<float>> ws;  // weight copies (cycled)
  std::vector<mvar::PackedLinear> packed;
  mvar::Buffer<float> x, y, b;
  Problem(Index m, Index k, Index n, Variant v) : M(m), K(k), N(n), x(std::size_t(m * k)), y(std::size_t(m * n)), b(std::size_t(n)) {
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (auto& e : x) e = u(rng);
    for (auto& e : b) e = u(rng);
    const std::size_t wbytes = std::size_t(n * k) * sizeof(float);
    const std::size_t copies = std::max<std::size_t>(2, (kColdBytes + wbytes - 1) / wbytes);
    mvar::Buffer<float> w0(std::size_t(n * k));
    for (auto& e : w0) e = u(rng);
    for (std::size_t c = 0; c < copies; ++c) {
      ws.emplace_back(std::size_t(n * k));  // same values, distinct memory: only the cache state matters
      std::memcpy(ws.back().data(), w0.data(), wbytes);
      if (v == Variant::Packed || v == Variant::PackedBF16 || v == Variant::PackedInt8) {
        packed.emplace_back(w(c), b.data(), v == Variant::Packed       ? mvar::Precision::F32
                                            : v == Variant::PackedBF16 ? mvar::Precision::BF16
                                                                       : mvar::Precision::Int8);
        ws.back() = mvar::Buffer<float>();  // only the packed copy is kept
      }
    }
  }
  std::size_t copies() const { return packed.empty() ? ws.size() : packed.size(); }
  mvar::TensorView<const float, 2> w(std::size_t c) const { return {ws[c].data(), {N, K}}; }
  mvar::TensorView<const float, 2> xv() const { return {x.data(), {M, K}}; }
  mvar::TensorView<float, 2> yv() { return {y.data(), {M, N}}; }
};

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using CMap = Eigen::Map<const RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;
using MMap = Eigen::Map<RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;

void eigen_slabs(mvar::ThreadPool& pool, mvar::TensorView<const float, 2> x, mvar::TensorView<const float, 2> w,
                 const float* bias, mvar::TensorView<float, 2> y) {
  mvar::parallel_for(pool, w.extent(0), 256, [&](Index n0, Index n1) {
    MMap ys(y.data() + n0, y.extent(0), n1 - n0, Eigen::OuterStride<>(y.stride(0)));
    CMap xs(x.data(), x.extent(0), x.extent(1), Eigen::OuterStride<>(x.stride(0)));
    CMap wsl(w.data() + n0 * w.stride(0), n1 - n0, w.extent(1), Eigen::OuterStride<>(w.stride(0)));
    ys.noalias() = xs * wsl.transpose();
    for (Index r = 0; r < ys.rows(); ++r)
      for (Index c = n0; c < n1; ++c) y(r, c) += bias[c];
  });
}

void run(benchmark::State& st, Variant v, int threads = mvar::bench::threads()) {
  const Layer& L = kLayers[st.range(0)];
  const Index M = 2 * Index(st.range(1));
  Problem p(M, L.K, L.N, v);
  mvar::ThreadPool pool(threads);
  std::size_t c = 0;
  for (auto _ : st) {
    switch (v) {
      case Variant::Linear: mvar::linear(pool, p.xv(), p.w(c), p.b.data(), p.yv()); break;
      case Variant::Packed:
      case Variant::PackedBF16:
      case Variant::PackedInt8: p.packed[c](pool, p.xv(), p.yv()); break;
      case Variant::EigenSlabs: eigen_slabs(pool, p.xv(), p.w(c), p.b.data(), p.yv()); break;
      case Variant::Naive: mvar::ref::linear_naive_f32(p.xv(), p.w(c), p.b.data(), p.yv()); break;
    }
    benchmark::DoNotOptimize(p.y.data());
    benchmark::ClobberMemory();
    c = (c + 1) % p.copies();
  }
  const double flop = 2.0 * double(M) * double(L.N) * double(L.K);
  const mvar::Precision prec = p.packed.empty() ? mvar::Precision::F32 : p.packed[0].precision();
  const double wbytes = double(L.N) * double(L.K) * (prec == mvar::Precision::BF16 ? 2.0 : prec == mvar::Precision::Int8 ? 1.0 : 4.0);
  using C = benchmark::Counter;
  st.counters["FLOP/s"] = C(flop, C::kIsIterationInvariantRate);
  st.counters["pct_peak"] = C(100.0 * flop / (kPeakFlops * threads / 2), C::kIsIterationInvariantRate);
  st.counters["W_GB/s"] = C(wbytes / 1e9, C::kIsIterationInvariantRate);
  st.counters["pct_dram"] = C(100.0 * wbytes / kDramBytes, C::kIsIterationInvariantRate);
  st.counters["M"] = double(M);
  st.counters["threads"] = threads;
  st.SetLabel(L.name);
}

void all_shapes(benchmark::internal::Benchmark* b) {
  for (int l = 0; l < int(std::size(kLayers)); ++l)
    for (int n : kTokens) b->Args({l, n});
}

void BM_linear(benchmark::State& st) { run(st, Variant::Linear); }
void BM_packed(benchmark::State& st) { run(st, Variant::Packed); }
void BM_packed_bf16(benchmark::State& st) { run(st, Variant::PackedBF16); }
void BM_packed_int8(benchmark::State& st) { run(st, Variant::PackedInt8); }
void BM_eigen_slabs(benchmark::State& st) { run(st, Variant::EigenSlabs); }
void BM_naive(benchmark::State& st) { run(st, Variant::Naive); }
// One thread, CPU time: per-core efficiency (pct_peak of 225.5 GFLOP/s), robust to a loaded host.
void BM_linear_1t(benchmark::State& st) { run(st, Variant::Linear, 1); }
void BM_packed_1t(benchmark::State& st) { run(st, Variant::Packed, 1); }
void BM_packed_bf16_1t(benchmark::State& st) { run(st, Variant::PackedBF16, 1); }
void BM_packed_int8_1t(benchmark::State& st) { run(st, Variant::PackedInt8, 1); }
void BM_eigen_1t(benchmark::State& st) { run(st, Variant::EigenSlabs, 1); }

// A ceiling to compare with: 2 cores of independent register-resident FMAs (what 451 GFLOP/s is).
void BM_peak_fma(benchmark::State& st) {
  mvar::ThreadPool pool(2);
  using V = xsimd::batch<float>;
  constexpr int kIters = 1 << 16;
  for (auto _ : st) {
    pool.run(2, [&](Index t) {
      V acc[12];
      for (int i = 0; i < 12; ++i) acc[i] = V(float(t + i));
      const V a(1.0000001f), b(1e-7f);
      for (int k = 0; k < kIters; ++k)
#pragma GCC unroll 12
        for (int i = 0; i < 12; ++i) acc[i] = xsimd::fma(acc[i], a, b);
      float s = 0;
      for (int i = 0; i < 12; ++i) s += xsimd::hadd(acc[i]);
      benchmark::DoNotOptimize(s);
    });
  }
  const double flop = 2.0 * 2 * kIters * 12 * V::size;
  st.counters["FLOP/s"] = benchmark::Counter(flop, benchmark::Counter::kIsIterationInvariantRate);
}

// Packing A (the activations) into the micro-kernels' row panels, the whole of K at once as the
// shared packed A of one PackedLinear call (≥ 56 rows on 2 threads): one thread, CPU time. fp32:
// pack_a (14-row panels, k-major); bf16: pack_a_bf16 (rounded to bf16, paired over k). Counter:
// ns per packed element (fp32) or per (row, k-pair) (bf16), over the M × K input.
template <bool Bf16>
void BM_pack_a(benchmark::State& st) {
  const Index M = st.range(0), K = st.range(1);
  mvar::Buffer<float> x(std::size_t(M * K));
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (auto& e : x) e = u(rng);
#if defined(MVAR_HAS_BF16_GEMM)
  using B = mvar::detail::Bf16Tile;
  const Index Kp = (K + 1) / 2, panels_bf16 = (M + B::MR - 1) / B::MR;
  mvar::Buffer<std::uint32_t> dst_bf16(std::size_t(panels_bf16 * Kp * B::MR));
#else
  if (Bf16) {
    st.SkipWithError("no AVX512-BF16 in this build");
    return;
  }
#endif
  using T = mvar::detail::GemmTile<xsimd::default_arch>;
  const Index panels = (M + T::MR - 1) / T::MR;
  mvar::Buffer<float> dst(std::size_t(panels * K * T::MR));
  for (auto _ : st) {
    if constexpr (Bf16) {
#if defined(MVAR_HAS_BF16_GEMM)
      mvar::detail::pack_a_bf16(x.data(), K, M, K, 0, panels_bf16, 0, Kp, dst_bf16.data());
      benchmark::DoNotOptimize(dst_bf16.data());
#endif
    } else {
      mvar::detail::pack_a<xsimd::default_arch>(x.data(), K, M, 0, panels, 0, K, dst.data());
      benchmark::DoNotOptimize(dst.data());
    }
    benchmark::ClobberMemory();
  }
  const double units = Bf16 ? double(M) * double((K + 1) / 2) : double(M) * double(K);
  st.counters[Bf16 ? "s_per_pair" : "s_per_elem"] =
      benchmark::Counter(units, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  st.SetBytesProcessed(std::int64_t(st.iterations()) * M * K * Index(sizeof(float)));
}

}  // namespace

BENCHMARK_TEMPLATE(BM_pack_a, false)->Args({50, 1024})->Args({200, 1024})->Args({512, 1024})->Args({512, 4096});
BENCHMARK_TEMPLATE(BM_pack_a, true)->Args({50, 1024})->Args({200, 1024})->Args({512, 1024})->Args({512, 4096});
BENCHMARK(BM_peak_fma)->UseRealTime();
BENCHMARK(BM_linear)->Apply(all_shapes)->UseRealTime();
BENCHMARK(BM_packed)->Apply(all_shapes)->UseRealTime();
BENCHMARK(BM_packed_bf16)->Apply(all_shapes)->UseRealTime();
BENCHMARK(BM_packed_int8)->Apply(all_shapes)->UseRealTime();
BENCHMARK(BM_eigen_slabs)->Apply(all_shapes)->UseRealTime();
BENCHMARK(BM_linear_1t)->Apply(all_shapes);
BENCHMARK(BM_packed_1t)->Apply(all_shapes);
BENCHMARK(BM_packed_bf16_1t)->Apply(all_shapes);
BENCHMARK(BM_packed_int8_1t)->Apply(all_shapes);
BENCHMARK(BM_eigen_1t)->Apply(all_shapes);
BENCHMARK(BM_naive)->Args({1, 1})->Args({1, 16})->Args({1, 64});  // one thread, CPU time

BENCHMARK_MAIN();
