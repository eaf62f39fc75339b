// bench/bench_sampling.cpp — the per-row sampling work of one scale: top-k / top-p masking and the
// categorical draw over the 4096-token vocabulary (sampling/top_k_top_p.hpp), one thread (CPU
// time; the sampler splits rows over the pool, each row independent).
//
// Rows: 512 (d16's last scale with CFG doubling before the mix, an upper bound: after the mix a
// batch-1 step samples 256 rows). Logits: normal with σ = 3, a peaked distribution like a trained
// model's. Settings: the (top-k 900, top-p 0.96), the official d16 recommendation (1200,
// 0.99), greedy-ish (top-k 1) and no masking (top-k 0, top-p 1: the draw alone).
// Each row is restored from a pristine copy before masking (a 16 KiB memcpy, ≈ 1 % of a row's time).
// Counters: s_per_row (printed with an SI prefix: 95u = 95 µs), rows/s.
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <vector>

#include "mvar/sampling/top_k_top_p.hpp"

namespace {

constexpr std::size_t kVocab = 4096, kRows = 512;

void BM_mask_and_draw(benchmark::State& st) {
  const int top_k = int(st.range(0));
  const float top_p = float(st.range(1)) / 1000.0f;
  std::mt19937 rng(7);
  std::normal_distribution<float> d(0.0f, 3.0f);
  std::vector<float> pristine(kRows * kVocab), row(kVocab), scratch(kVocab);
  std::vector<std::uint64_t> keys(kVocab);
  for (auto& v : pristine) v = d(rng);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> draws(kRows);
  for (auto& v : draws) v = u(rng);
  std::int64_t checksum = 0;
  for (auto _ : st) {
    for (std::size_t r = 0; r < kRows; ++r) {
      std::memcpy(row.data(), pristine.data() + r * kVocab, kVocab * sizeof(float));
      mvar::top_k_top_p_mask(row, top_k, top_p, scratch, keys);
      checksum += mvar::sample_categorical(row, draws[r]);
    }
  }
  benchmark::DoNotOptimize(checksum);
  st.counters["s_per_row"] =
      benchmark::Counter(double(kRows), benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  st.counters["rows/s"] = benchmark::Counter(double(kRows), benchmark::Counter::kIsIterationInvariantRate);
  st.SetLabel("top_k " + std::to_string(top_k) + ", top_p " + std::to_string(top_p).substr(0, 5));
}

}  // namespace

// Args: top_k, top_p × 1000.
BENCHMARK(BM_mask_and_draw)->Args({900, 960})->Args({1200, 990})->Args({1, 1000})->Args({0, 1000})->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
