// End-to-end generation of the official 256-px MVAR/VAR-d16 architecture (random weights made
// in-process, same shapes as the official files): per-scale and total transformer time, the
// decoder separately, batch 1/4/16 with CFG on (cfg 1.5, top-k 900, top-p 0.96), 2 threads
// (MVAR_THREADS=n for another pool size; MVAR_ISA caps the kernel forms, kernels/cpu_dispatch.hpp).
// Counters: s{k}_seconds per scale (per batch), total_seconds, images_per_s, GFLOP/s, % of the
// fp32 peak (451 GFLOP/s measured on the reference machine; override with MVAR_PEAK_GFLOPS) and,
// for bf16 weights, % of the bf16 dot-product peak (840; MVAR_PEAK_BF16_GFLOPS),
// workspace / K/V high-water marks, peak RSS of the process and gen_rss_MiB: how far the RSS rose
// above its level before the sampler was built (weights resident) during the benchmark — what a
// generation adds beyond the weights.
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "mvar/mvar.hpp"
#include "bench_env.hpp"
#include "random_weights.hpp"
#include "reference/vae_ref.hpp"

using namespace mvar;

namespace {

constexpr ModelConfig Cfg = presets::d16;
using D16 = Transformer<Cfg>;

double peak_gflops() {
  const char* e = std::getenv("MVAR_PEAK_GFLOPS");
  return e ? std::atof(e) : 451.0;
}
double peak_rss_mib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;
}
struct D16Setup {
  TensorStore tw = test::random_transformer(Cfg, 1);
  TensorStore tv = ref::random_vae_store(VaeConfig::official(), 2);
  D16 model{tw};
  VectorQuantizer quant{tv, {1, 2, 3, 4, 5, 6, 8, 10, 13, 16}, 32, 4096};
  VqvaeDecoder decoder{tv, VaeConfig::official()};
};
D16Setup& setup() {
  static D16Setup s;
  return s;
}
template <WeightLayout L>
const D16& model_with() {  // packed once, on first use
  if constexpr (L == WeightLayout::InPlace) {
    return setup().model;
  } else {
    static const D16 m(setup().tw, L);
    return m;
  }
}

/// Transformer MACs per image for one CFG half (SPEC §4.2): token-wise linears, AdaLN once per
/// image, head, word_embed, attention pairs.
double transformer_flop(bool mvar, int rows_per_image) {
  const double C = Cfg.width, L = Cfg.seq_len(), depth = Cfg.depth;
  double pairs = 0;
  for (int s = 0; s < Cfg.num_scales(); ++s) {
    const double n = Cfg.patch_nums.tokens(s);
    if (!mvar) pairs += n * Cfg.patch_nums.begin(s + 1);
    else if (s < Cfg.refine_step) pairs += n * n;
    else pairs += n * Cfg.kernel * Cfg.kernel;
  }
  const double mac = depth * (12 * C * C * L + 2 * C * pairs) + L * (4096 * C + 32 * C) + depth * 6 * C * C + 2 * C * C;
  return 2 * mac * rows_per_image;
}

