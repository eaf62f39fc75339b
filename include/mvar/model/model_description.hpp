// mvar/model/model_description.hpp — reads a model directory's config.json (the format of
// models/fashion_mnist/config.json and of the fixtures' *.config.json): the transformer's
// architecture as a ModelConfig (to check against a compiled preset), the VQVAE's VaeConfig and
// the recommended sampling settings. Missing or malformed fields are an mvar::Error naming them.
#pragma once

#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mvar/core/error.hpp"
#include "mvar/model/config.hpp"
#include "mvar/model/vae_config.hpp"

namespace mvar {

/// Sampling settings a model recommends (SPEC §1.9, §3.4 for the official ones).
struct Recommended {
  float cfg = 1.5f;
  int top_k = 900;
  float top_p = 0.96f;
};

struct ModelDescription {
  std::string model;  // "var" or "mvar" where the file says (its "model" field), else empty
  ModelConfig arch;
  VaeConfig vae;
  Recommended rec;
  std::vector<std::string> class_names;
};

inline ModelDescription load_model_description(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(concat(path, ": cannot open"));
  nlohmann::json j;
  try {
    in >> j;
  } catch (const std::exception& e) {
    throw Error(concat(path, ": not valid JSON: ", e.what()));
  }
  ModelDescription m;
  try {
    if (j.contains("model") && j["model"].is_string()) m.model = j["model"].get<std::string>();
    m.arch.depth = j.at("depth");
    m.arch.width = j.at("embed_dim");
    m.arch.heads = j.at("num_heads");
    m.arch.mlp_ratio = int(j.at("mlp_ratio").get<double>());
    m.arch.vocab = j.at("vocab_size");
    m.arch.cvae = j.at("Cvae");
    m.arch.num_classes = j.at("num_classes");
    m.arch.patch_nums = PatchNums{};
    for (int p : j.at("patch_nums")) m.arch.patch_nums.side[std::size_t(m.arch.patch_nums.count++)] = p;
    if (j.contains("kernel_size") && !j["kernel_size"].is_null()) m.arch.kernel = j["kernel_size"];
    if (j.contains("refine_step") && !j["refine_step"].is_null()) m.arch.refine_step = j["refine_step"];
    m.vae.cvae = m.arch.cvae;
    m.vae.vocab = m.arch.vocab;
    m.vae.ch = j.at("vae_ch");
    m.vae.ch_mult = j.at("vae_ch_mult").get<std::vector<int>>();
    m.vae.num_res_blocks = j.at("vae_num_res_blocks");
    m.vae.using_sa = j.value("vae_using_sa", true);
    m.vae.using_mid_sa = j.value("vae_using_mid_sa", true);
    m.vae.n_phi = j.value("share_quant_resi", 4);
    m.vae.quant_resi = j.value("quant_resi", 0.5f);
    if (j.contains("recommended")) {
      m.rec.cfg = j["recommended"].value("cfg", m.rec.cfg);
      m.rec.top_k = j["recommended"].value("top_k", m.rec.top_k);
      m.rec.top_p = j["recommended"].value("top_p", m.rec.top_p);
    }
    if (j.contains("class_names")) m.class_names = j["class_names"].get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(concat(path, ": missing or malformed field: ", e.what()));
  }
  return m;
}

/// True when two configurations describe the same transformer.
constexpr bool same_architecture(const ModelConfig& a, const ModelConfig& b) {
  if (a.patch_nums.count != b.patch_nums.count) return false;
  for (int s = 0; s < a.patch_nums.count; ++s)
    if (a.patch_nums[s] != b.patch_nums[s]) return false;
  return a.depth == b.depth && a.width == b.width && a.heads == b.heads && a.mlp_ratio == b.mlp_ratio &&
         a.vocab == b.vocab && a.cvae == b.cvae && a.num_classes == b.num_classes && a.kernel == b.kernel &&
         a.refine_step == b.refine_step;
}


}  // namespace mvar
