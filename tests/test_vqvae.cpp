// VqvaeDecoder (model/vqvae.hpp): decodes the traces' final f̂ with the tiny VAE and compares the
// float image and the 8-bit image with the official outputs; binding errors; to_rgb8 rules;
// identical bits for any thread count.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "fixtures_path.hpp"
#include "mvar/io/rgb.hpp"
#include "mvar/model/vqvae.hpp"
#include "reference/vae_ref.hpp"
#include "model_test_util.hpp"

using mvar::TensorView;

namespace {

// The fixtures README measures the float32 reference within 4.1e-6 of float64 on img_dec and
// suggests atol 5e-5 for a float32 implementation with a different summation order.
constexpr double kImgTol = 5e-5;
// img_u8 truncates 255·y: values within kImgTol of a step boundary may land one level off. The README
// allows ±1 on at most ~0.1 % of the values.
constexpr double kU8MaxOffFraction = 1e-3;

struct Decoded {
  std::vector<float> img;
  std::vector<std::uint8_t> u8;
};

// Decodes image `b` of the trace's final f̂ [B, 32, 16, 16] (the fixture format's last scale).
Decoded decode_trace(const mvar::VqvaeDecoder& dec, const mvar::TensorStore& trace, int threads, int b = 0) {
  const auto all = trace.at("fhat.s9").to_float();
  REQUIRE(all.size() >= std::size_t(b + 1) * 32 * 16 * 16);
  const std::vector<float> fhat(all.begin() + std::ptrdiff_t(b) * 32 * 16 * 16, all.begin() + std::ptrdiff_t(b + 1) * 32 * 16 * 16);
  mvar::ThreadPool pool(threads);
  mvar::Workspace ws(dec.workspace_bytes(16));
  Decoded d{std::vector<float>(3 * 256 * 256), std::vector<std::uint8_t>(256 * 256 * 3)};
  const TensorView<const float, 3> img(d.img.data(), {3, 256, 256});
  dec.decode(pool, TensorView<const float, 3>(fhat.data(), {32, 16, 16}), TensorView<float, 3>(d.img.data(), {3, 256, 256}), ws);
  REQUIRE(ws.used() == 0);
  REQUIRE(ws.high_water() <= dec.workspace_bytes(16));
  mvar::to_rgb8(img, d.u8);
  return d;
}

}  // namespace

TEST_CASE("tiny VQVAE decoder reproduces img_dec and img_u8 of both traces", "[model][vqvae][fixture]") {
  const auto vae = mvar::test::load_fixture("tiny.vae.safetensors");
  // Both convolution forms: the default (Winograd at the 32…256-pixel levels on AVX-512 builds)
  // and the direct kernel everywhere.
  const bool winograd = GENERATE(true, false);
  CAPTURE(winograd);
  const mvar::VqvaeDecoder dec(vae, mvar::VaeConfig::tiny(), mvar::VqvaeDecoder::Options{winograd});
  REQUIRE(dec.image_side(16) == 256);
  for (const char* kind : {"var", "mvar"}) {
    SECTION(kind) {
      const mvar::test::FixtureRun run = mvar::test::fixture_run(kind);  // file and batch from its config.json
      const auto trace = mvar::test::load_fixture(run.trace_file);
      const auto want_all = trace.at("img_dec").to_float();       // [B, 3, 256, 256]
      const auto want_u8_all = trace.at("img_u8").to_int();       // [B, 256, 256, 3] HWC
      REQUIRE(want_all.size() == std::size_t(run.batch()) * 3 * 256 * 256);
      REQUIRE(want_u8_all.size() == want_all.size());
      for (int b = 0; b < run.batch(); ++b) {
        CAPTURE(b);
        const auto d = decode_trace(dec, trace, 2, b);
        const float* want = want_all.data() + std::size_t(b) * d.img.size();
        const std::int64_t* want_u8 = want_u8_all.data() + std::size_t(b) * d.u8.size();
        double m = 0;
        for (std::size_t i = 0; i < d.img.size(); ++i) m = mvar::test::nan_max(m, std::abs(double(d.img[i]) - want[i]));
        CAPTURE(m);
        REQUIRE(m <= kImgTol);
        std::size_t off = 0;
        for (std::size_t i = 0; i < d.u8.size(); ++i) {
          const auto diff = std::abs(std::int64_t(d.u8[i]) - want_u8[i]);
          REQUIRE(diff <= 1);
          off += diff != 0;
        }
        CAPTURE(off);
        REQUIRE(double(off) <= kU8MaxOffFraction * double(d.u8.size()));
      }
    }
  }
}

