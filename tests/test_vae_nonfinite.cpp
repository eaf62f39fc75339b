// NaN/Inf in a VQVAE file is refused when it is bound, naming the file and the tensor (issue #23
// item 3): before, a NaN in the codebook surfaced as "non-finite logits … the weights contain
// NaN/Inf?" (no file named), and one in the decoder reached to_rgb8's float → byte conversion.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "fixtures_path.hpp"
#include "mvar/io/safetensors.hpp"
#include "mvar/model/model_description.hpp"
#include "mvar/model/quantizer.hpp"
#include "mvar/io/rgb.hpp"
#include "mvar/model/vqvae.hpp"

namespace {

/// A copy of the fixture VAE with element `at` of tensor `name` set to `value`.
std::string poisoned_vae(const std::string& name, std::size_t at, float value, std::vector<std::vector<float>>& keep) {
  const mvar::TensorStore src = mvar::test::load_fixture("tiny.vae.safetensors");
  std::vector<mvar::TensorToWrite> out;
  bool found = false;
  for (const auto& t : src.tensors()) {
    if (t.name == name) {
      REQUIRE(t.dtype == mvar::DType::F32);
      keep.push_back(t.to_float());
      REQUIRE(at < keep.back().size());
      keep.back()[at] = value;
      out.push_back(mvar::tensor_to_write<float>(t.name, t.dtype, t.shape, keep.back()));
      found = true;
    } else {
      out.push_back({t.name, t.dtype, t.shape, std::span<const std::byte>(t.data, t.nbytes)});
    }
  }
  REQUIRE(found);
  const auto path = (std::filesystem::temp_directory_path() / ("mvar_poisoned_vae_" + std::to_string(::getpid()) + ".safetensors")).string();
  mvar::save_safetensors(path, out);
  return path;
}

mvar::VaeConfig fixture_vae() { return mvar::load_model_description(mvar::test::fixture_path("mvar_tiny.config.json")).vae; }
std::vector<int> fixture_patch_nums() {
  const auto a = mvar::load_model_description(mvar::test::fixture_path("mvar_tiny.config.json")).arch;
  return std::vector<int>(a.patch_nums.side.begin(), a.patch_nums.side.begin() + a.patch_nums.count);
}

}  // namespace

TEST_CASE("VQVAE: NaN/Inf in the codebook or a Phi conv is refused by the quantizer, naming file and tensor",
          "[vae][reliability][nan]") {
  const float bad = GENERATE(std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity());
  const char* name = GENERATE("quantize.embedding.weight", "quantize.quant_resi.qresi_ls.2.weight");
  CAPTURE(bad, name);
  std::vector<std::vector<float>> keep;
  const std::string path = poisoned_vae(name, 37, bad, keep);
  const mvar::TensorStore vae = mvar::load_safetensors(path);
  std::filesystem::remove(path);
  REQUIRE_THROWS_WITH(mvar::VectorQuantizer(vae, fixture_patch_nums(), fixture_vae()),
                      Catch::Contains("VectorQuantizer: " + path) && Catch::Contains(std::string("'") + name + "' holds") &&
                          Catch::Contains("at element 37 (NaN/Inf in the weights)"));
}

TEST_CASE("VQVAE: NaN/Inf in the decoder is refused when the decoder is built, naming file and tensor",
          "[vae][reliability][nan]") {
  const char* name = GENERATE("decoder.conv_in.weight", "decoder.norm_out.bias", "post_quant_conv.bias");
  CAPTURE(name);
  std::vector<std::vector<float>> keep;
  const std::string path = poisoned_vae(name, 1, std::numeric_limits<float>::quiet_NaN(), keep);
  const mvar::TensorStore vae = mvar::load_safetensors(path);
  std::filesystem::remove(path);
  REQUIRE_THROWS_WITH(mvar::VqvaeDecoder(vae, fixture_vae()),
                      Catch::Contains("VqvaeDecoder: " + path) && Catch::Contains(std::string("'") + name + "' holds nan at element 1"));
  // The unpoisoned file still binds (control).
  REQUIRE_NOTHROW(mvar::VqvaeDecoder(mvar::test::load_fixture("tiny.vae.safetensors"), fixture_vae()));
}

TEST_CASE("to_rgb8 refuses a NaN pixel instead of converting it (undefined float → byte)", "[vae][reliability][nan]") {
  std::vector<float> img(3 * 2 * 2, 0.25f);
  std::vector<std::uint8_t> rgb(img.size());
  mvar::to_rgb8(mvar::TensorView<const float, 3>(img.data(), {3, 2, 2}), rgb);
  REQUIRE(rgb[0] == std::uint8_t(255.0f * 0.625f));
  img[7] = std::numeric_limits<float>::infinity();  // clamps like any value
  REQUIRE_NOTHROW(mvar::to_rgb8(mvar::TensorView<const float, 3>(img.data(), {3, 2, 2}), rgb));
  img[7] = std::numeric_limits<float>::quiet_NaN();  // channel 1, row 1, column 1
  REQUIRE_THROWS_WITH(mvar::to_rgb8(mvar::TensorView<const float, 3>(img.data(), {3, 2, 2}), rgb),
                      "to_rgb8: pixel (channel 1, row 1, column 1) is NaN — NaN/Inf in the weights?");
}
