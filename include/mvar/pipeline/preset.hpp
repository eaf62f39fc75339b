// mvar/pipeline/preset.hpp — the run-time face of the compile-time models: one Preset per model
// the pipeline can run (name, ModelConfig, VaeConfig, recommended settings, how to recognise its
// files, class names) and the bridge that instantiates Transformer<Cfg> for it.
//
// Compile-time sizes stay the fast path: make_preset<Cfg>() is where Transformer<Cfg> and the
// Sampler of both trajectories are instantiated; everything above it works on a PresetTable at run
// time. A user adds a model of their own without editing the library:
//
//   constexpr mvar::ModelConfig mine = …;                        // a structural constant
//   auto table = mvar::builtin_presets();
//   table.add(mvar::make_preset<mine>("mine", vae_config, {.cfg = 2.0f}));
//   mvar::Pipeline p(files, options, table);
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mvar/core/error.hpp"
#include "mvar/core/parallel.hpp"
#include "mvar/io/tensor_store.hpp"
#include "mvar/model/config.hpp"
#include "mvar/model/model_description.hpp"
#include "mvar/model/quantizer.hpp"
#include "mvar/model/transformer.hpp"
#include "mvar/model/vae_config.hpp"
#include "mvar/model/weights.hpp"
#include "mvar/sampling/sampler.hpp"
#include "mvar/sampling/trajectory.hpp"

namespace mvar {

/// The trajectory a run follows: MVAR (scale-Markov + neighbourhood attention, no K/V cache) or
/// VAR (full prefix + K/V cache). VAR and MVAR checkpoints share one key set, so the mode is a
/// property of the checkpoint the file cannot show by its shapes (pipeline.hpp decides it).
enum class Mode { Mvar, Var };

inline const char* mode_name(Mode m) { return m == Mode::Var ? "var" : "mvar"; }

/// The sampling phase of one model behind a run-time interface: the transformer (packed once),
/// a trajectory and a sampler sized for max_batch images. Lives as long as sampling goes on; the
/// pipeline destroys it before the decoder is built so the two phases never share memory.
class SamplingEngine {
 public:
  virtual ~SamplingEngine() = default;
  virtual Generation generate(std::span<const int> labels, const SampleOptions& opts) = 0;
  virtual std::size_t weight_bytes() const = 0;
  virtual WeightLayout layout() const = 0;
  virtual std::size_t workspace_bytes() const = 0;
};

/// What make_engine needs: the transformer file, the VQ stage, the trajectory, the weight layout.
struct EngineRequest {
  const TensorStore& transformer;
  const VectorQuantizer& quant;
  Mode mode = Mode::Mvar;
  WeightLayout layout = WeightLayout::PackedF32;
  ThreadPool& pool;
  int max_batch = 1;
};

/// A model the pipeline can run.
struct Preset {
  std::string name;          // "d16", "fashion_mnist", …: what --model takes
  std::string description;   // one line for banners and --help
  ModelConfig arch;
  VaeConfig vae;
  Recommended recommended_mvar, recommended_var;  // sampling settings per trajectory
  /// Official checkpoints whose own settings differ from the preset's (file stem prefix → settings),
  /// e.g. the from-scratch "mvar-d16" against the fine-tuned "mvar-finetune-d16".
  std::vector<std::pair<std::string, Recommended>> recommended_by_file;
  std::vector<std::string> class_names;  // empty: labels are numbers only
  /// How an input image fills the model's square (encoding, editing): resized to input_inner
  /// pixels (0: the whole side) centred on a −1 canvas; grayscale models average the channels.
  int input_inner = 0;
  bool grayscale = false;
  /// Instantiates Transformer<Cfg> + Sampler (make_preset fills it).
  std::function<std::unique_ptr<SamplingEngine>(const EngineRequest&)> make_engine;