TEST_CASE("VQVAE decoder: the Winograd form really runs and stays close to the direct one", "[model][vqvae][winograd]") {
  // large_tiles: F(4×4, 3×3) on every Winograd layer of the tiny VAE (all ≤ 160 channels), else F(2×2).
  const bool large = GENERATE(true, false);
  CAPTURE(large);
  const auto vae = mvar::test::load_fixture("tiny.vae.safetensors");
  const mvar::VqvaeDecoder wino(vae, mvar::VaeConfig::tiny(), {true, mvar::Precision::F32, large}),
      direct(vae, mvar::VaeConfig::tiny(), {false});
  const auto trace = mvar::test::load_fixture(mvar::test::fixture_run("mvar").trace_file);
  const auto a = decode_trace(wino, trace, 2), b = decode_trace(direct, trace, 2);
  double m = 0;
  for (std::size_t i = 0; i < a.img.size(); ++i) m = mvar::test::nan_max(m, std::abs(double(a.img[i]) - b.img[i]));
  CAPTURE(m);
  REQUIRE(m <= kImgTol);  // both are float32 orderings of the same sums
  REQUIRE(std::string(direct.conv_form()) == "direct");
#if defined(MVAR_HAS_WINOGRAD)
  REQUIRE(std::string(wino.conv_form()) == (large ? "winograd-f4" : "winograd"));
  REQUIRE(wino.conv_bytes() > direct.conv_bytes());
  REQUIRE(m > 0);  // different summation: the Winograd path was taken
#else
  REQUIRE(std::string(wino.conv_form()) == "direct");
  REQUIRE(wino.conv_bytes() == direct.conv_bytes());
  REQUIRE(m == 0);
#endif
}

TEST_CASE("VQVAE decoder: F(4x4) only where the layers run at >= 64 px for Options::latent_side", "[model][vqvae][winograd]") {
  const auto vae = mvar::test::load_fixture("tiny.vae.safetensors");
  using O = mvar::VqvaeDecoder::Options;
  // The tiny VAE has 5 levels: at latent side 2 the finest runs at 32 px (no F(4×4)), at 4 at 64 px.
  const mvar::VqvaeDecoder at2(vae, mvar::VaeConfig::tiny(), O{true, mvar::Precision::F32, true, 2}),
      at4(vae, mvar::VaeConfig::tiny(), O{true, mvar::Precision::F32, true, 4}),
      at16(vae, mvar::VaeConfig::tiny(), O{true, mvar::Precision::F32, true, 16}),
      f2(vae, mvar::VaeConfig::tiny(), O{true, mvar::Precision::F32, false, 16});
#if defined(MVAR_HAS_WINOGRAD)
  REQUIRE(std::string(at2.conv_form()) == "winograd");
  REQUIRE(at2.conv_bytes() == f2.conv_bytes());
  REQUIRE(std::string(at4.conv_form()) == "winograd-f4");
  REQUIRE(at4.conv_bytes() > f2.conv_bytes());
  REQUIRE(at16.conv_bytes() > at4.conv_bytes());  // more levels at ≥ 64 px
#endif
  REQUIRE_THROWS_WITH(mvar::VqvaeDecoder(vae, mvar::VaeConfig::tiny(), O{true, mvar::Precision::F32, true, 0}),
                      Catch::Contains("latent_side must be"));
}

TEST_CASE("VQVAE decoder: Winograd with bf16 products stays near the fixture", "[model][vqvae][winograd]") {
  const auto vae = mvar::test::load_fixture("tiny.vae.safetensors");
  const mvar::VqvaeDecoder f32(vae, mvar::VaeConfig::tiny()),
      bf16(vae, mvar::VaeConfig::tiny(), {true, mvar::Precision::BF16});
  const auto trace = mvar::test::load_fixture(mvar::test::fixture_run("mvar").trace_file);
  const auto d = decode_trace(bf16, trace, 2);  // image 0
  const auto want_all = trace.at("img_dec").to_float();
  const std::vector<float> want(want_all.begin(), want_all.begin() + std::ptrdiff_t(d.img.size()));
  double m = 0, sum = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    m = mvar::test::nan_max(m, std::abs(double(d.img[i]) - want[i]));
    sum += std::abs(double(d.img[i]) - want[i]);
  }
  CAPTURE(m, sum / double(want.size()));
