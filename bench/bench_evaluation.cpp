// Evaluation-scale sampling throughput (mvar/pipeline/evaluation.hpp): run_evaluation end to end —
// sampling, decoding, the .npz stream with an fdatasync and a journal update per batch — for
// MVAR-d16 (random weights of the official shapes, made in-process; the official recommended
// settings cfg 2 / top-k 1200 / top-p 0.99 are not needed for timing, the shapes are: cfg 1.5,
// top-k 900, top-p 0.96 as bench_generate) and for the default Fashion-MNIST model (its files),
// at batch 1, 4 and 16 with every hardware thread (MVAR_BENCH_THREADS overrides).
//
// Counters: images_per_s (of the whole run, I/O included) and hours_50k = the projected wall time
// of 50,000 images on this machine; N machines (shards) take hours_50k / N plus a merge that
// copies the file once (≈ 9.8 GB at 256 px). tools/evaluation_throughput.sh prints the table.
// The output goes to $TMPDIR (default /tmp) and is removed.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "../examples/evaluation_source.hpp"
#include "random_weights.hpp"
#include "reference/vae_ref.hpp"

using namespace mvar;

namespace {

int bench_threads() {
  const char* e = std::getenv("MVAR_BENCH_THREADS");
  return e ? std::max(1, std::atoi(e)) : int(std::max(1u, std::thread::hardware_concurrency()));
}

std::string out_path(const char* tag) {
  return (std::filesystem::temp_directory_path() / concat("mvar_bench_evaluation_", tag, "_", ::getpid(), ".npz")).string();
}

void run(benchmark::State& st, const ImageSource& source, int side, int images, const char* tag) {
  const int batch = int(st.range(0));
  const auto plan = EvaluationPlan::per_class(std::uint64_t(images), 0, 0);
  const RunIdentity id{{"bench", tag}};
  double seconds = 0;
  for (auto _ : st) {
    EvaluationOptions o;
    o.npz = out_path(tag);
    o.batch = batch;
    for (const char* s : {"", ".partial", ".journal"}) std::remove((o.npz + s).c_str());
    const auto t0 = std::chrono::steady_clock::now();
    run_evaluation(plan, id, side, source, o);
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::remove(o.npz.c_str());
  }
  const double ips = double(images) * double(st.iterations()) / std::max(seconds, 1e-9);
  st.counters["images_per_s"] = ips;
  st.counters["hours_50k"] = 50000.0 / ips / 3600.0;
  st.counters["threads"] = bench_threads();
  st.counters["side"] = side;
}

// MVAR-d16 through the same preset engine and decoder the Pipeline's ImageStream uses, on random
// in-memory weights (the Pipeline opens files).
struct RandomD16 {
  TensorStore tw = test::random_transformer(presets::d16, 1);
  TensorStore tv = ref::random_vae_store(VaeConfig::official(), 2);
  ThreadPool pool{bench_threads()};
  VectorQuantizer quant{tv, {1, 2, 3, 4, 5, 6, 8, 10, 13, 16}, 32, 4096};
  VqvaeDecoder decoder{tv, VaeConfig::official()};
  std::unique_ptr<SamplingEngine> engine =
      builtin_presets().find("d16")->make_engine({tw, quant, Mode::Mvar, WeightLayout::PackedF32, pool, 16});
  Workspace ws{decoder.workspace_bytes(16)};
  Buffer<float> img{std::size_t(3) * 256 * 256};
  void draw(std::span<const int> labels, std::uint64_t first, std::span<std::uint8_t> out) {
    SampleOptions o;  // cfg 1.5, top-k 900, top-p 0.96 (bench_generate's settings)
    o.first_index = first;
    const Generation g = engine->generate(labels, o);
    const std::size_t one = std::size_t(256) * 256 * 3;
    for (std::size_t b = 0; b < labels.size(); ++b) {
      decoder.decode(pool, g.image_fhat(int(b)), TensorView<float, 3>(img.data(), {3, 256, 256}), ws);
      to_rgb8(TensorView<const float, 3>(img.data(), {3, 256, 256}), out.subspan(b * one, one));
    }
  }
};

void BM_evaluation_d16(benchmark::State& st) {
  static auto src = std::make_shared<RandomD16>();
  const ImageSource source = [](std::span<const int> l, std::uint64_t f, std::span<std::uint8_t> o) { src->draw(l, f, o); };
  run(st, source, 256, 16, "d16");
}

void BM_evaluation_default_model(benchmark::State& st) {
  evaluation_cli::ModelRequest r;
  r.default_model_dir = std::string(MVAR_SOURCE_DIR) + "/models/fashion_mnist";
  r.threads = bench_threads();
  r.max_batch = 16;
  static const auto src = evaluation_cli::open_image_source(r);
  run(st, src.source, src.side, 256, "fashion_mnist");
}

}  // namespace

BENCHMARK(BM_evaluation_d16)->Name("evaluation_mvar_d16")->Arg(1)->Arg(4)->Arg(16)->Unit(benchmark::kSecond)->UseRealTime()->Iterations(1);
BENCHMARK(BM_evaluation_default_model)->Name("evaluation_fashion_mnist")->Arg(1)->Arg(4)->Arg(16)->Unit(benchmark::kSecond)->UseRealTime()->Iterations(1);
BENCHMARK_MAIN();
