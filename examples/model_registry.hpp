// examples/model_registry.hpp — the architectures the `generate` program knows, the runtime →
// compile-time dispatch onto Transformer<Cfg>, and one whole generation (sample, decode, write).
#pragma once

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_args.hpp"
#include "mvar/mvar.hpp"

#ifndef MVAR_DEFAULT_MODEL_DIR
#define MVAR_DEFAULT_MODEL_DIR "models"
#endif
#ifndef MVAR_FIXTURE_DIR
#define MVAR_FIXTURE_DIR "tests/fixtures"
#endif

namespace mvar {

struct RunRequest {
  std::string transformer, vae, model = "auto", mode = "mvar", output = "mvar_out.png", weights = "packed";
  bool winograd = true;     // decoder: Winograd form of the large 3×3 convolutions
  bool large_tiles = true;  // … in F(4×4, 3×3) on the narrow fp32 layers (VqvaeDecoder::Options)
  std::vector<int> labels;
  int batch = 0, threads = 1;
  std::uint64_t seed = 0;
  std::optional<float> cfg, top_p;
  std::optional<int> top_k, columns, upscale;
  bool separate = false, quiet = false;
};

struct RunResult {
  int images = 0;
  double sample_seconds = 0, decode_seconds = 0;
  std::size_t weight_bytes = 0, decoder_weight_bytes = 0, workspace_high_water = 0, kv_bytes = 0;
  std::size_t decoder_workspace_bytes = 0;
  // Peak RSS of each phase (sampling, then decoding) where the system can measure them apart, else 0.
  std::size_t sampling_peak_rss = 0, decoding_peak_rss = 0;
  std::vector<std::string> files;
};

namespace detail {

inline bool file_exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

/// Which architecture a transformer state dict holds, from its shapes.
inline std::string detect_architecture(const TensorStore& st) {
  const auto f = transformer_file_shape(st);
  if (!f) throw Error(concat(st.source(), ": not a VAR/MVAR transformer checkpoint (no 'class_emb.weight')"));
  if (const std::string p = f->official_preset(); !p.empty()) return p;
  if (f->depth == presets::tiny.depth && f->width == presets::tiny.width) return "tiny";
  throw Error(concat(st.source(), ": unknown architecture (depth ", f->depth, ", width ", f->width,
                     "); pass --model with one of d16, d20, d24, d30, tiny"));
}

// The two phases of a run never share memory: the transformer draws every image's f̂ and is freed
// (with its file's pages), then the decoder is built and decodes. Peak RSS is the larger phase,
// not the sum (d16 fp32: 1.68 GB with both resident → the transformer phase alone).
template <ModelConfig Cfg, class Trajectory>
Generation sample_phase(const TensorStore& tw, const VectorQuantizer& quant, Trajectory& traj, ThreadPool& pool,
                        const RunRequest& req, const std::vector<int>& labels, const SampleOptions& opts, RunResult& r) {
  const Transformer<Cfg> model(tw, req.weights == "bf16"     ? WeightLayout::PackedBF16
                                   : req.weights == "inplace" ? WeightLayout::InPlace
                                                              : WeightLayout::PackedF32);
  if (!req.quiet)
    std::printf("[generate] %s (%s), %s mode, %zu image(s), cfg %.3g, top-k %d, top-p %.3g, seed %llu, %d thread(s)\n",
                req.model.c_str(), layout_name(model.layout()), req.mode.c_str(), labels.size(), double(opts.cfg),
                opts.top_k, double(opts.top_p), static_cast<unsigned long long>(opts.seed), req.threads);
  r.weight_bytes = model.weight_bytes();
  Sampler<Transformer<Cfg>, Trajectory> sampler(model, quant, traj, pool, int(labels.size()));
  Generation g = sampler.generate(labels, opts);
  r.sample_seconds = g.seconds;
  r.workspace_high_water = g.workspace_high_water;
  r.kv_bytes = g.kv_bytes;
  return g;
}

inline void decode_phase(const VqvaeDecoder& decoder, const Generation& g, ThreadPool& pool, const RunRequest& req,
                         const std::vector<int>& labels, RunResult& r) {
  const int P = g.side, side = decoder.config().image_side(P);
  const int up = req.upscale.value_or(side <= 64 ? 4 : 1), big = side * up;
  r.decoder_weight_bytes = decoder.conv_bytes();
  if (!req.quiet)
    std::printf("[generate] decoding with %s decoder convolutions (%.1f MiB)\n", decoder.conv_form(),
                double(r.decoder_weight_bytes) / 1048576.0);
  const auto t0 = std::chrono::steady_clock::now();
  Workspace ws(decoder.workspace_bytes(P));
  Buffer<float> img(std::size_t(3) * side * side);
  std::vector<std::uint8_t> rgb(std::size_t(labels.size()) * side * side * 3);
  for (std::size_t b = 0; b < labels.size(); ++b) {
    decoder.decode(pool, g.image_fhat(int(b)), TensorView<float, 3>(img.data(), {3, side, side}), ws);
    to_rgb8(TensorView<const float, 3>(img.data(), {3, side, side}),
            std::span<std::uint8_t>(rgb.data() + b * side * side * 3, std::size_t(side) * side * 3));
    if (!req.quiet) std::printf("[generate] decoded image %zu/%zu\n", b + 1, labels.size()), std::fflush(stdout);
  }
  r.decode_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.decoder_workspace_bytes = ws.high_water();
  // Optional nearest-neighbour enlargement for small images (the default model draws 32×32).
  std::vector<std::uint8_t> out(std::size_t(labels.size()) * big * big * 3);
  for (std::size_t b = 0; b < labels.size(); ++b)
    for (int y = 0; y < big; ++y)
      for (int x = 0; x < big; ++x)
        for (int c = 0; c < 3; ++c)
          out[((b * big + y) * big + x) * 3 + c] = rgb[((b * side + y / up) * side + x / up) * 3 + c];
  const int columns = req.columns.value_or(labels.size() == 10 ? 5 : 0);
  r.files = write_png_batch(req.output, out, int(labels.size()), big, big, req.separate ? PngBatch::Numbered : PngBatch::Grid,
                            columns);
}

template <ModelConfig Cfg>
RunResult run_arch(const RunRequest& req, const TensorStore& tw, const TensorStore& tv, const VaeConfig& vcfg,
                   const Recommended& rec, int default_batch) {
  // A VAE file the decoder cannot use is refused now, not after the sampling work.
  VqvaeDecoder::check_weights(tv, vcfg);
  std::vector<int> pn;
  for (int s = 0; s < Cfg.num_scales(); ++s) pn.push_back(Cfg.patch_nums[s]);

  std::vector<int> labels = req.labels;
  int batch = req.batch;
  if (labels.empty() && batch == 0) batch = default_batch;
  const bool repeat = labels.empty() || (labels.size() == 1 && batch > 1);  // labels from --batch
  if (!repeat && batch != 0 && std::size_t(batch) != labels.size())
    throw cli::UsageError(concat("--batch ", batch, " disagrees with the ", labels.size(), " labels given to --class"));
  // A batch the machine cannot hold is refused before anything of its size exists (labels included).
  Sampler<Transformer<Cfg>, ScaleMarkov>::check_memory(repeat ? batch : int(labels.size()));
  if (labels.empty()) {
    for (int i = 0; i < batch; ++i) labels.push_back(i % Cfg.num_classes);
  } else if (repeat) {
    labels.assign(std::size_t(batch), labels[0]);
  }
  for (int l : labels)
    if (l < 0 || l >= Cfg.num_classes)
      throw cli::UsageError(concat("class label ", l, " is out of range [0, ", Cfg.num_classes - 1, "]"));
  {  // The decoded, enlarged and (grid) assembled images: refuse what cannot fit before sampling.
    const int side = vcfg.image_side(Cfg.patch_nums.last()), big = side * req.upscale.value_or(side <= 64 ? 4 : 1);
    const std::string what = concat("the ", labels.size(), " decoded images of ", big, "×", big, " pixels");
    check_allocation(checked_bytes({labels.size(), std::uint64_t(big), std::uint64_t(big), 3}, 3, what), what);
  }

  SampleOptions o;
  o.cfg = req.cfg.value_or(rec.cfg);
  o.top_k = req.top_k.value_or(rec.top_k);
  o.top_p = req.top_p.value_or(rec.top_p);
  o.seed = req.seed;
  try {
    validate_options(o, labels, Cfg.num_classes, int(labels.size()));
  } catch (const Error& e) {
    throw cli::UsageError(e.what());
  }
  if (!req.quiet)
    o.on_scale = [](const ScaleReport& s) {
      std::printf("[generate] scale %2d/%d  %3d×%-3d  %8.3f s\n", s.scale + 1, s.scales, s.side, s.side, s.seconds);
      std::fflush(stdout);
    };

  RunResult r;
  r.images = int(labels.size());
  ThreadPool pool(req.threads);
  Generation g;
  {
    const VectorQuantizer quant(tv, pn, Cfg.cvae, Cfg.vocab, vcfg.n_phi, vcfg.quant_resi);
    if (req.mode == "var") {
      FullPrefix traj(Cfg);
      g = sample_phase<Cfg>(tw, quant, traj, pool, req, labels, o, r);
    } else {
      ScaleMarkov traj(Cfg);
      g = sample_phase<Cfg>(tw, quant, traj, pool, req, labels, o, r);
    }
  }
  // The transformer is gone; drop the file pages it read in place or that are still cached in us.
  for (const auto& t : tw.tensors()) tw.release_pages(t);
  const long sampling_kib = process_status_kib("VmHWM");
  // A separate window for the decoder phase, where the system can restart the high-water mark.
  if (sampling_kib > 0 && reset_peak_resident()) r.sampling_peak_rss = std::size_t(sampling_kib) * 1024;

  // bf16 weights also give the decoder's Winograd layers bf16 products (`--conv direct` keeps fp32).
  const VqvaeDecoder decoder(tv, vcfg, VqvaeDecoder::Options{req.winograd, req.weights == "bf16" ? Precision::BF16 : Precision::F32,
                                                              req.large_tiles, Cfg.patch_nums.last()});
  decode_phase(decoder, g, pool, req, labels, r);
  if (r.sampling_peak_rss) r.decoding_peak_rss = std::size_t(std::max(0L, process_status_kib("VmHWM"))) * 1024;
  return r;
}

}  // namespace detail


/// Resolves files and architecture, then runs one generation.
inline RunResult run_generation(RunRequest req) {
  std::string note;
  int default_batch = 1;
  Recommended rec;
  if (req.transformer.empty() != req.vae.empty())
    throw cli::UsageError("give both --transformer and --vae, or neither (the default model)");
  std::optional<ModelDescription> json;
  if (req.transformer.empty()) {
    const std::string dir = std::string(MVAR_DEFAULT_MODEL_DIR) + "/fashion_mnist";
    req.transformer = dir + "/mvar.safetensors";
    req.vae = dir + "/vae.safetensors";
    json = load_model_description(dir + "/config.json");
    if (req.model == "auto") req.model = "fashion_mnist";
    note = concat("using the default model: class-conditional MVAR trained on Fashion-MNIST (", dir, ")");
    default_batch = json->arch.num_classes;  // one image per class
  } else {
    const std::string cfg_path = (std::filesystem::path(req.transformer).parent_path() / "config.json").string();
    if (detail::file_exists(cfg_path) && req.model == "auto") json = load_model_description(cfg_path);
  }
  for (const auto& f : {req.transformer, req.vae})
    if (!detail::file_exists(f)) throw Error(concat(f, ": no such file"));
  if (!note.empty() && !req.quiet) std::printf("[generate] note: %s\n", note.c_str());

  const TensorStore tw = load_checkpoint(req.transformer);
  const TensorStore tv = load_checkpoint(req.vae);
  if (json) {
    if (same_architecture(json->arch, presets::fashion_mnist))
      return detail::run_arch<presets::fashion_mnist>(req, tw, tv, json->vae, json->rec, default_batch);
    if (same_architecture(json->arch, presets::tiny))
      return detail::run_arch<presets::tiny>(req, tw, tv, json->vae, json->rec, default_batch);
    if (req.model == "fashion_mnist")
      throw Error("the default model's config.json does not describe the compiled fashion_mnist preset");
  }
  if (req.model == "auto") req.model = detail::detect_architecture(tw);
  if (req.model == "d16") return detail::run_arch<presets::d16>(req, tw, tv, VaeConfig::official(), {2.0f, 1200, 0.99f}, default_batch);
  if (req.model == "d20") return detail::run_arch<presets::d20>(req, tw, tv, VaeConfig::official(), {1.5f, 900, 0.96f}, default_batch);
  if (req.model == "d24") return detail::run_arch<presets::d24>(req, tw, tv, VaeConfig::official(), {1.4f, 900, 0.96f}, default_batch);
  if (req.model == "d30") return detail::run_arch<presets::d30>(req, tw, tv, VaeConfig::official(), {1.5f, 900, 0.96f}, default_batch);
  if (req.model == "fashion_mnist") {
    const auto j = load_model_description(std::string(MVAR_DEFAULT_MODEL_DIR) + "/fashion_mnist/config.json");
    return detail::run_arch<presets::fashion_mnist>(req, tw, tv, j.vae, j.rec, default_batch);
  }
  if (req.model == "tiny") return detail::run_arch<presets::tiny>(req, tw, tv, VaeConfig::tiny(), {1.5f, 900, 0.96f}, default_batch);
  throw cli::UsageError(concat("unknown --model '", req.model, "' (auto, d16, d20, d24, d30, tiny, fashion_mnist)"));
}

}  // namespace mvar
