// VAR-d36 at 512 px from files (a torch-written checkpoint in the official layout, e.g. from
// tools/make_var_checkpoint.py --preset d36 and --vae): load, sample (batch 1 + CFG, the full-prefix
// VAR trajectory with its K/V cache), free the transformer, decode the 32×32 f̂ to 512×512, and
// print one JSON line with the times and the peak RSS of each phase and of the whole run — the
// memory discipline at the zoo's largest size (docs/zoo.md has the measured figures).
//
//   bench_d36 --transformer var_d36.pth --vae vae_ch160v4096z32.pth [--weights fp32|bf16]
//             [--threads 2] [--seed 0] [--cfg 1.5 --top-k 900 --top-p 0.96] [--more-smooth]
//             [--out image.png] [--phase-peaks]
//   bench_d36 --preset saln512_tiny --transformer tests/fixtures/saln512_tiny.transformer.safetensors
//             --vae tests/fixtures/tiny.vae.safetensors     (the same path on the fixture's model)
//
// sampling_peak is VmHWM read after sampling (the transformer freed), whole_run_peak VmHWM at the
// end: the high-water mark is never reset, so /usr/bin/time reports the same whole-run peak. With
// --phase-peaks the mark restarts before decoding (core/process_memory.hpp) to measure the decoding
// phase alone — outside tools then see only that phase.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "mvar/mvar.hpp"

using namespace mvar;

