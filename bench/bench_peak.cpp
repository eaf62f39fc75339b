// bench/bench_peak.cpp — machine peaks that turn the other benchmarks' FLOP/s and bytes/s into
// "% of peak": an fp32 FMA loop (12 independent accumulators, enough to cover FMA latency × the
// number of FMA pipes) per core and on 2 threads, at the widest vector width the build enables and
// at AVX2 width; and a streaming read (sum of a buffer far larger than the last-level cache).
#include <benchmark/benchmark.h>

#include <cstddef>
#include <vector>

#include <xsimd/xsimd.hpp>

namespace {

template <class Arch>
void BM_fma_peak(benchmark::State& st) {
  using V = xsimd::batch<float, Arch>;
  constexpr int kAcc = 12;  // FMA latency 4 × 2 pipes = 8 in flight; 12 leaves slack
  constexpr int kInner = 1024;
  V acc[kAcc];
  for (int i = 0; i < kAcc; ++i) acc[i] = V(float(i) * 1e-3f);
  const V a(0.999999f), b(1e-7f);
  for (auto _ : st) {
    for (int r = 0; r < kInner; ++r)
#pragma GCC unroll 12
      for (int i = 0; i < kAcc; ++i) acc[i] = xsimd::fma(acc[i], a, b);
    for (int i = 0; i < kAcc; ++i) benchmark::DoNotOptimize(acc[i]);
  }
  const double flop = double(kInner) * kAcc * V::size * 2;
  // Google Benchmark sums a counter over the threads and multiplies an iteration-invariant one by
  // the iterations of all threads: averaging over the threads leaves all threads' FLOP / wall time
  // (without it the 2-thread row read twice the machine's peak).
  st.counters["FLOP/s"] = benchmark::Counter(
      flop, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kAvgThreads);
  st.SetLabel(Arch::name());
}

// Widest SIMD width of this build (AVX-512 on Zen 5 with -march=native).
// 1, 2, 4, 8 and 16 threads: on a many-core server the all-core clock (and with it the per-core
// FMA rate) under wide vectors is what caps compute-bound scaling.
BENCHMARK(BM_fma_peak<xsimd::default_arch>)->Name("BM_fma_peak/widest")->ThreadRange(1, 16)->UseRealTime();
#if XSIMD_WITH_AVX2 && XSIMD_WITH_FMA3_AVX2
BENCHMARK(BM_fma_peak<xsimd::fma3<xsimd::avx2>>)->Name("BM_fma_peak/avx2")->UseRealTime();
BENCHMARK(BM_fma_peak<xsimd::fma3<xsimd::avx2>>)->Name("BM_fma_peak/avx2")->Threads(2)->UseRealTime();
#endif

// Streaming read bandwidth: vectorised sum over 64 MiB per thread (≫ L3 of one CCD slice here).
void BM_stream_read(benchmark::State& st) {
  using V = xsimd::batch<float>;
  const std::size_t n = std::size_t(16) << 20;  // floats
  std::vector<float> buf(n, 1.0f);
  for (auto _ : st) {
    V s0(0.f), s1(0.f), s2(0.f), s3(0.f);
    for (std::size_t i = 0; i + 4 * V::size <= n; i += 4 * V::size) {
      s0 += V::load_unaligned(&buf[i]);
      s1 += V::load_unaligned(&buf[i + V::size]);
      s2 += V::load_unaligned(&buf[i + 2 * V::size]);
      s3 += V::load_unaligned(&buf[i + 3 * V::size]);
    }
    benchmark::DoNotOptimize(s0 + s1 + s2 + s3);
  }
  st.SetBytesProcessed(std::int64_t(st.iterations()) * std::int64_t(n * sizeof(float)));
}
BENCHMARK(BM_stream_read)->ThreadRange(1, 16)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