  /// Settings for a run in `mode` of the transformer file `file_stem` (no extension, no folder).
  Recommended recommended(Mode mode, std::string_view file_stem = {}) const {
    for (const auto& [prefix, rec] : recommended_by_file)
      if (mode == Mode::Mvar && file_stem.substr(0, prefix.size()) == prefix) return rec;
    return mode == Mode::Var ? recommended_var : recommended_mvar;
  }
  int image_side() const { return vae.image_side(arch.patch_nums.last()); }
  /// True when a transformer file with these shapes is this preset's architecture.
  bool matches(const TransformerFileShape& f) const {
    return f.depth == arch.depth && f.width == arch.width && (f.heads == 0 || f.heads == arch.heads) &&
           f.num_classes == arch.num_classes && f.shared_aln == arch.shared_aln && (f.seq_len == 0 || f.seq_len == arch.seq_len());
  }
};

namespace detail {

template <ModelConfig Cfg, class Trajectory>
class EngineFor final : public SamplingEngine {
 public:
  explicit EngineFor(const EngineRequest& r)
      : model_(r.transformer, r.layout), traj_(Cfg), sampler_(model_, r.quant, traj_, r.pool, r.max_batch) {}
  Generation generate(std::span<const int> labels, const SampleOptions& opts) override {
    return sampler_.generate(labels, opts);
  }
  std::size_t weight_bytes() const override { return model_.weight_bytes(); }
  WeightLayout layout() const override { return model_.layout(); }
  std::size_t workspace_bytes() const override { return sampler_.workspace_bytes(); }

 private:
  Transformer<Cfg> model_;
  Trajectory traj_;
  Sampler<Transformer<Cfg>, Trajectory> sampler_;
};

}  // namespace detail

/// A Preset whose engine runs Transformer<Cfg> (the compile-time fast path).
template <ModelConfig Cfg>
Preset make_preset(std::string name, VaeConfig vae, Recommended mvar_settings, std::optional<Recommended> var_settings = {},
                   std::string description = {}) {
  Preset p;
  p.name = std::move(name);
  p.description = std::move(description);
  p.arch = Cfg;
  p.vae = std::move(vae);
  p.recommended_mvar = mvar_settings;
  p.recommended_var = var_settings.value_or(mvar_settings);
  p.make_engine = [](const EngineRequest& r) -> std::unique_ptr<SamplingEngine> {
    // The batch is refused before the transformer is packed, when its workspace cannot fit.
    Sampler<Transformer<Cfg>, ScaleMarkov>::check_memory(r.max_batch);
    if (r.mode == Mode::Var) return std::make_unique<detail::EngineFor<Cfg, FullPrefix>>(r);
    return std::make_unique<detail::EngineFor<Cfg, ScaleMarkov>>(r);
  };
  return p;
}

/// The models a pipeline can run, looked up by name or recognised from a checkpoint.
class PresetTable {
 public:
  /// Adds a preset; a later one with the same name replaces the earlier.
  PresetTable& add(Preset p) {
    std::erase_if(presets_, [&](const Preset& q) { return q.name == p.name; });
    presets_.push_back(std::move(p));
    return *this;
  }
  const std::vector<Preset>& presets() const { return presets_; }
  const Preset* find(std::string_view name) const {
    for (const auto& p : presets_)
      if (p.name == name) return &p;
    return nullptr;
  }
  /// "d16, d20, …" for messages.
  std::string names() const {
    std::string s;
    for (const auto& p : presets_) s += (s.empty() ? "" : ", ") + p.name;
    return s;
  }
  /// The preset whose architecture equals `arch` (a config.json's), or nullptr.
  const Preset* find_architecture(const ModelConfig& arch) const {
    for (const auto& p : presets_)
      if (same_architecture(p.arch, arch)) return &p;
    return nullptr;
  }
  /// The preset a transformer file's shapes describe; throws naming the file when none or the file
  /// is not a transformer.
  const Preset& recognise(const TensorStore& st) const {
    const auto f = transformer_file_shape(st);
    if (!f) throw Error(concat(st.source(), ": not a VAR/MVAR transformer checkpoint (no 'class_emb.weight')"));
    for (const auto& p : presets_)
      if (p.matches(*f)) return p;
    throw Error(concat(st.source(), ": unknown architecture (depth ", f->depth, ", width ", f->width, ", ", f->num_classes,
                       " classes); pass --model with one of ", names(), " or add a preset"));
  }

 private:
  std::vector<Preset> presets_;
};

}  // namespace mvar
