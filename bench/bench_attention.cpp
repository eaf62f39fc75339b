// bench/bench_attention.cpp — neighbourhood attention and full/prefix attention at the model's
// shapes (batch 2 for CFG, 16 heads, head_dim 64), against the naive gather loop and dense
// masked attention, a grid-size sweep at k = 7 (per-token time must stay flat: O(N)), and full
// attention at MVAR's in-scale sizes and VAR's prefix sizes.
//
// Counters: FLOP/s (QK and AV, multiply + add each; the FLOP formula lives on ref::Problem),
// "peak" = FLOP/s ÷ (threads × one core's fp32 FMA peak, probed at start-up on thread CPU time so
// that a loaded machine does not inflate it). Threaded cases use wall time (UseRealTime); the
// second range argument is the thread count.
#include <benchmark/benchmark.h>

#include <time.h>

#include <cstddef>
#include <memory>

#include <xsimd/xsimd.hpp>

#include "mvar/kernels/attention.hpp"
#include "mvar/kernels/neighborhood_attention.hpp"
#include "reference/attention_naive.hpp"
#include "reference/problems.hpp"

namespace {

using mvar::ref::Problem;

double thread_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

/// One core's fp32 FMA peak (FLOP/s) at this build's widest SIMD width (see bench_peak.cpp).
double core_peak() {
  static const double peak = [] {
    using V = xsimd::batch<float>;
    constexpr int kAcc = 12, kInner = 1 << 16;
    V acc[kAcc];
    for (int i = 0; i < kAcc; ++i) acc[i] = V(float(i));
    const V a(0.999999f), b(1e-7f);
    double best = 0;
    for (int rep = 0; rep < 5; ++rep) {
      const double t0 = thread_seconds();
      for (int r = 0; r < kInner; ++r)
#pragma GCC unroll 12
        for (int i = 0; i < kAcc; ++i) acc[i] = xsimd::fma(acc[i], a, b);
      const double t = thread_seconds() - t0;
      for (int i = 0; i < kAcc; ++i) benchmark::DoNotOptimize(acc[i]);
      best = std::max(best, double(kInner) * kAcc * V::size * 2 / t);
    }
    return best;
  }();
  return peak;
}

void report(benchmark::State& st, double flop, int threads) {
  st.counters["FLOP/s"] = benchmark::Counter(flop, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["peak"] =
      benchmark::Counter(flop / (core_peak() * threads), benchmark::Counter::kIsIterationInvariantRate);
}

enum class NaImpl { fast, naive_gather, dense_masked };

template <NaImpl Impl>
void BM_na(benchmark::State& st) {
  const auto side_h = st.range(0), side_w = st.range(1);
  const int k = int(st.range(2)), threads = int(st.range(3));
  const auto batch = st.range(4), heads = st.range(5);
  Problem p({.batch = batch, .heads = heads, .h = side_h, .w = side_w, .head_dim = 64}, 1, 10.0f);
  mvar::ThreadPool pool(threads);
  for (auto _ : st) {
    if constexpr (Impl == NaImpl::fast)
      mvar::neighborhood_attention_2d(pool, p.grid(0), p.grid(1), p.grid(2), p.out5(), k, 1, 1.0f);
    else if constexpr (Impl == NaImpl::naive_gather)
      mvar::ref::na_naive_gather(pool, p.grid(0), p.grid(1), p.grid(2), p.out5(), k, 1, 1.0f);
    else
      mvar::ref::na_dense_masked(pool, p.grid(0), p.grid(1), p.grid(2), p.out5(), k, 1, 1.0f);
    benchmark::ClobberMemory();
  }
  report(st, p.na_flop(k), threads);  // useful FLOPs (k² keys per query) for every variant
  st.counters["ns/token"] = benchmark::Counter(double(batch * heads * side_h * side_w) * 1e-9,
                                               benchmark::Counter::kIsIterationInvariantRate |
                                                   benchmark::Counter::kInvert);
  st.SetComplexityN(side_h * side_w);
}

// Model shapes: batch 2 (CFG), 16 heads, head_dim 64, k = 7, grids 13×13 and 16×16; 1 and 2 threads.
void model_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"H", "W", "k", "threads", "B", "heads"});
  for (int side : {13, 16})
    for (int t : {1, 2}) b->Args({side, side, 7, t, 2, 16});
  // Same work with one head per row (row stride 3·64 floats instead of 3·1024): how much the
  // model's 12 KiB-strided qkv rows still cost after packing.
  b->Args({16, 16, 7, 1, 32, 1});
  b->UseRealTime();
}
BENCHMARK(BM_na<NaImpl::fast>)->Name("BM_na")->Apply(model_shapes);
BENCHMARK(BM_na<NaImpl::naive_gather>)->Name("BM_na_naive_gather")->Apply(model_shapes);
BENCHMARK(BM_na<NaImpl::dense_masked>)->Name("BM_na_dense_masked")->Apply(model_shapes);

