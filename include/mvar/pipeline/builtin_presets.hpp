// mvar/pipeline/builtin_presets.hpp — the one table of the models mvar ships knowledge of: the
// official zoo (VAR d16–d30 and the MVAR checkpoints of the same shapes at 256 px, VAR-d36 at
// 512 px), the fixtures' tiny models and the small default model of models/fashion_mnist. Each entry instantiates
// Transformer<Cfg> for both trajectories (preset.hpp), so this header is where those
// instantiations are compiled; a program that runs only its own model includes preset.hpp alone.
//
// Recommended settings (SPEC §1.9, §3.4): VAR's README gives cfg 1.5, top-k 900, top-p 0.96 for
// its evaluation runs (more_smooth off; d36 included); MVAR's README gives per checkpoint d16† 2.0 / 1200 / 0.99, d16 (from
// scratch, "mvar-d16.pth") 2.7 / 1200 / 0.99, d20† 1.5 / 900 / 0.96, d24† 1.4 / 900 / 0.96.
#pragma once

#include <string>
#include <vector>

#include "mvar/model/config.hpp"
#include "mvar/model/vae_config.hpp"
#include "mvar/pipeline/imagenet_classes.hpp"
#include "mvar/pipeline/preset.hpp"

namespace mvar {

inline std::vector<std::string> imagenet_class_names() { return {kImageNetClasses.begin(), kImageNetClasses.end()}; }

/// A fresh copy of the built-in table (add your own presets to the copy).
inline PresetTable builtin_presets() {
  const Recommended var_eval{1.5f, 900, 0.96f};
  PresetTable t;
  auto official = [&](Preset p, int params_m) {
    p.description = concat("official VAR/MVAR-", p.name, " (", params_m, " M parameters, 256 px, ImageNet 1000 classes)");
    p.class_names = imagenet_class_names();
    t.add(std::move(p));
  };
  Preset d16 = make_preset<presets::d16>("d16", VaeConfig::official(), {2.0f, 1200, 0.99f}, var_eval);
  d16.recommended_by_file = {{"mvar-d16", {2.7f, 1200, 0.99f}}};
  official(std::move(d16), 310);
  official(make_preset<presets::d20>("d20", VaeConfig::official(), {1.5f, 900, 0.96f}, var_eval), 600);
  official(make_preset<presets::d24>("d24", VaeConfig::official(), {1.4f, 900, 0.96f}, var_eval), 1000);
  official(make_preset<presets::d30>("d30", VaeConfig::official(), {1.5f, 900, 0.96f}, var_eval), 2010);
  // VAR-d36: shared AdaLN, the 512-px schedule, the same VQVAE (a 32×32 latent → 512×512).
  Preset d36 = make_preset<presets::d36>("d36", VaeConfig::official(), var_eval, var_eval);
  d36.description = "official VAR-d36 (2354 M parameters, shared AdaLN, 512 px, ImageNet 1000 classes)";
  d36.class_names = imagenet_class_names();
  t.add(std::move(d36));
  t.add(make_preset<presets::tiny>("tiny", VaeConfig::tiny(), {1.5f, 900, 0.96f}, var_eval,
                                   "the test fixtures' tiny random model (depth 2, width 128)"));
  t.add(make_preset<presets::saln512_tiny>("saln512_tiny", VaeConfig::tiny(), var_eval, var_eval,
                                           "the test fixtures' tiny shared-AdaLN model on the 512-px schedule"));
  // The default model's VAE sizes and settings come from its config.json (models/fashion_mnist);
  // these are the same values, for a run that names the preset without the description file.
  VaeConfig fm_vae;
  fm_vae.ch = 32;
  fm_vae.ch_mult = {1, 2, 2};
  Preset fm = make_preset<presets::fashion_mnist>("fashion_mnist", fm_vae, {3.0f, 100, 0.95f}, std::nullopt,
                                                  "the default model: class-conditional MVAR trained on Fashion-MNIST");
  fm.input_inner = 28;  // 28×28 garments padded into 32×32 (config.json: crop 28, pad −1), grey
  fm.grayscale = true;
  fm.class_names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
  t.add(std::move(fm));
  return t;
}

}  // namespace mvar
