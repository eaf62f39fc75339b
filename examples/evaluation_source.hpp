// examples/evaluation_source.hpp — the one place that turns model files into an mvar::ImageSource
// (pipeline/evaluation.hpp) and the RunIdentity recorded with the images: mvar::Pipeline opens the
// files and decides preset and mode, its ImageStream draws batches (both phases resident: an
// evaluation run alternates sampling and decoding batch after batch).
#pragma once

#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "mvar/mvar.hpp"

namespace evaluation_cli {

struct ModelRequest {
  std::string transformer, vae;    // empty: the default model in `default_model_dir`
  std::string default_model_dir;   // …/models/fashion_mnist
  std::string model = "auto";      // a preset name or auto
  std::optional<mvar::Mode> mode;  // nullopt: from the checkpoint
  std::string weights = "packed";  // inplace | packed | bf16 | int8
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

/// Opens the model a request names and returns its ImageSource and identity.
inline OpenedSource open_image_source(ModelRequest r) {
  if (r.transformer.empty() != r.vae.empty()) throw mvar::Error("give both --transformer and --vae, or neither (the default model)");
  if (r.transformer.empty()) {
    r.transformer = r.default_model_dir + "/mvar.safetensors";
    r.vae = r.default_model_dir + "/vae.safetensors";
  }
  mvar::PipelineOptions po;
  po.transformer = r.transformer;
  po.vae = r.vae;
  po.model = r.model;
  po.mode = r.mode;
  po.layout = r.weights == "bf16"      ? mvar::WeightLayout::PackedBF16
              : r.weights == "int8"    ? mvar::WeightLayout::PackedInt8
              : r.weights == "inplace" ? mvar::WeightLayout::InPlace
                                       : mvar::WeightLayout::PackedF32;
  po.threads = r.threads;
  auto pipeline = std::make_shared<mvar::Pipeline>(po);
  mvar::GenerateRequest settings;
  settings.seed = r.seed;
  settings.cfg = r.cfg;
  settings.top_k = r.top_k;
  settings.top_p = r.top_p;
  auto stream = std::make_shared<mvar::ImageStream>(*pipeline, r.max_batch, settings);

  OpenedSource s;
  const mvar::ModelInfo& info = pipeline->info();
  const mvar::SampleOptions& o = stream->settings();
  s.side = info.image_side;
  s.num_classes = info.num_classes;
  s.source = [pipeline, stream](std::span<const int> labels, std::uint64_t first, std::span<std::uint8_t> out) {
    stream->draw(labels, first, out);
  };
  // Everything the pixels depend on; nothing they do not (threads, batch).
  namespace fs = std::filesystem;
  s.identity["transformer"] = fs::path(r.transformer).filename().string();
  s.identity["transformer_bytes"] = std::to_string(fs::file_size(r.transformer));
  s.identity["transformer_crc32"] = file_crc32(r.transformer);
  s.identity["vae"] = fs::path(r.vae).filename().string();
  s.identity["vae_bytes"] = std::to_string(fs::file_size(r.vae));
  s.identity["vae_crc32"] = file_crc32(r.vae);
  s.identity["model"] = info.preset;
  s.identity["mode"] = mvar::mode_name(info.mode);
  s.identity["weights"] = r.weights;
  // The kernels' code path (kernels/cpu_dispatch.hpp): bits are identical for any thread count
  // within one path, not across paths — shards drawn on machines with different paths are refused
  // at merge rather than mixed (cap them to a common one with --isa / MVAR_ISA).
  s.identity["kernels"] = mvar::isa_name(mvar::active_isa());
  s.identity["decoder"] = po.winograd ? (po.large_tiles ? "winograd" : "winograd2") : "direct";
  s.identity["cfg"] = mvar::concat(o.cfg);
  s.identity["top_k"] = std::to_string(o.top_k);
  s.identity["top_p"] = mvar::concat(o.top_p);
  s.identity["seed"] = std::to_string(o.seed);
  s.identity["mvar_version"] = std::string(mvar::kVersion);
  s.description = mvar::concat(info.preset, " (", mvar::mode_name(info.mode), " mode: ", info.mode_reason, "; ", r.weights,
                               " weights), cfg ", o.cfg, ", top-k ", o.top_k, ", top-p ", o.top_p, ", seed ", o.seed);
  return s;
}

}  // namespace evaluation_cli