// Grid sweep at k = 7 (one thread, batch 1, 4 heads): time per token must not grow with the grid.
BENCHMARK(BM_na<NaImpl::fast>)
    ->Name("BM_na_sweep")
    ->ArgNames({"H", "W", "k", "threads", "B", "heads"})
    ->Args({8, 8, 7, 1, 1, 4})
    ->Args({16, 16, 7, 1, 1, 4})
    ->Args({32, 32, 7, 1, 1, 4})
    ->Args({64, 64, 7, 1, 1, 4})
    ->Complexity(benchmark::oN)
    ->UseRealTime();

// Other kernel sizes on the 16×16 grid (one thread).
BENCHMARK(BM_na<NaImpl::fast>)
    ->Name("BM_na_kernel")
    ->ArgNames({"H", "W", "k", "threads", "B", "heads"})
    ->Args({16, 16, 3, 1, 2, 16})
    ->Args({16, 16, 5, 1, 2, 16})
    ->Args({16, 16, 9, 1, 2, 16})
    ->Args({16, 16, 13, 1, 2, 16})
    ->UseRealTime();

template <bool Naive>
void BM_attention(benchmark::State& st) {
  const auto nq = st.range(0), nk = st.range(1);
  const int threads = int(st.range(2));
  Problem p({.batch = 2, .heads = 16, .h = 1, .w = nq, .head_dim = 64, .nk = nk}, 2, 10.0f);
  mvar::ThreadPool pool(threads);
  for (auto _ : st) {
    if constexpr (Naive)
      mvar::ref::attention_naive(pool, p.tokens(0), p.tokens(1), p.tokens(2), p.out4(), 1.0f);
    else
      mvar::attention(pool, p.tokens(0), p.tokens(1), p.tokens(2), p.out4(), 1.0f);
    benchmark::ClobberMemory();
  }
  report(st, p.attention_flop(), threads);
}
// MVAR in-scale (Nq = Nk = pn², pn = 4, 6, 8, 10) and VAR prefix (Nq = n_s new tokens over the
// Nk = cum_s cached keys, s = 7, 8, 9; and the 512-px schedule's last three scales, VAR-d36's
// 18², 24², 32² over 640, 1216, 2240 keys), batch 2 × 16 heads × head_dim 64.
void attention_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"Nq", "Nk", "threads"});
  for (int t : {1, 2}) {
    for (int n : {16, 36, 64, 100}) b->Args({n, n, t});
    b->Args({100, 255, t})->Args({169, 424, t})->Args({256, 680, t});
    b->Args({324, 640, t})->Args({576, 1216, t})->Args({1024, 2240, t});
  }
  b->UseRealTime();
}
BENCHMARK(BM_attention<false>)->Name("BM_attention")->Apply(attention_shapes);
BENCHMARK(BM_attention<true>)
    ->Name("BM_attention_naive")
    ->ArgNames({"Nq", "Nk", "threads"})
    ->Args({100, 100, 1})
    ->Args({256, 680, 1})
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