#if defined(MVAR_HAS_WINOGRAD_BF16)
  // bf16 keeps 8 significant bits: each Winograd layer's products are off by ≤ 2⁻⁸ relative
  // (tests/test_conv.cpp); through the decoder's Winograd layers and the GroupNorms between them
  // the image (values in [−1, 1]) moved by 3.7e-2 at most and 3.2e-3 on average when measured
  // (about 0.4 of an 8-bit level on average). Bounds at about twice that: a wrong pairing or a
  // lost channel moves it by O(0.1–1).
  REQUIRE(bf16.conv_bytes() < f32.conv_bytes());
  REQUIRE(m > kImgTol);  // not the fp32 path
  REQUIRE(m <= 8e-2);
  REQUIRE(sum / double(want.size()) <= 7e-3);
#else
  REQUIRE(bf16.conv_bytes() == f32.conv_bytes());  // fp32 Winograd (or direct) instead
  REQUIRE(m <= kImgTol);
#endif
}

TEST_CASE("VQVAE decode gives identical bits for 1 and 3 threads", "[model][vqvae]") {
  const auto vae = mvar::test::load_fixture("tiny.vae.safetensors");
  const mvar::VqvaeDecoder dec(vae, mvar::VaeConfig::tiny());
  const auto trace = mvar::test::load_fixture(mvar::test::fixture_run("mvar").trace_file);
  const auto a = decode_trace(dec, trace, 1), b = decode_trace(dec, trace, 3);
  REQUIRE(std::memcmp(a.img.data(), b.img.data(), a.img.size() * sizeof(float)) == 0);
}

TEST_CASE("VqvaeDecoder binding lists every problem and catches config mismatches", "[model][vqvae]") {
  const auto vae = mvar::test::load_fixture("tiny.vae.safetensors");
  // The official preset against the tiny file: every conv has the wrong shape.
  try {
    mvar::VqvaeDecoder(vae, mvar::VaeConfig::official());
    FAIL("expected mvar::Error");
  } catch (const mvar::Error& e) {
    const std::string msg = e.what();
    CHECK_THAT(msg, Catch::Contains("'decoder.conv_in.weight' has shape (128, 32, 3, 3), expected (640, 32, 3, 3)"));
    CHECK_THAT(msg, Catch::Contains("'decoder.conv_out.weight' has shape (3, 32, 3, 3), expected (3, 160, 3, 3)"));
    CHECK_THAT(msg, Catch::Contains("tiny.vae.safetensors"));
  }
  // No attention in the config, but the file has it: unexpected keys.
  auto cfg = mvar::VaeConfig::tiny();
  cfg.using_mid_sa = false;
  REQUIRE_THROWS_WITH(mvar::VqvaeDecoder(vae, cfg), Catch::Contains("unexpected 'decoder.mid.attn_1.qkv.weight'"));
  // A missing tensor is named with its expected shape.
  std::vector<mvar::TensorRef> refs;
  for (const auto& t : vae.tensors())
    if (t.name != "decoder.up.2.block.1.norm2.bias") refs.push_back(t);
  const mvar::TensorStore partial("partial", refs, nullptr);
  REQUIRE_THROWS_WITH(mvar::VqvaeDecoder(partial, mvar::VaeConfig::tiny()),
                      Catch::Contains("missing 'decoder.up.2.block.1.norm2.bias' (expected shape (64,))"));
  // Invalid configurations.
  cfg = mvar::VaeConfig::tiny();
  cfg.ch = 40;
  REQUIRE_THROWS_WITH(mvar::VqvaeDecoder(vae, cfg), Catch::Contains("multiple of 32"));

  // check_weights (no packing) refuses exactly what the constructor refuses, with the same message.
  auto message = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const mvar::Error& e) {
      return e.what();
    }
    return "";
  };
  auto no_attn = mvar::VaeConfig::tiny();
  no_attn.using_mid_sa = false;
  const std::vector<std::pair<const mvar::TensorStore*, mvar::VaeConfig>> bad = {
      {&vae, mvar::VaeConfig::official()}, {&vae, no_attn}, {&partial, mvar::VaeConfig::tiny()}, {&vae, cfg}};
  for (const auto& [store, c] : bad) {
    const std::string built = message([&] { mvar::VqvaeDecoder(*store, c); });
    CHECK(!built.empty());
    CHECK(message([&] { mvar::VqvaeDecoder::check_weights(*store, c); }) == built);
  }
  REQUIRE_NOTHROW(mvar::VqvaeDecoder::check_weights(vae, mvar::VaeConfig::tiny()));
}