template <class Trajectory, WeightLayout Layout = WeightLayout::PackedF32>
void BM_generate(benchmark::State& st) {
  auto& S = setup();
  const D16& model = model_with<Layout>();
  const int batch = int(st.range(0));
  const bool mvar = std::is_same_v<Trajectory, ScaleMarkov>;
  // The generation's own memory: RSS growth from here (weights already resident) to the peak.
  const bool window = reset_peak_resident();
  const long rss0 = process_status_kib("VmRSS");
  ThreadPool pool(bench::threads(), bench::pool_spin(bench::threads()));
  // MVAR_BENCH_KOUTER=0/1 forces the GEMM's one-row-block loop order (A/B runs; gemm_packed.hpp).
  if (const char* e = std::getenv("MVAR_BENCH_KOUTER")) detail::gemm_k_outer_override() = std::atoi(e);
  Trajectory traj(Cfg);
  Sampler<D16, Trajectory> sampler(model, S.quant, traj, pool, batch);
  std::vector<int> labels;
  for (int i = 0; i < batch; ++i) labels.push_back((i * 97) % 1000);
  SampleOptions o;  // cfg 1.5, top-k 900, top-p 0.96
  std::vector<double> per_scale(std::size_t(Cfg.num_scales()), 0.0);
  o.on_scale = [&](const ScaleReport& r) { per_scale[std::size_t(r.scale)] += r.seconds; };
  Generation g;
  for (auto _ : st) {
    g = sampler.generate(labels, o);
    benchmark::DoNotOptimize(g.tokens.data());
  }
  const double it = double(st.iterations());
  double total = 0;
  for (int s = 0; s < Cfg.num_scales(); ++s) {
    st.counters["s" + std::to_string(s) + "_seconds"] = per_scale[std::size_t(s)] / it;
    total += per_scale[std::size_t(s)] / it;
  }
  st.counters["total_seconds"] = total;
  st.counters["seconds_per_image"] = total / batch;
  st.counters["images_per_s"] = batch / total;
  // MVAR skips the unconditional half at step 0; both halves elsewhere (cfg 1.5 ≠ 1).
  const double flop = transformer_flop(mvar, 2) * batch;
  st.counters["GFLOP/s"] = flop / total * 1e-9;
  st.counters["pct_of_peak"] = 100.0 * flop / total * 1e-9 / peak_gflops();
  // bf16 weights: the GEMMs run on vdpbf16ps, whose peak is ≈ 1.86× the fp32 FMA peak here
  // (840 GFLOP/s on 2 cores; override with MVAR_PEAK_BF16_GFLOPS).
  if constexpr (Layout == WeightLayout::PackedBF16) {
    const char* e = std::getenv("MVAR_PEAK_BF16_GFLOPS");
    st.counters["pct_of_bf16_peak"] = 100.0 * flop / total * 1e-9 / (e ? std::atof(e) : 840.0);
  }
  st.counters["workspace_MiB"] = double(g.workspace_high_water) / 1048576.0;
  st.counters["kv_MiB"] = double(g.kv_bytes) / 1048576.0;
  st.counters["weights_MiB"] = double(model.weight_bytes()) / 1048576.0;
  st.counters["threads"] = pool.threads();
  st.counters["isa"] = double(int(active_isa()));  // 0 portable, 1 avx2, 2 avx512, 3 amx
  st.counters["peak_rss_MiB"] = peak_rss_mib();  // the whole process, random weights made in-process included
  // Beyond the resident weights: workspace, K/V cache, packing scratch, threads, the outputs.
  if (window && rss0 >= 0) st.counters["gen_rss_MiB"] = double(process_status_kib("VmHWM") - rss0) / 1024.0;
}

// The decoder (arg: 0 fp32 Winograd — the default, 1 Winograd with bf16 products, as --weights bf16).
void BM_decode(benchmark::State& st) {
  auto& S = setup();
  static const VqvaeDecoder dec_bf16{S.tv, VaeConfig::official(), {true, Precision::BF16}};
  const VqvaeDecoder& dec = st.range(0) == 1 ? dec_bf16 : S.decoder;
  ThreadPool pool(bench::threads(), bench::pool_spin(bench::threads()));
  const int P = 16, side = 256;
  Workspace ws(dec.workspace_bytes(P));
  std::vector<float> fhat(std::size_t(32) * P * P, 0.1f), img(std::size_t(3) * side * side);
  for (std::size_t i = 0; i < fhat.size(); ++i) fhat[i] = float((i * 7919) % 200) / 100.0f - 1.0f;
  for (auto _ : st) {
    dec.decode(pool, TensorView<const float, 3>(fhat.data(), {32, P, P}), TensorView<float, 3>(img.data(), {3, side, side}), ws);
    benchmark::ClobberMemory();
  }
  const double flop = 2 * 196.9e9;  // SPEC §4.2: ≈ 196.9 GMAC per image
  st.counters["decode_seconds"] = benchmark::Counter(1.0, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  st.counters["GFLOP/s"] = benchmark::Counter(flop * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["workspace_MiB"] = double(ws.high_water()) / 1048576.0;
}

}  // namespace

BENCHMARK(BM_generate<ScaleMarkov>)->Name("mvar_d16")->Arg(1)->Arg(4)->Arg(16)->Unit(benchmark::kSecond)->UseRealTime()->Iterations(1);
BENCHMARK(BM_generate<ScaleMarkov, WeightLayout::InPlace>)->Name("mvar_d16_inplace")->Arg(1)->Unit(benchmark::kSecond)->UseRealTime()->Iterations(1);
BENCHMARK(BM_generate<ScaleMarkov, WeightLayout::PackedBF16>)->Name("mvar_d16_bf16")->Arg(1)->Arg(4)->Arg(16)->Unit(benchmark::kSecond)->UseRealTime()->Iterations(1);
BENCHMARK(BM_generate<ScaleMarkov, WeightLayout::PackedInt8>)->Name("mvar_d16_int8")->Arg(1)->Arg(4)->Arg(16)->Unit(benchmark::kSecond)->UseRealTime()->Iterations(1);
BENCHMARK(BM_generate<FullPrefix>)->Name("var_d16")->Arg(1)->Arg(4)->Arg(16)->Unit(benchmark::kSecond)->UseRealTime()->Iterations(1);
BENCHMARK(BM_decode)->Name("decode_d16")->Arg(0)->Arg(1)->Unit(benchmark::kSecond)->UseRealTime()->Iterations(2);

BENCHMARK_MAIN();
