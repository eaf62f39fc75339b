// tests/fixtures_path.hpp — where the reference fixtures live and what each fixture run used.
//
// The folder: the environment variable MVAR_FIXTURE_DIR when set (run the built tests on another
// fixture set without reconfiguring), else the CMake cache variable MVAR_FIXTURE_DIR (default
// tests/fixtures). Any set of the same format must pass: tests read every setting of a run —
// labels, batch, cfg, top-k/top-p, seed, whether the trace holds both CFG halves, the
// architecture, the file names — from its <model>_tiny.config.json through fixture_run(), never
// from numbers pasted into the source (tools/make_fixture_variant.py writes such other sets).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mvar/core/error.hpp"
#include "mvar/io/safetensors.hpp"
#include "mvar/model/model_description.hpp"

namespace mvar::test {

inline std::string fixture_dir() {
  if (const char* env = std::getenv("MVAR_FIXTURE_DIR"); env && *env) return env;
  return MVAR_FIXTURE_DIR;
}
inline std::string fixture_path(const std::string& name) { return fixture_dir() + "/" + name; }
inline TensorStore load_fixture(const std::string& name) { return load_safetensors(fixture_path(name)); }

/// One sampling run of the fixture set ("var" or "mvar"), as its config.json records it.
struct FixtureRun {
  std::string model;        // "var" / "mvar"
  ModelDescription desc;    // architecture and VAE sizes (strictly checked reader)
  std::vector<int> labels;  // one per image; batch = labels.size()
  float cfg = 0;
  int top_k = 0;
  float top_p = 0;
  std::uint64_t seed = 0;
  bool cfg_doubled = true;  // the trace's transformer rows: both CFG halves (2B) or the conditional one (B)
  std::string trace_file, greedy_file;

  int batch() const { return int(labels.size()); }
  int rows() const { return cfg_doubled ? 2 * batch() : batch(); }
  int scales() const { return desc.arch.num_scales(); }
  std::vector<int> patch_nums() const {
    return {desc.arch.patch_nums.side.begin(), desc.arch.patch_nums.side.begin() + desc.arch.patch_nums.count};
  }
};

inline FixtureRun fixture_run(const std::string& model) {
  const std::string path = fixture_path(model + "_tiny.config.json");
  FixtureRun r;
  r.model = model;
  r.desc = load_model_description(path);
  std::ifstream in(path);
  const nlohmann::json j = nlohmann::json::parse(in);
  auto need = [&](const char* k) -> const nlohmann::json& {
    if (!j.contains(k) || j[k].is_null()) throw Error(concat(path, ": fixture field '", k, "' is missing"));
    return j[k];
  };
  r.labels = need("labels").get<std::vector<int>>();
  if (r.labels.empty() || need("batch").get<int>() != int(r.labels.size()))
    throw Error(concat(path, ": 'batch' does not match the number of 'labels'"));
  r.cfg = need("cfg").get<float>();
  r.top_k = need("top_k").get<int>();
  r.top_p = need("top_p").get<float>();
  r.seed = need("sample_seed").get<std::uint64_t>();
  r.cfg_doubled = j.value("cfg_doubled_batch", true);
  r.trace_file = need("trace_file").get<std::string>();
  r.greedy_file = need("greedy_file").get<std::string>();
  return r;
}

}  // namespace mvar::test
