// VQVAE encoder speed at the official size (ch 160, ch_mult 1,1,2,2,4, 2 res blocks, attention;
// random weights made in-process) for 256-px and 512-px images (16² and 32² latents), and the
// multi-scale residual quantiser after it (official patch_nums for each size). Counters: GFLOP
// (convolutions and attention products, 2 per multiply-add), GFLOP/s, % of the fp32 FMA peak
// (kPeakGflops, as bench_decoder), workspace and packed-weight sizes. The encoder's 3×3 layers at
// ≥ 2× the latent side run in Winograd form (F(4×4) for ≤ 160 channels at ≥ 64 px): arg form 1;
// form 0 runs every layer direct. Not timed in this repository's CI; see docs/performance.md.
#include <benchmark/benchmark.h>

#include <random>
#include <thread>
#include <vector>

#include "mvar/model/quantizer.hpp"
#include "mvar/model/vqvae_encoder.hpp"
#include "reference/vae_ref.hpp"

namespace {

constexpr double kPeakGflops = 451.0;  // 2 cores of the project machine (bench_decoder.cpp)
const int kThreads = std::max(1, int(std::thread::hardware_concurrency()));

std::vector<float> uniform_image(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

void report(benchmark::State& st, double flop, int threads) {
  const double peak = kPeakGflops * threads / 2;
  st.counters["GFLOP/s"] = benchmark::Counter(flop * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["%peak"] = benchmark::Counter(flop * 1e-9 / peak * 100, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["GFLOP"] = flop * 1e-9;
  st.counters["threads"] = threads;
}

// args: image side (256 or 512), threads, form (1 Winograd placement, 0 direct).
void BM_encoder_official(benchmark::State& st) {
  const int S = int(st.range(0)), threads = int(st.range(1));
  const auto cfg = mvar::VaeConfig::official();
  const auto store = mvar::ref::random_vae_store(cfg, 7, /*with_encoder=*/true);
  mvar::VqvaeEncoder::Options o;
  o.winograd = st.range(2) != 0;
  o.latent_side = S >> (cfg.levels() - 1);
  const mvar::VqvaeEncoder enc(store, cfg, o);
  const int P = enc.latent_side(S);
  mvar::ThreadPool pool(threads);
  mvar::Workspace ws(enc.workspace_bytes(S));
  const auto img = uniform_image(std::size_t(3) * S * S, 5);
  std::vector<float> f(std::size_t(cfg.cvae) * P * P);
  for (auto _ : st) {
    enc.encode(pool, mvar::TensorView<const float, 3>(img.data(), {3, S, S}), mvar::TensorView<float, 3>(f.data(), {cfg.cvae, P, P}), ws);
    benchmark::ClobberMemory();
  }
  report(st, enc.flop(S), threads);
  st.counters["workspace_MB"] = double(enc.workspace_bytes(S)) / 1e6;
  st.counters["conv_weights_MB"] = double(enc.conv_bytes()) / 1e6;
}
BENCHMARK(BM_encoder_official)->ArgsProduct({{256, 512}, {kThreads}, {1, 0}})->UseRealTime()->Unit(benchmark::kMillisecond)->Iterations(2);
BENCHMARK(BM_encoder_official)->Args({256, 1, 1})->Unit(benchmark::kMillisecond)->Iterations(1);  // CPU time, one core

// The residual quantiser of one image (args: latent side 16 or 32, threads): area, nearest of
// 4096 entries by squared distance, bicubic + Phi per scale.
void BM_quantize_official(benchmark::State& st) {
  const int P = int(st.range(0)), threads = int(st.range(1));
  const auto cfg = mvar::VaeConfig::official();
  const auto store = mvar::ref::random_vae_store(cfg, 7);
  const std::vector<int> pn = P == 32 ? std::vector<int>{1, 2, 3, 4, 6, 9, 13, 18, 24, 32}
                                      : std::vector<int>{1, 2, 3, 4, 5, 6, 8, 10, 13, 16};  // official lists
  const mvar::VectorQuantizer q(store, pn, cfg);
  mvar::ThreadPool pool(threads);
  mvar::Workspace ws(q.encode_workspace_bytes());
  const auto f = uniform_image(std::size_t(cfg.cvae) * P * P, 9);
  std::vector<std::int32_t> tok(q.total_tokens());
  std::vector<float> fhat(f.size());
  for (auto _ : st) {
    q.encode(pool, mvar::TensorView<const float, 3>(f.data(), {cfg.cvae, P, P}), tok,
             mvar::TensorView<float, 3>(fhat.data(), {cfg.cvae, P, P}), ws);
    benchmark::ClobberMemory();
  }
  // Nearest-entry search: 3 FLOP (sub, mul, add) per token × entry × channel.
  report(st, 3.0 * double(q.total_tokens()) * cfg.vocab * cfg.cvae, threads);
}
BENCHMARK(BM_quantize_official)->ArgsProduct({{16, 32}, {kThreads}})->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(0.2);

}  // namespace

BENCHMARK_MAIN();
