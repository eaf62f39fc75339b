// mvar/model/vae_config.hpp — VaeConfig: the sizes of the VQVAE's quantizer and decoder (SPEC §2.1),
// with presets for the official `vae_ch160v4096z32` and for the tiny model of the test fixtures;
// and the weight checker both the quantizer and the decoder bind through (every problem of a file
// is collected, then reported in one mvar::Error).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "mvar/core/error.hpp"
#include "mvar/io/dtype.hpp"
#include "mvar/io/tensor_store.hpp"

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

namespace detail {

/// Collects every missing / mis-shaped / non-float tensor of a binding, then throws once.
class WeightChecker {
 public:
  WeightChecker(const TensorStore& store, std::string what) : store_(store), what_(std::move(what)) {}

  /// The tensor if present with this exact shape and a float dtype; otherwise notes the problem.
  const TensorRef* get(const std::string& name, const std::vector<std::int64_t>& shape) {
    const TensorRef* t = store_.find(name);
    const std::string want = TensorRef{"", DType::F32, shape}.shape_string();
    if (!t) {
      problems_.push_back(concat("missing '", name, "' (expected shape ", want, ")"));
      return nullptr;
    }
    if (t->shape != shape) {
      problems_.push_back(concat("'", name, "' has shape ", t->shape_string(), ", expected ", want));
      return nullptr;
    }
    if (t->dtype != DType::F32 && t->dtype != DType::F16 && t->dtype != DType::BF16) {
      problems_.push_back(concat("'", name, "' has dtype ", dtype_name(t->dtype), ", expected F32/F16/BF16"));
      return nullptr;
    }
    return t;
  }
  /// Notes the first NaN/±Inf of a float tensor (VQVAE weights are read in full when bound, so
  /// the scan costs one pass; a non-finite weight would otherwise surface later as "non-finite
  /// logits" or an undefined float → byte conversion, without naming this file).
  void check_finite(const TensorRef& t) {
    const std::size_t n = static_cast<std::size_t>(t.numel());
    for (std::size_t i = 0; i < n; ++i) {
      const float v = load_as_float(t.data, t.dtype, i);
      if (!std::isfinite(v)) {
        problems_.push_back(concat("'", t.name, "' holds ", v, " at element ", i, " (NaN/Inf in the weights)"));
        return;
      }
    }
  }
  /// Notes a problem found by the caller (e.g. an unexpected tensor).
  void note(std::string problem) { problems_.push_back(std::move(problem)); }
  /// Throws one mvar::Error listing all problems noted so far (nothing when there are none).
  void throw_if_any() const {
    if (problems_.empty()) return;
    std::string msg = concat(what_, ": ", store_.source(), ": ", problems_.size(), " problem(s) with the weights:");
    for (const auto& p : problems_) msg += "\n  " + p;
    throw Error(msg);
  }

 private:
  const TensorStore& store_;
  std::string what_;
  std::vector<std::string> problems_;
};

}  // namespace detail
}  // namespace mvar
