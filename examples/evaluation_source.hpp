// examples/evaluation_source.hpp — the one place that turns model files into an mvar::ImageSource
// (pipeline/evaluation.hpp) for the `evaluate` programs, until the library's Pipeline offers
// "generate these labels with RNG streams first_index, first_index + 1, … into uint8 HWC images".
// Swap open_image_source() for that call; nothing else in evaluate.cpp knows about models.
//
// Unlike `generate` (which frees the transformer before it builds the decoder), an evaluation run
// alternates sampling and decoding batch after batch, so both stay resident: the default model
// adds ≈ 1 MB of decoder, the official VAE ≈ 0.2 GB beside a d16 transformer's 1.2 GB.
#pragma once

#include <zlib.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mvar/mvar.hpp"
#include "mvar/pipeline/evaluation.hpp"

#ifndef MVAR_VERSION_STRING
#define MVAR_VERSION_STRING "unknown"
#endif

namespace evaluation_cli {

struct ModelRequest {
  std::string transformer, vae;   // empty: the default model in `default_model_dir`
  std::string default_model_dir;  // …/models/fashion_mnist
  std::string model = "auto";     // auto (config.json / the default model), d16
  std::string mode = "mvar";      // mvar | var
  std::string weights = "packed"; // inplace | packed | bf16
  std::optional<float> cfg, top_p;
  std::optional<int> top_k;
  std::uint64_t seed = 0;
  int threads = 1, max_batch = 16;
};

struct OpenedSource {
  mvar::ImageSource source;
  mvar::RunIdentity identity;
  int side = 0, num_classes = 0;
  std::string description;  // one line for the banner
};

/// CRC-32 of a whole file (zlib, streamed): identifies the weights in the run's settings.
inline std::string file_crc32(const std::string& path) {
  const mvar::MappedFile f(path);
  std::uint32_t crc = 0;
  for (std::size_t off = 0; off < f.size(); off += std::size_t(1) << 26)
    crc = mvar::crc32_update(crc, std::span(f.data() + off, std::min(f.size() - off, std::size_t(1) << 26)));
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08x", crc);
  return buf;
}

template <mvar::ModelConfig Cfg, class Trajectory>
struct ModelSource {
  mvar::TensorStore tw, tv;
  mvar::Transformer<Cfg> model;
  mvar::VectorQuantizer quant;
  mvar::VqvaeDecoder decoder;
  mvar::ThreadPool pool;
  Trajectory traj;
  mvar::Sampler<mvar::Transformer<Cfg>, Trajectory> sampler;
  mvar::Workspace dws;
  mvar::Buffer<float> img;
  mvar::SampleOptions opts;
  int side;

  static std::vector<int> patch_nums() {
    std::vector<int> pn;
    for (int s = 0; s < Cfg.num_scales(); ++s) pn.push_back(Cfg.patch_nums[s]);
    return pn;
  }

  ModelSource(mvar::TensorStore tw_, mvar::TensorStore tv_, const mvar::VaeConfig& vcfg, mvar::WeightLayout layout,
              const mvar::SampleOptions& o, int threads, int max_batch)
      : tw(std::move(tw_)), tv(std::move(tv_)), model(tw, layout),
        quant(tv, patch_nums(), Cfg.cvae, Cfg.vocab, vcfg.n_phi, vcfg.quant_resi),
        decoder(tv, vcfg, mvar::VqvaeDecoder::Options{true, layout == mvar::WeightLayout::PackedBF16 ? mvar::Precision::BF16 : mvar::Precision::F32,
                                                       true, Cfg.patch_nums.last()}),
        pool(threads), traj(Cfg), sampler(model, quant, traj, pool, max_batch),
        dws(decoder.workspace_bytes(Cfg.patch_nums.last())), opts(o), side(vcfg.image_side(Cfg.patch_nums.last())) {
    img = mvar::Buffer<float>(std::size_t(3) * side * side);
  }

