// mvar/model/vae_config.hpp — VaeConfig: the sizes of the VQVAE's quantizer and decoder (SPEC §2.1),
// with presets for the official `vae_ch160v4096z32` and for the tiny model of the test fixtures.
// Binding goes through detail::WeightChecker (model/weight_checker.hpp), as every binder does.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "mvar/core/error.hpp"
#include "mvar/io/dtype.hpp"
#include "mvar/io/tensor_store.hpp"
#include "mvar/model/weight_checker.hpp"

namespace mvar {

struct VaeConfig {
  int cvae = 32;                       // latent channels (z_channels = codebook width)
  int vocab = 4096;                    // codebook entries
  int ch = 160;                        // base channel count of the decoder
  std::vector<int> ch_mult{1, 1, 2, 2, 4};  // channels of level i = ch·ch_mult[i]; its length = levels
  int num_res_blocks = 2;              // each decoder level runs num_res_blocks + 1 ResnetBlocks
  bool using_sa = true;                // AttnBlocks after each ResnetBlock of the lowest level
  bool using_mid_sa = true;            // AttnBlock between the two mid ResnetBlocks
  int n_phi = 4;                       // partially shared Phi convolutions of the quantizer
  float quant_resi = 0.5f;             // Phi mix: (1 − r)·u + r·conv(u)

  int levels() const { return static_cast<int>(ch_mult.size()); }
  /// Image side for a latent side P: P · 2^(levels − 1).
  int image_side(int latent_side) const { return latent_side << (levels() - 1); }

  /// Throws mvar::Error when a size cannot describe a decoder (GroupNorm needs multiples of 32).
  void validate() const {
    std::string bad;
    if (cvae < 1 || vocab < 1 || ch < 1 || num_res_blocks < 0 || n_phi < 1 || ch_mult.empty())
      bad = "sizes must be positive and ch_mult non-empty";
    for (int m : ch_mult)
      if (m < 1 || (ch * m) % 32 != 0) bad = concat("every ch·ch_mult must be a positive multiple of 32 (GroupNorm groups), got ch=", ch);
    if (!bad.empty()) throw Error("VaeConfig: " + bad);
  }

  /// The official VQVAE (vae_ch160v4096z32.pth).
  static VaeConfig official() { return {}; }
  /// The fixtures' tiny VQVAE (tests/fixtures/README.md): ch 32, otherwise official.
  static VaeConfig tiny() {
    VaeConfig c;
    c.ch = 32;
    return c;
  }
};

}  // namespace mvar
