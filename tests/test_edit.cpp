// Zero-shot editing (sampling/edit.hpp) against edit_tiny.safetensors + edit_tiny.config.json:
// three greedy runs of the official notebook's editing function on the tiny VAR (in-painting with
// the null class, out-painting with a class, class-conditional editing). Per case: the per-scale
// keep masks, the token pyramid, f̂ after every scale and the uint8 image; the image's tokens come
// from our own encoder (end to end). Every setting (patch_nums, labels, boxes, modes, cfg, top-k,
// the image index) is read from the fixture files. Also: the kept-region invariant for both
// trajectories under random sampling, masks from a mask image, and option errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fixtures_path.hpp"
#include "model_test_util.hpp"
#include "mvar/io/rgb.hpp"
#include "mvar/model/quantizer.hpp"
#include "mvar/model/transformer.hpp"
#include "mvar/model/vqvae.hpp"
#include "mvar/model/vqvae_encoder.hpp"
#include "mvar/sampling/edit.hpp"
#include "mvar/sampling/sampler.hpp"

using namespace mvar;

namespace {

using Tiny = Transformer<presets::tiny>;

// Fixtures README: img_u8 may differ by 1 on at most ~0.1 % of the values (truncation boundary).
constexpr double kU8MaxOffFraction = 1e-3;

nlohmann::json config() {
  std::ifstream in(test::fixture_path("edit_tiny.config.json"));
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

struct Setup {
  nlohmann::json cfg = config();
  std::vector<int> pn = cfg.at("patch_nums").get<std::vector<int>>();
  TensorStore w = test::load_fixture("tiny.transformer.safetensors");
  TensorStore vae = test::load_fixture(cfg.at("vae_file").get<std::string>());
  TensorStore enc = test::load_fixture("encode_tiny.safetensors");
  TensorStore edit = test::load_fixture("edit_tiny.safetensors");
  Tiny model{w};
  VectorQuantizer quant{vae, pn, VaeConfig::tiny()};
  VqvaeEncoder encoder{vae, VaeConfig::tiny()};
};
Setup& setup() {
  static Setup s;
  return s;
}

// The token pyramid (flat) of encode_tiny's image `index`, by our encoder + quantiser.
std::vector<std::int32_t> encode_image(int index) {
  auto& S = setup();
  const auto& img = S.enc.at("img");
  const int side = int(img.shape[2]), P = S.quant.latent_side(), C = S.quant.cvae();
  const std::size_t n = std::size_t(3 * side * side);
  const auto all = img.to_float();
  REQUIRE(std::size_t(index + 1) * n <= all.size());
  ThreadPool pool(2);
  Workspace ws(std::max(S.encoder.workspace_bytes(side), S.quant.encode_workspace_bytes()));
  std::vector<float> f(std::size_t(C * P * P)), fhat(f.size());
  S.encoder.encode(pool, TensorView<const float, 3>(all.data() + std::size_t(index) * n, {3, side, side}),
                   TensorView<float, 3>(f.data(), {C, P, P}), ws);
  std::vector<std::int32_t> tok(S.quant.total_tokens());
  S.quant.encode(pool, TensorView<const float, 3>(f.data(), {C, P, P}), tok, TensorView<float, 3>(fhat.data(), {C, P, P}), ws);
  return tok;
}

EditMask mask_of(const nlohmann::json& c, const std::vector<int>& pn) {
  const auto box = c.at("box").get<std::vector<double>>();
  REQUIRE(box.size() == 4);
  return EditMask::from_box(pn, box[0], box[1], box[2], box[3], c.at("inpainting").get<bool>());
}

template <class Trajectory>
Generation run_edit(const EditMask& mask, const std::vector<std::int32_t>& tok, int label, const SampleOptions& base) {
  auto& S = setup();
  ThreadPool pool(2);
  Trajectory traj(Tiny::config);
  SampleOptions o = base;
  apply_edit(o, mask, tok);
  const std::vector<int> labels = {label};
  return sample(pool, S.model, S.quant, traj, labels, o);
}

}  // namespace

TEST_CASE("edit masks equal the notebook's per-scale masks (box → latent → bilinear > 0.5)", "[edit][fixture]") {
  auto& S = setup();
  const auto cases = S.cfg.at("reference_stats").at("edit_cases");
  REQUIRE(cases.size() >= 3);
  for (const auto& c : cases) {
    const std::string name = c.at("name").get<std::string>();
    CAPTURE(name);
    const EditMask m = mask_of(c, S.pn);
    REQUIRE(m.num_scales() == int(S.pn.size()));
    for (int s = 0; s < m.num_scales(); ++s) {
      CAPTURE(s);
      const auto want = S.edit.at(concat(name, ".mask.s", s)).to_int();
      REQUIRE(want.size() == m.keep(s).size());
      for (std::size_t i = 0; i < want.size(); ++i) REQUIRE(int(m.keep(s)[i]) == int(want[i]));
    }
  }
}

TEST_CASE("greedy edits equal the official notebook's: tokens, f̂ per scale, uint8 image", "[edit][fixture]") {
  auto& S = setup();
  const auto cases = S.cfg.at("reference_stats").at("edit_cases");
  const VqvaeDecoder dec(S.vae, VaeConfig::tiny());
  for (const auto& c : cases) {
    const std::string name = c.at("name").get<std::string>();
    CAPTURE(name);
    const EditMask mask = mask_of(c, S.pn);
    const auto tok = encode_image(c.at("image_index").get<int>());
    SampleOptions o;
    o.cfg = c.at("cfg").get<float>();
    o.top_k = S.cfg.at("top_k").get<int>();
    REQUIRE(o.top_k == 1);  // greedy: the token pyramid is seed-independent
    const double top_p = S.cfg.at("top_p").get<double>();
    o.top_p = top_p > 0.0 && top_p < 1.0 ? float(top_p) : 1.0f;  // the official 0.0 means "off"
    int fhat_checked = 0;
    o.on_fhat = [&](int s, TensorView<const float, 4> f) {
      CAPTURE(s);
      const auto want = S.edit.at(concat(name, ".fhat.s", s)).to_float();
      CHECK(test::max_abs_diff(f.data(), want.data(), want.size()) <= test::kFhatAtol);
      ++fhat_checked;
    };
    // The label tensor of the case (the null class 1000 for plain in-painting).
    const int label = int(S.edit.at(name + ".labels").to_int().at(0));
    REQUIRE(label == c.at("label").get<int>());
    const Generation g = run_edit<FullPrefix>(mask, tok, label, o);
    REQUIRE(fhat_checked == int(S.pn.size()));
    for (int s = 0; s < int(S.pn.size()); ++s) {
      CAPTURE(s);
      const auto want = S.edit.at(concat(name, ".idx.s", s)).to_int();
      REQUIRE(want.size() == g.tokens[std::size_t(s)].size());
      for (std::size_t i = 0; i < want.size(); ++i) REQUIRE(g.tokens[std::size_t(s)][i] == want[i]);
    }
    // Decode and compare the 8-bit image.
    const int P = S.quant.latent_side(), side = dec.image_side(P);
    ThreadPool pool(2);
    Workspace ws(dec.workspace_bytes(P));
    std::vector<float> img(std::size_t(3 * side * side));
    dec.decode(pool, g.image_fhat(0), TensorView<float, 3>(img.data(), {3, side, side}), ws);
    std::vector<std::uint8_t> u8(std::size_t(side * side * 3));
    to_rgb8(TensorView<const float, 3>(img.data(), {3, side, side}), u8);
    const auto want = S.edit.at(name + ".img_u8").to_int();
    REQUIRE(want.size() == u8.size());
    std::size_t off = 0;
    for (std::size_t i = 0; i < u8.size(); ++i) {
      const auto d = std::abs(std::int64_t(u8[i]) - want[i]);
      REQUIRE(d <= 1);
      off += d != 0;
    }
    CHECK(double(off) <= kU8MaxOffFraction * double(u8.size()));
  }
}

TEMPLATE_TEST_CASE("inside the kept region the tokens equal the image's at every scale (random sampling)", "[edit]",
                   ScaleMarkov, FullPrefix) {
  auto& S = setup();
  const auto tok = encode_image(1);
  for (bool inpainting : {true, false}) {
    CAPTURE(inpainting);
    const EditMask mask = EditMask::from_box(S.pn, 0.2, 0.3, 0.7, 0.9, inpainting);
    SampleOptions o;  // top-k 900, top-p 0.96, cfg 1.5: random draws
    o.seed = 5;
    const Generation g = run_edit<TestType>(mask, tok, 207, o);
    std::size_t generated_differ = 0;
    for (int s = 0; s < int(S.pn.size()); ++s) {
      CAPTURE(s);
      const auto keep = mask.keep(s);
      const std::size_t off = S.quant.token_offset(s);
      for (std::size_t t = 0; t < keep.size(); ++t) {
        if (keep[t]) REQUIRE(g.tokens[std::size_t(s)][t] == tok[off + t]);
        else generated_differ += g.tokens[std::size_t(s)][t] != tok[off + t];
      }
      // Some region is generated at the large scales (pn² > 3 never keeps everything here).
      if (S.pn[std::size_t(s)] >= 4) REQUIRE(mask.kept(s) < keep.size());
    }
    CHECK(generated_differ > 0);  // the generated region was actually sampled, not copied
  }
}

TEST_CASE("edit mask from a mask image equals the box mask; errors", "[edit]") {
  auto& S = setup();
  const int H = 256, W = 192;  // any size: area windows onto the latent grid
  std::vector<std::uint8_t> grey(std::size_t(H * W), 0);
  // White box over rows [0.25, 0.75) and columns [0.25, 0.75): latent-cell aligned at P = 16.
  for (int y = H / 4; y < 3 * H / 4; ++y)
    for (int x = W / 4; x < 3 * W / 4; ++x) grey[std::size_t(y * W + x)] = 255;
  for (bool invert : {false, true}) {
    CAPTURE(invert);
    const EditMask a = EditMask::from_image(S.pn, grey, H, W, invert);
    const EditMask b = EditMask::from_box(S.pn, 0.25, 0.25, 0.75, 0.75, /*inpainting=*/!invert);
    for (int s = 0; s < a.num_scales(); ++s) {
      CAPTURE(s);
      REQUIRE(std::vector<std::uint8_t>(a.keep(s).begin(), a.keep(s).end()) ==
              std::vector<std::uint8_t>(b.keep(s).begin(), b.keep(s).end()));
    }
  }
  // pn² ≤ 3 keeps everything, whatever the mask.
  const EditMask all_gen = EditMask::from_box(S.pn, 0.0, 0.0, 1.0, 1.0, true);
  REQUIRE(all_gen.kept(0) == 1);
  REQUIRE(all_gen.kept(3) == 0);
  REQUIRE_THROWS_WITH(EditMask::from_box(S.pn, 0.5, 0.1, 0.4, 0.9, true), Catch::Contains("0 ≤ y0 < y1 ≤ 1"));
  REQUIRE_THROWS_WITH(EditMask::from_box(S.pn, NAN, 0.1, 0.4, 0.9, true), Catch::Contains("edit box"));
  REQUIRE_THROWS_WITH(EditMask::from_image(S.pn, grey, H, W + 1), Catch::Contains("H·W grey bytes"));
  REQUIRE_THROWS_WITH(EditMask::from_latent(S.pn, std::vector<float>(10, 0.f)), Catch::Contains("16×16"));
  REQUIRE_THROWS_WITH(edit_force_tokens(all_gen, std::vector<std::int32_t>(5)), Catch::Contains("token pyramid"));
}

TEST_CASE("more_smooth edits put the image token's own embedding in the kept region (replace_embedding)", "[edit]") {
  auto& S = setup();
  const int index = 0, C = S.quant.cvae(), P = S.quant.latent_side();
  const auto tok = encode_image(index);
  // The image's own f̂ (every token kept → generation must reproduce it).
  std::vector<float> want(std::size_t(C * P * P));
  {
    const auto& img = S.enc.at("img");
    const int side = int(img.shape[2]);
    const auto all = img.to_float();
    ThreadPool pool(1);
    Workspace ws(std::max(S.encoder.workspace_bytes(side), S.quant.encode_workspace_bytes()));
    std::vector<float> f(want.size());
    std::vector<std::int32_t> t2(S.quant.total_tokens());
    S.encoder.encode(pool, TensorView<const float, 3>(all.data(), {3, side, side}), TensorView<float, 3>(f.data(), {C, P, P}), ws);
    S.quant.encode(pool, TensorView<const float, 3>(f.data(), {C, P, P}), t2, TensorView<float, 3>(want.data(), {C, P, P}), ws);
    REQUIRE(t2 == tok);
  }
  const EditMask all_kept = EditMask::from_box(S.pn, 0.0, 0.0, 1.0, 1.0, /*inpainting=*/false);
  for (int s = 0; s < all_kept.num_scales(); ++s) REQUIRE(all_kept.kept(s) == all_kept.keep(s).size());
  SampleOptions o;
  o.more_smooth = true;  // top-k 900: Gumbel mixes would differ from the codebook entries
  o.seed = 3;
  for (auto traj : {0, 1}) {
    CAPTURE(traj);
    const Generation g = traj == 0 ? run_edit<ScaleMarkov>(all_kept, tok, 207, o) : run_edit<FullPrefix>(all_kept, tok, 207, o);
    CHECK(test::max_abs_diff(g.fhat.data(), want.data(), want.size()) <= test::kFhatAtol);
  }
  // Control: forcing the tokens alone leaves the Gumbel mixes in f̂ (far from the image's f̂).
  ThreadPool pool(2);
  ScaleMarkov traj(Tiny::config);
  SampleOptions only_tokens = o;
  only_tokens.force_tokens = edit_force_tokens(all_kept, tok);
  const std::vector<int> labels = {207};
  const Generation g = sample(pool, S.model, S.quant, traj, labels, only_tokens);
  CHECK(test::max_abs_diff(g.fhat.data(), want.data(), want.size()) > 1e-2);
}
