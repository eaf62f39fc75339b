// VQVAE decoder speed at the official size (ch 160, ch_mult 1,1,2,2,4, random weights made
// in-process, 16×16 latent → 256×256 image) and its 3×3 convolutions at the decoder's shapes.
// Every benchmark reports FLOP/s and the fraction of the machine's fp32 FMA peak (2 cores of Zen 5:
// 2 × 2 FMA pipes × 16 lanes × 2 FLOP × ~3.5 GHz ≈ 451 GFLOP/s — pass another with --peak_gflops
// is not supported by Google Benchmark, so edit kPeakGflops for another machine).
#include <benchmark/benchmark.h>

#include <random>
#include <thread>
#include <vector>

#include "mvar/kernels/conv.hpp"
#include "mvar/model/vqvae.hpp"
#include "reference/vae_ref.hpp"

namespace {

constexpr double kPeakGflops = 451.0;
const int kThreads = std::max(1, int(std::thread::hardware_concurrency()));

std::vector<float> randn(std::size_t n, unsigned seed, float sd) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Rates are per wall second for UseRealTime benchmarks, per CPU second of the main thread otherwise
// (the single-thread variants: robust when other processes share the cores).
void report(benchmark::State& st, double flop, int threads) {
  const double peak = kPeakGflops * threads / 2;  // kPeakGflops is for 2 cores
  st.counters["GFLOP/s"] = benchmark::Counter(flop * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["%peak"] = benchmark::Counter(flop * 1e-9 / peak * 100, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["threads"] = threads;
}

// Convolution form of the last argument: 0 direct, 1 Winograd F(2×2) (fp32), 2 Winograd F(2×2) with
// bf16 products, 3 Winograd F(4×4) (fp32).
mvar::Precision form_precision(std::int64_t form) { return form == 2 ? mvar::Precision::BF16 : mvar::Precision::F32; }
int form_tile(std::int64_t form) { return form == 3 ? 4 : 2; }

// 3×3 conv C → C on a side × side image (args: C, side, threads, form). "GFLOP/s" counts the
// direct convolution's FLOPs for every form, so the Winograd rows read as effective rates.
void BM_conv3x3(benchmark::State& st) {
  const int C = int(st.range(0)), side = int(st.range(1)), threads = int(st.range(2));
  const std::int64_t form = st.range(3);
  const auto w = randn(std::size_t(C) * C * 9, 1, 1.f / std::sqrt(9.f * C));
  const auto b = randn(std::size_t(C), 2, 0.1f);
  mvar::Conv2d conv(mvar::TensorView<const float, 4>(w.data(), {C, C, 3, 3}), b);
  if (form != 0 && !(conv.enable_winograd(form_precision(form), form_tile(form)) &&
                     conv.winograd_precision() == form_precision(form) && conv.winograd_tile() == form_tile(form))) {
    st.SkipWithError("this build has no such Winograd form");
    return;
  }
  mvar::Buffer<float> planes(mvar::PaddedImage::floats(C, side, side)), out(std::size_t(C) * side * side);
  const mvar::PaddedImage in(planes.data(), C, side, side);
  const auto x = randn(std::size_t(C) * side * side, 3, 1.f);
  mvar::ThreadPool pool(threads);
  mvar::pad_copy(pool, mvar::TensorView<const float, 3>(x.data(), {C, side, side}), in);
  const mvar::TensorView<float, 3> ov(out.data(), {C, side, side});
  for (auto _ : st) {
    conv.forward(pool, in, ov);
    benchmark::ClobberMemory();
  }
  report(st, conv.flop(side, side), threads);
}
// The decoder's 3×3 shapes: mid/level 4 (640 @ 16), level-4 upsample (640 @ 32), level 2 (320 @ 64),
// level 1 (160 @ 128), level 0 — 70 % of all decoder FLOPs — (160 @ 256).
// Both cores, wall time; direct (0) and the Winograd forms (1 fp32, 2 bf16, 3 fp32 F(4×4)) at the
// decoder's shapes (it uses fp32 Winograd from 32 px on — F(4×4) for ≤ 160 channels at ≥ 64 px —
// and bf16 F(2×2) Winograd at every side):
BENCHMARK(BM_conv3x3)->ArgsProduct({{640}, {16, 32}, {kThreads}, {0, 1, 2}})
    ->ArgsProduct({{320}, {64}, {kThreads}, {0, 1, 2, 3}})->ArgsProduct({{160}, {128, 256}, {kThreads}, {0, 1, 2, 3}})
    ->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(0.3);
// One thread, CPU time (the kernel's per-core efficiency, meaningful on a loaded machine):
BENCHMARK(BM_conv3x3)->ArgsProduct({{640}, {16}, {1}, {0}})->ArgsProduct({{160}, {128}, {1}, {0, 1}})
    ->Unit(benchmark::kMillisecond)->MinTime(0.3);

// The whole decoder (args: threads, form).
void BM_decoder_official(benchmark::State& st) {
  const int threads = int(st.range(0));
  const auto cfg = mvar::VaeConfig::official();
  const auto store = mvar::ref::random_vae_store(cfg, 7);
  const mvar::VqvaeDecoder dec(store, cfg, mvar::VqvaeDecoder::Options{st.range(1) != 0, form_precision(st.range(1))});
  const int P = 16, S = dec.image_side(P);
  mvar::ThreadPool pool(threads);
  mvar::Workspace ws(dec.workspace_bytes(P));
  const auto fhat = randn(std::size_t(cfg.cvae) * P * P, 5, 1.f);
  std::vector<float> rgb(std::size_t(3) * S * S);
  for (auto _ : st) {
    dec.decode(pool, mvar::TensorView<const float, 3>(fhat.data(), {cfg.cvae, P, P}),
               mvar::TensorView<float, 3>(rgb.data(), {3, S, S}), ws);
    benchmark::ClobberMemory();
  }
  report(st, dec.flop(P), threads);
  st.counters["GFLOP"] = dec.flop(P) * 1e-9;
  st.counters["workspace_MB"] = double(dec.workspace_bytes(P)) / 1e6;
  st.counters["conv_weights_MB"] = double(dec.conv_bytes()) / 1e6;
}
BENCHMARK(BM_decoder_official)->Args({kThreads, 1})->Args({kThreads, 2})->Args({kThreads, 0})->UseRealTime()->Unit(benchmark::kMillisecond)->Iterations(2);
BENCHMARK(BM_decoder_official)->Args({1, 1})->Args({1, 0})->Unit(benchmark::kMillisecond)->Iterations(1);  // CPU time, one core

}  // namespace

BENCHMARK_MAIN();