TEST_CASE("to_rgb8: clamp, (x+1)/2, truncation of 255·y, HWC", "[model][vqvae]") {
  // Pixel (0,0) RGB and pixel (0,1) RGB, planar input.
  const std::vector<float> img = {-2.f, 1.f, /*G*/ 0.f, 5.f, /*B*/ 0.99f, -1.f};
  std::vector<std::uint8_t> out(6);
  mvar::to_rgb8(TensorView<const float, 3>(img.data(), {3, 1, 2}), out);
  // 0 → 127.5 → 127 (truncated, not rounded); 0.99 → 253.725 → 253.
  REQUIRE(out == std::vector<std::uint8_t>{0, 127, 253, 255, 255, 0});
  REQUIRE_THROWS_AS(mvar::to_rgb8(TensorView<const float, 3>(img.data(), {3, 1, 2}), std::span(out).first(5)), mvar::Error);
}

TEST_CASE("VqvaeDecoder == float64 reference decoder for other configurations", "[model][vqvae]") {
  // Small configurations exercise what the fixtures cannot: other level counts, res-block counts,
  // latent channels and sides, attention switched off, 1×1 shortcuts at several levels.
  // float32 vs float64 through ~20 layers, each renormalised by GroupNorm: observed errors are a
  // few 1e-6 of the output's scale; 1e-4 of the largest output value leaves a wide margin while a
  // wrong tap, group or shortcut shows up as errors of order 1e-1.
  constexpr double kRelTol = 1e-4;
  std::vector<mvar::VaeConfig> cfgs(3);
  cfgs[0].cvae = 8, cfgs[0].vocab = 16, cfgs[0].ch = 32, cfgs[0].ch_mult = {1, 2}, cfgs[0].num_res_blocks = 1;
  cfgs[1] = cfgs[0], cfgs[1].ch_mult = {2, 1, 3}, cfgs[1].using_sa = false, cfgs[1].num_res_blocks = 0;
  cfgs[2] = cfgs[0], cfgs[2].ch_mult = {1}, cfgs[2].using_mid_sa = false, cfgs[2].cvae = 4, cfgs[2].n_phi = 2;
  const int P = GENERATE(3, 5);
  for (std::size_t i = 0; i < cfgs.size(); ++i) {
    const auto& cfg = cfgs[i];
    CAPTURE(i, P);
    const auto store = mvar::ref::random_vae_store(cfg, unsigned(10 + i));
    const mvar::VqvaeDecoder dec(store, cfg);
    const int S = dec.image_side(P);
    std::mt19937 rng(static_cast<unsigned>(P));
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<float> fhat(std::size_t(cfg.cvae * P * P));
    for (auto& v : fhat) v = nd(rng);
    mvar::ThreadPool pool(2);
    mvar::Workspace ws(dec.workspace_bytes(P));
    std::vector<float> rgb(std::size_t(3 * S * S));
    dec.decode(pool, TensorView<const float, 3>(fhat.data(), {cfg.cvae, P, P}), TensorView<float, 3>(rgb.data(), {3, S, S}), ws);
    const auto want = mvar::ref::decoder(store, cfg, fhat, P);
    REQUIRE(want.v.size() == rgb.size());
    double scale = 0, err = 0;
    for (std::size_t j = 0; j < rgb.size(); ++j) {
      scale = std::max(scale, std::abs(want.v[j]));
      err = mvar::test::nan_max(err, std::abs(rgb[j] - want.v[j]));
    }
    CAPTURE(err, scale);
    REQUIRE(scale > 0.1);  // the comparison is not vacuous
    REQUIRE(err <= kRelTol * scale);
  }
}