namespace {

struct Args {
  std::string preset = "d36", transformer, vae, weights = "fp32", out;
  int threads = 2;
  std::uint64_t seed = 0;
  float cfg = 1.5f, top_p = 0.96f;
  int top_k = 900, label = 980;
  bool more_smooth = false;
  bool phase_peaks = false;
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
double mib(long kib) { return double(kib) / 1024.0; }

template <ModelConfig Cfg>
int run(const Args& a, const VaeConfig& vcfg) {
  const double t0 = now_s();
  long whole_peak_kib = 0;
  auto note_peak = [&] { whole_peak_kib = std::max(whole_peak_kib, process_status_kib("VmHWM")); };
  const TensorStore tv = load_checkpoint(a.vae);
  VqvaeDecoder::check_weights(tv, vcfg);
  std::vector<int> pn;
  for (int s = 0; s < Cfg.num_scales(); ++s) pn.push_back(Cfg.patch_nums[s]);
  const VectorQuantizer quant(tv, pn, vcfg);
  ThreadPool pool(a.threads);
  SampleOptions o;
  o.cfg = a.cfg;
  o.top_k = a.top_k;
  o.top_p = a.top_p;
  o.seed = a.seed;
  o.more_smooth = a.more_smooth;
  o.on_scale = [](const ScaleReport& r) {
    std::fprintf(stderr, "[bench_d36] scale %2d/%d %3d×%-3d %8.2f s  K/V %.0f MiB\n", r.scale + 1, r.scales, r.side,
                 r.side, r.seconds, double(r.kv_bytes) / 1048576.0);
  };
  const std::vector<int> labels = {a.label};
  Generation g;
  double load_s = 0, sample_s = 0;
  std::size_t weight_bytes = 0, kv_bytes = 0, ws_bytes = 0;
  {
    const TensorStore tw = load_checkpoint(a.transformer);
    const Transformer<Cfg> model(tw, a.weights == "bf16" ? WeightLayout::PackedBF16 : WeightLayout::PackedF32);
    load_s = now_s() - t0;
    weight_bytes = model.weight_bytes();
    FullPrefix traj(Cfg);
    Sampler<Transformer<Cfg>, FullPrefix> sampler(model, quant, traj, pool, 1);
    g = sampler.generate(labels, o);
    sample_s = g.seconds;
    kv_bytes = g.kv_bytes;
    ws_bytes = g.workspace_high_water;
    for (const auto& t : tw.tensors()) tw.release_pages(t);
  }
  note_peak();
  const long sampling_peak_kib = process_status_kib("VmHWM");
  const bool phases = a.phase_peaks && reset_peak_resident();
  const double td = now_s();
  const VqvaeDecoder dec(tv, vcfg, VqvaeDecoder::Options{true, a.weights == "bf16" ? Precision::BF16 : Precision::F32, true,
                                                         Cfg.patch_nums.last()});
  const int P = Cfg.patch_nums.last(), side = dec.image_side(P);
  Workspace ws(dec.workspace_bytes(P));
  std::vector<float> img(std::size_t(3) * side * side);
  dec.decode(pool, g.image_fhat(0), TensorView<float, 3>(img.data(), {3, side, side}), ws);
  std::vector<std::uint8_t> u8(img.size());
  to_rgb8(TensorView<const float, 3>(img.data(), {3, side, side}), u8);
  const double decode_s = now_s() - td;
  if (!a.out.empty()) write_png(a.out, u8, side, side);
  const long decoding_peak_kib = process_status_kib("VmHWM");
  note_peak();
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double cpu_s = double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + 1e-6 * double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
  double lo = 1e9, hi = -1e9;
  for (float v : img) lo = std::min(lo, double(v)), hi = std::max(hi, double(v));
  std::printf("{\"preset\":\"%s\",\"weights\":\"%s\",\"threads\":%d,\"image\":%d,\"load_s\":%.1f,\"sample_s\":%.1f,"
              "\"decode_s\":%.1f,\"total_s\":%.1f,\"weight_MiB\":%.0f,\"kv_MiB\":%.0f,\"workspace_hw_MiB\":%.0f,"
              "\"sampling_peak_rss_MiB\":%.0f,\"decoding_peak_rss_MiB\":%.0f,\"whole_run_peak_rss_MiB\":%.0f,"
              "\"phase_peaks\":%s,\"cpu_s\":%.0f,\"img_min\":%.3f,\"img_max\":%.3f,\"more_smooth\":%s}\n",
              a.preset.c_str(), a.weights.c_str(), a.threads, side, load_s, sample_s, decode_s, now_s() - t0,
              double(weight_bytes) / 1048576.0, double(kv_bytes) / 1048576.0, double(ws_bytes) / 1048576.0,
              mib(sampling_peak_kib), phases ? mib(decoding_peak_kib) : -1.0, mib(whole_peak_kib),
              phases ? "true" : "false", cpu_s, lo, hi, a.more_smooth ? "true" : "false");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_d36: %s needs a value\n", k.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (k == "--preset") a.preset = val();
    else if (k == "--transformer") a.transformer = val();
    else if (k == "--vae") a.vae = val();
    else if (k == "--weights") a.weights = val();
    else if (k == "--threads") a.threads = std::stoi(val());
    else if (k == "--seed") a.seed = std::stoull(val());
    else if (k == "--cfg") a.cfg = std::stof(val());
    else if (k == "--top-k") a.top_k = std::stoi(val());
    else if (k == "--top-p") a.top_p = std::stof(val());
    else if (k == "--class") a.label = std::stoi(val());
    else if (k == "--more-smooth") a.more_smooth = true;
    else if (k == "--phase-peaks") a.phase_peaks = true;
    else if (k == "--out") a.out = val();
    else {
      std::fprintf(stderr, "bench_d36: unknown option %s (see the header of bench/bench_d36.cpp)\n", k.c_str());
      return 2;
    }
  }
  if (a.transformer.empty() || a.vae.empty() || (a.weights != "fp32" && a.weights != "bf16")) {
    std::fprintf(stderr, "bench_d36: --transformer and --vae are required; --weights fp32|bf16\n");
    return 2;
  }
  try {
    if (a.preset == "d36") return run<presets::d36>(a, VaeConfig::official());
    if (a.preset == "saln512_tiny") return run<presets::saln512_tiny>(a, VaeConfig::tiny());
    std::fprintf(stderr, "bench_d36: --preset d36 or saln512_tiny\n");
    return 2;
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_d36: %s\n", e.what());
    return 1;
  }
}