  void draw(std::span<const int> labels, std::uint64_t first, std::span<std::uint8_t> out) {
    opts.first_index = first;
    const mvar::Generation g = sampler.generate(labels, opts);
    const std::size_t one = std::size_t(side) * side * 3;
    for (std::size_t b = 0; b < labels.size(); ++b) {
      decoder.decode(pool, g.image_fhat(int(b)), mvar::TensorView<float, 3>(img.data(), {3, side, side}), dws);
      mvar::to_rgb8(mvar::TensorView<const float, 3>(img.data(), {3, side, side}), out.subspan(b * one, one));
    }
  }
};

template <mvar::ModelConfig Cfg>
OpenedSource open_preset(const ModelRequest& r, const mvar::VaeConfig& vcfg, const mvar::Recommended& rec) {
  mvar::SampleOptions o;
  o.cfg = r.cfg.value_or(rec.cfg);
  o.top_k = r.top_k.value_or(rec.top_k);
  o.top_p = r.top_p.value_or(rec.top_p);
  o.seed = r.seed;
  const std::vector<int> probe{0};
  mvar::validate_options(o, probe, Cfg.num_classes, 1);
  const auto layout = r.weights == "bf16" ? mvar::WeightLayout::PackedBF16
                      : r.weights == "inplace" ? mvar::WeightLayout::InPlace
                                               : mvar::WeightLayout::PackedF32;
  mvar::VqvaeDecoder::check_weights(mvar::load_checkpoint(r.vae), vcfg);
  OpenedSource s;
  s.num_classes = Cfg.num_classes;
  auto make = [&](auto* tag) {
    using Traj = std::remove_pointer_t<decltype(tag)>;
    auto st = std::make_shared<ModelSource<Cfg, Traj>>(mvar::load_checkpoint(r.transformer), mvar::load_checkpoint(r.vae), vcfg,
                                                       layout, o, r.threads, r.max_batch);
    s.side = st->side;
    s.source = [st](std::span<const int> labels, std::uint64_t first, std::span<std::uint8_t> out) { st->draw(labels, first, out); };
    s.description = mvar::concat(mvar::layout_name(st->model.layout()), ", decoder ", st->decoder.conv_form());
    s.identity["decoder"] = st->decoder.conv_form();
  };
  if (r.mode == "var") make(static_cast<mvar::FullPrefix*>(nullptr));
  else make(static_cast<mvar::ScaleMarkov*>(nullptr));
  // Everything the pixels depend on; nothing they do not (threads, batch).
  namespace fs = std::filesystem;
  s.identity["transformer"] = fs::path(r.transformer).filename().string();
  s.identity["transformer_bytes"] = std::to_string(fs::file_size(r.transformer));
  s.identity["transformer_crc32"] = file_crc32(r.transformer);
  s.identity["vae"] = fs::path(r.vae).filename().string();
  s.identity["vae_bytes"] = std::to_string(fs::file_size(r.vae));
  s.identity["vae_crc32"] = file_crc32(r.vae);
  s.identity["model"] = r.model;
  s.identity["mode"] = r.mode;
  s.identity["weights"] = r.weights;
  s.identity["cfg"] = mvar::concat(o.cfg);
  s.identity["top_k"] = std::to_string(o.top_k);
  s.identity["top_p"] = mvar::concat(o.top_p);
  s.identity["seed"] = std::to_string(o.seed);
  s.identity["mvar_version"] = MVAR_VERSION_STRING;
  s.description = mvar::concat(r.model, " (", s.description, "), ", r.mode, " mode, cfg ", o.cfg, ", top-k ", o.top_k,
                               ", top-p ", o.top_p, ", seed ", o.seed);
  return s;
}

/// Opens the model a request names and returns its ImageSource and identity.
inline OpenedSource open_image_source(ModelRequest r) {
  if (r.transformer.empty() != r.vae.empty()) throw mvar::Error("give both --transformer and --vae, or neither (the default model)");
  if (r.transformer.empty()) {
    r.transformer = r.default_model_dir + "/mvar.safetensors";
    r.vae = r.default_model_dir + "/vae.safetensors";
    if (r.model == "auto") r.model = "fashion_mnist";
  }
  for (const auto& f : {r.transformer, r.vae})
    if (!std::filesystem::exists(f)) throw mvar::Error(mvar::concat(f, ": no such file"));
  const std::string json = (std::filesystem::path(r.transformer).parent_path() / "config.json").string();
  if (r.model == "fashion_mnist" || (r.model == "auto" && std::filesystem::exists(json))) {
    const auto d = mvar::load_model_description(json);
    if (!mvar::same_architecture(d.arch, mvar::presets::fashion_mnist))
      throw mvar::Error(mvar::concat(json, ": describes no architecture the evaluate program is compiled for (fashion_mnist; or --model d16)"));
    r.model = "fashion_mnist";
    return open_preset<mvar::presets::fashion_mnist>(r, d.vae, d.rec);
  }
  if (r.model == "d16" || r.model == "auto") {
    r.model = "d16";
    return open_preset<mvar::presets::d16>(r, mvar::VaeConfig::official(), mvar::Recommended{2.0f, 1200, 0.99f});
  }
  throw mvar::Error(mvar::concat("--model '", r.model, "': the evaluate program knows auto, fashion_mnist and d16"));
}

}  // namespace evaluation_cli
