// The rest of the official zoo and every official sampler option (issue #19): shared AdaLN on the
// 512-px schedule (the VAR-d36 layout) against the official code's traces, the d36 preset and its
// recognition, the 512-px decoder, more_smooth (the Gumbel-softmax embedding) and the null class.
//
// Fixtures (tests/fixtures/README.md): saln512_tiny.transformer.safetensors +
// var512_saln_tiny.{config.json,trace,greedy}.safetensors with tiny.vae.safetensors, and
// smooth_tiny.safetensors. Every setting (labels, batch, cfg, top-k/p, schedule, sizes) is read
// from the fixture files.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

#include <nlohmann/json.hpp>

#include "fixtures_path.hpp"
#include "model_test_util.hpp"
#include "trace_check.hpp"
#include "mvar/io/rgb.hpp"
#include "mvar/model/model_description.hpp"
#include "mvar/model/quantizer.hpp"
#include "mvar/model/transformer.hpp"
#include "mvar/model/vqvae.hpp"
#include "mvar/sampling/sampler.hpp"
#include "random_weights.hpp"

using namespace mvar;

namespace {

using Saln = Transformer<presets::saln512_tiny>;
constexpr ModelConfig kSaln = presets::saln512_tiny;

// Tolerances: the fixtures README's thresholds for a float32 implementation (a few times the
// reference's float32-vs-float64 spread; var512_saln_tiny.config.json measures that spread as
// ≤ 2.5e-5 on guided logits, 6e-6 on hidden states, 1.8e-6 on f̂, 4.8e-6 on img_dec).
constexpr double kLogitTol = test::kLogitAtol;  // 2e-4: logits, hidden states, LSE
constexpr double kFhatTol = test::kFhatAtol;    // 5e-5: f̂, next-scale inputs
constexpr double kImgTol = 5e-5;                // img_dec
constexpr double kU8MaxOffFraction = 1e-3;      // img_u8: ±1 on ≤ 0.1 % (truncation boundary)
// bf16 weights: 8 significant bits, ≈ 2 % of values ≈ 10–14 (as test_model's bf16 case).
constexpr double kBf16Tol = 0.25;


nlohmann::json fixture_json(const std::string& name) {
  std::ifstream in(test::fixture_path(name));
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

struct Run {
  nlohmann::json cfg = fixture_json("var512_saln_tiny.config.json");
  std::vector<int> labels;
  float cfg_scale = 0, top_p = 0;
  int top_k = 0;
  std::vector<int> patch_nums;
  Run() {
    for (int l : cfg.at("labels")) labels.push_back(l);
    cfg_scale = cfg.at("cfg").get<float>();
    top_k = cfg.at("top_k").get<int>();
    top_p = cfg.at("top_p").get<float>();
    for (int p : cfg.at("patch_nums")) patch_nums.push_back(p);
  }
  SampleOptions options() const {
    SampleOptions o;
    o.cfg = cfg_scale;
    o.top_k = top_k;
    o.top_p = top_p > 0 ? top_p : 1.0f;  // official top_p 0 = off; ours 1
    return o;
  }
};

struct SalnSetup {
  Run run;
  TensorStore w = test::load_fixture(run.cfg.at("transformer_file").get<std::string>());
  TensorStore vae = test::load_fixture(run.cfg.at("vae_file").get<std::string>());
  Saln model{w};
  VectorQuantizer quant{vae, run.patch_nums, run.cfg.at("Cvae").get<int>(), run.cfg.at("vocab_size").get<int>(),
                        run.cfg.at("share_quant_resi").get<int>(), run.cfg.at("quant_resi").get<float>()};
};

SalnSetup& setup() {
  static SalnSetup s;
  return s;
}

std::vector<int> labels_of(const TensorStore& st) {
  std::vector<int> l;
  for (auto v : st.at("labels").to_int()) l.push_back(int(v));
  return l;
}

VaeConfig vae_config(const nlohmann::json& j) {
  VaeConfig v;
  v.cvae = j.at("Cvae");
  v.vocab = j.at("vocab_size");
  v.ch = j.at("vae_ch");
  v.ch_mult = j.at("vae_ch_mult").get<std::vector<int>>();
  v.num_res_blocks = j.at("vae_num_res_blocks");
  v.using_sa = j.at("vae_using_sa");
  v.using_mid_sa = j.at("vae_using_mid_sa");
  v.n_phi = j.at("share_quant_resi");
  v.quant_resi = j.at("quant_resi");
  return v;
}

// Teacher-forced transformer on the trace's own inputs: our embedding of each step's input, every
// block output, every row's log-sum-exp, the stored logit rows (test_model's check, for the
// shared-AdaLN model with the KV-cache trajectory the official VAR sampler uses).
void check_saln_trace(WeightLayout layout, double tol) {
  auto& S = setup();
  const auto tr = test::load_fixture(S.run.cfg.at("trace_file").get<std::string>());
  const Saln model(S.w, layout);
  const std::vector<int> labels = labels_of(tr);
  REQUIRE(int(labels.size()) == S.run.cfg.at("batch").get<int>());
  test::check_teacher_forced<FullPrefix>(model, tr, labels, /*cfg_doubled=*/true, tol);
}

}  // namespace

TEST_CASE("saln512_tiny preset is the fixture's configuration", "[zoo][config]") {
  const Run run;
  const auto& j = run.cfg;
  CHECK(kSaln.depth == j.at("depth").get<int>());
  CHECK(kSaln.width == j.at("embed_dim").get<int>());
  CHECK(kSaln.heads == j.at("num_heads").get<int>());
  CHECK(kSaln.ffn_hidden() == j.at("ffn_hidden").get<int>());
  CHECK(kSaln.vocab == j.at("vocab_size").get<int>());
  CHECK(kSaln.cvae == j.at("Cvae").get<int>());
  CHECK(kSaln.num_classes == j.at("num_classes").get<int>());
  CHECK(kSaln.shared_aln == j.at("shared_aln").get<bool>());
  CHECK(kSaln.attn_l2_norm == j.at("attn_l2_norm").get<bool>());
  REQUIRE(kSaln.num_scales() == int(run.patch_nums.size()));
  for (int s = 0; s < kSaln.num_scales(); ++s) CHECK(kSaln.patch_nums[s] == run.patch_nums[std::size_t(s)]);
  // config.json read by the library's description reader gives the same architecture.
  const auto desc = load_model_description(test::fixture_path("var512_saln_tiny.config.json"));
  CHECK(same_architecture(desc.arch, kSaln));
}

TEST_CASE("d36 preset: the official VAR-d36 sizes and parameter count", "[zoo][config][d36]") {
  // build_vae_var(depth=36, shared_aln=True, patch_nums=(1,2,3,4,6,9,13,18,24,32)): heads = depth,
  // width = 64·depth; 2,353,893,904 parameters (tools/make_d36_checkpoint.py counts the same from
  // the torch-written state dict).
  STATIC_REQUIRE(presets::d36.depth == 36);
  STATIC_REQUIRE(presets::d36.width == 2304);
  STATIC_REQUIRE(presets::d36.heads == 36);
  STATIC_REQUIRE(presets::d36.head_dim() == 64);
  STATIC_REQUIRE(presets::d36.shared_aln);
  STATIC_REQUIRE(presets::d36.seq_len() == 2240);
  STATIC_REQUIRE(presets::d36.patch_nums.last() == 32);
  STATIC_REQUIRE(presets::d36.valid());
  STATIC_REQUIRE(presets::d36.parameters() == 2'353'893'904);
  // The per-block zoo is unchanged by the shared-AdaLN terms.
  STATIC_REQUIRE(presets::d16.parameters() == 310'283'520);
  STATIC_REQUIRE(presets::d30.parameters() == 2'010'020'356);
  // The fixture file holds exactly saln512_tiny's parameter count (buffers excluded).
  const auto w = test::load_fixture("saln512_tiny.transformer.safetensors");
  std::int64_t params = 0;
  for (const auto& t : w.tensors())
    if (t.name != "lvl_1L" && t.name.find("zero_k_bias") == std::string::npos) params += t.numel();
  CHECK(params == kSaln.parameters());
}

TEST_CASE("Architecture recognition: shared AdaLN, L and the d36 preset from the shapes", "[zoo][detect]") {
  const auto saln = transformer_file_shape(test::load_fixture("saln512_tiny.transformer.safetensors"));
  REQUIRE(saln);
  CHECK(saln->depth == kSaln.depth);
  CHECK(saln->width == kSaln.width);
  CHECK(saln->heads == kSaln.heads);
  CHECK(saln->shared_aln);
  CHECK(saln->seq_len == kSaln.seq_len());
  CHECK(saln->official_preset().empty());
  const auto tiny = transformer_file_shape(test::load_fixture("tiny.transformer.safetensors"));
  REQUIRE(tiny);
  CHECK(!tiny->shared_aln);
  CHECK(tiny->seq_len == presets::tiny.seq_len());
  CHECK(tiny->depth == presets::tiny.depth);

  // Shapes only (no data): what a real var_d36.pth / var_d16.pth states, per the official layout.
  auto shapes_of = [](const ModelConfig& c) {
    const std::int64_t C = c.width;
    std::vector<TensorRef> refs;
    auto add = [&](std::string name, std::vector<std::int64_t> shape) { refs.push_back({std::move(name), DType::F32, std::move(shape)}); };
    add("class_emb.weight", {c.num_classes + 1, C});
    add("pos_1LC", {1, c.seq_len(), C});
    if (c.shared_aln) add("shared_ada_lin.1.weight", {6 * C, C});
    for (int i = 0; i < c.depth; ++i) {
      add(concat("blocks.", i, ".attn.mat_qkv.weight"), {3 * C, C});
      add(concat("blocks.", i, ".attn.scale_mul_1H11"), {1, c.heads, 1, 1});
      if (c.shared_aln) add(concat("blocks.", i, ".ada_gss"), {1, 1, 6, C});
      else add(concat("blocks.", i, ".ada_lin.1.weight"), {6 * C, C});
    }
    return TensorStore("<shapes>", std::move(refs), nullptr);
  };
  CHECK(transformer_file_shape(shapes_of(presets::d36))->official_preset() == "d36");
  for (const auto& [cfg, name] : {std::pair{presets::d16, "d16"}, {presets::d20, "d20"}, {presets::d24, "d24"}, {presets::d30, "d30"}})
    CHECK(transformer_file_shape(shapes_of(cfg))->official_preset() == name);
  // d36's sizes on the 256-px schedule, or without shared AdaLN, are no official preset.
  ModelConfig odd = presets::d36;
  odd.patch_nums = kPatchNums256;
  CHECK(transformer_file_shape(shapes_of(odd))->official_preset().empty());
  odd = presets::d36;
  odd.shared_aln = false;
  CHECK(transformer_file_shape(shapes_of(odd))->official_preset().empty());
}

TEST_CASE("A shared-AdaLN file bound as per-block, and the reverse: one clear error each", "[zoo][binding][errors]") {
  const std::string saln_path = test::fixture_path("saln512_tiny.transformer.safetensors");
  const std::string tiny_path = test::fixture_path("tiny.transformer.safetensors");
  const auto saln = load_safetensors(saln_path), tiny = load_safetensors(tiny_path);
  // The per-block config with the 512-px schedule: only the AdaLN layout differs from the file.
  constexpr ModelConfig per_block512 = [] {
    ModelConfig c = presets::saln512_tiny;
    c.shared_aln = false;
    return c;
  }();
  try {
    Transformer<per_block512> m(saln);
    FAIL("a shared-AdaLN file bound as per-block");
  } catch (const Error& e) {
    const std::string msg = e.what();
    CHECK_THAT(msg, Catch::Contains(saln_path));
    CHECK_THAT(msg, Catch::Contains("uses shared AdaLN"));
    CHECK_THAT(msg, Catch::Contains("'shared_ada_lin.1.weight'"));
    CHECK_THAT(msg, Catch::Contains("missing 'blocks.0.ada_lin.1.weight'"));
    CHECK(std::count(msg.begin(), msg.end(), '\n') == 0);  // one sentence, not a list per block
  }
  constexpr ModelConfig shared256 = [] {
    ModelConfig c = presets::tiny;
    c.shared_aln = true;
    return c;
  }();
  try {
    Transformer<shared256> m(tiny);
    FAIL("a per-block file bound as shared AdaLN");
  } catch (const Error& e) {
    const std::string msg = e.what();
    CHECK_THAT(msg, Catch::Contains(tiny_path));
    CHECK_THAT(msg, Catch::Contains("uses per-block AdaLN"));
    CHECK_THAT(msg, Catch::Contains("'blocks.0.ada_lin.1.weight', unexpected"));
    CHECK_THAT(msg, Catch::Contains("missing 'shared_ada_lin.1.weight'"));
  }
  // The right layout on the wrong schedule is a shape problem, stated with L.
  try {
    Transformer<shared256> m(saln);
    FAIL("the 512-px file bound to the 256-px schedule");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("'pos_1LC' has shape (1, 2240, 128), expected (1, 680, 128)"));
    CHECK_THAT(e.what(), Catch::Contains("L = 2240 tokens, shared AdaLN"));
  }
}

TEST_CASE("Shared-AdaLN VAR on the 512-px schedule matches the official trace, teacher-forced", "[zoo][model][fixtures]") {
  check_saln_trace(WeightLayout::InPlace, kLogitTol);
  check_saln_trace(WeightLayout::PackedF32, kLogitTol);
}

TEST_CASE("Shared-AdaLN with bf16-packed weights (shared projection in bf16) stays within the bf16 tolerance", "[zoo][model][bf16]") {
  check_saln_trace(WeightLayout::PackedBF16, kBf16Tol);
}

TEST_CASE("The quantizer on the 512-px schedule: Phi index per scale, bicubic/area sizes", "[zoo][quantizer]") {
  auto& S = setup();
  const auto idx = S.run.cfg.at("phi_index_per_scale").get<std::vector<int>>();
  REQUIRE(int(idx.size()) == S.quant.num_scales());
  for (int s = 0; s < S.quant.num_scales(); ++s) CHECK(S.quant.phi_index(s) == idx[std::size_t(s)]);
  CHECK(S.quant.latent_side() == S.run.patch_nums.back());
}

TEST_CASE("512-px sampling trace: guided logits, f̂ and next inputs at every scale, teacher-forced", "[zoo][sampler][fixtures]") {
  auto& S = setup();
  const auto tr = test::load_fixture(S.run.cfg.at("trace_file").get<std::string>());
  ThreadPool pool(2);
  FullPrefix traj(Saln::config);
  SampleOptions o = S.run.options();
  o.force_tokens = [&](int s, std::span<std::int32_t> tok) {
    const auto want = tr.at(concat("idx.s", s)).to_int();
    REQUIRE(want.size() == tok.size());
    for (std::size_t i = 0; i < tok.size(); ++i) tok[i] = std::int32_t(want[i]);
  };
  int guided_checked = 0, fhat_checked = 0;
  o.on_guided = [&](int s, TensorView<const float, 2> g) {
    CAPTURE(s);
    const auto lse = tr.at(concat("lse_mixed.s", s)).to_float();
    REQUIRE(lse.size() == std::size_t(g.extent(0)));
    double worst = 0;
    for (std::ptrdiff_t r = 0; r < g.extent(0); ++r) {
      const double d = std::fabs(test::logsumexp(g.row(r), std::size_t(g.extent(1))) - lse[std::size_t(r)]);
      worst = test::nan_max(worst, d);
    }
    CHECK(worst <= kLogitTol);
    // The stored guided rows themselves.
    const auto tok = tr.at(concat("logit_tok.s", s)).to_int();
    const auto mixed = tr.at(concat("logits_mixed.s", s)).to_float();
    for (std::size_t i = 0; i < tok.size(); ++i) CHECK(test::max_abs_diff(g.row(tok[i]), mixed.data() + i * Saln::V, Saln::V) <= kLogitTol);
    ++guided_checked;
  };
  o.on_fhat = [&](int s, TensorView<const float, 4> f) {
    CAPTURE(s);
    const auto want = tr.at(concat("fhat.s", s)).to_float();
    REQUIRE(want.size() == std::size_t(f.extent(0) * f.extent(1) * f.extent(2) * f.extent(3)));
    CHECK(test::max_abs_diff(f.data(), want.data(), want.size()) <= kFhatTol);
    if (s + 1 < kSaln.num_scales()) {  // the area-resized next input
      const int pn = kSaln.patch_nums[s + 1], E = kSaln.cvae;
      std::vector<float> z(std::size_t(pn) * pn * E);
      S.quant.area_tokens(s + 1, TensorView<const float, 3>(f.data(), {E, f.extent(2), f.extent(3)}),
                          TensorView<float, 2>(z.data(), {pn * pn, E}));
      const auto want_next = tr.at(concat("next_in.s", s)).to_float();  // (1, cvae, pn, pn)
      double m = 0;
      for (int c = 0; c < E; ++c)
        for (int t = 0; t < pn * pn; ++t) {
          const double d = std::fabs(double(z[std::size_t(t) * E + c]) - want_next[std::size_t(c) * pn * pn + t]);
          m = test::nan_max(m, d);
        }
      CHECK(m <= kFhatTol);
    }
    ++fhat_checked;
  };
  sample(pool, S.model, S.quant, traj, labels_of(tr), o);
  REQUIRE(guided_checked == kSaln.num_scales());
  REQUIRE(fhat_checked == kSaln.num_scales());
}

TEST_CASE("512-px decoder: a 32×32 f̂ decodes to the official 512×512 img_dec and img_u8", "[zoo][vqvae][fixtures]") {
  auto& S = setup();
  const auto tr = test::load_fixture(S.run.cfg.at("trace_file").get<std::string>());
  const VqvaeDecoder dec(S.vae, vae_config(S.run.cfg), VqvaeDecoder::Options{true, Precision::F32, true, S.quant.latent_side()});
  const int P = S.quant.latent_side(), side = dec.image_side(P), E = kSaln.cvae;
  REQUIRE(side == 512);
  const auto fhat = tr.at("fhat.s9").to_float();
  REQUIRE(fhat.size() == std::size_t(E) * P * P);
  ThreadPool pool(2);
  Workspace ws(dec.workspace_bytes(P));
  std::vector<float> img(std::size_t(3) * side * side);
  dec.decode(pool, TensorView<const float, 3>(fhat.data(), {E, P, P}), TensorView<float, 3>(img.data(), {3, side, side}), ws);
  REQUIRE(ws.high_water() <= dec.workspace_bytes(P));
  const auto want = tr.at("img_dec").to_float();
  REQUIRE(want.size() == img.size());
  const double m = test::max_abs_diff(img.data(), want.data(), img.size());
  CAPTURE(m);
  CHECK(m <= kImgTol);
  std::vector<std::uint8_t> u8(img.size());
  to_rgb8(TensorView<const float, 3>(img.data(), {3, side, side}), u8);
  const auto want_u8 = tr.at("img_u8").to_int();
  REQUIRE(want_u8.size() == u8.size());
  std::size_t off = 0;
  for (std::size_t i = 0; i < u8.size(); ++i) {
    const auto d = std::abs(std::int64_t(u8[i]) - want_u8[i]);
    REQUIRE(d <= 1);
    off += d != 0;
  }
  CAPTURE(off);
  CHECK(double(off) <= kU8MaxOffFraction * double(u8.size()));
}

TEST_CASE("512-px shared-AdaLN greedy pyramid equals the official one exactly (free-running)", "[zoo][sampler][fixtures]") {
  auto& S = setup();
  const auto gr = test::load_fixture(S.run.cfg.at("greedy_file").get<std::string>());
  const auto meta = gr.metadata();
  REQUIRE(meta.at("top_k") == "1");
  ThreadPool pool(2);
  FullPrefix traj(Saln::config);
  SampleOptions o = S.run.options();
  o.top_k = std::stoi(meta.at("top_k"));
  const float top_p = std::stof(meta.at("top_p"));
  o.top_p = top_p > 0 ? top_p : 1.0f;
  const auto g = sample(pool, S.model, S.quant, traj, labels_of(gr), o);
  for (int s = 0; s < kSaln.num_scales(); ++s) {
    CAPTURE(s);
    const auto want = gr.at(concat("idx.s", s)).to_int();
    REQUIRE(g.tokens[std::size_t(s)].size() == want.size());
    std::size_t differ = 0;
    for (std::size_t i = 0; i < want.size(); ++i) differ += g.tokens[std::size_t(s)][i] != want[i];
    REQUIRE(differ == 0);
  }
  const auto fhat = gr.at("fhat.s9").to_float();
  CHECK(test::max_abs_diff(g.fhat.data(), fhat.data(), fhat.size()) <= kFhatTol);
  // And the image: decoded at 512 px, truncated to 8 bits as the official script.
  const VqvaeDecoder dec(S.vae, vae_config(S.run.cfg), VqvaeDecoder::Options{true, Precision::F32, true, g.side});
  const int side = dec.image_side(g.side);
  Workspace ws(dec.workspace_bytes(g.side));
  std::vector<float> img(std::size_t(3) * side * side);
  dec.decode(pool, g.image_fhat(0), TensorView<float, 3>(img.data(), {3, side, side}), ws);
  std::vector<std::uint8_t> u8(img.size());
  to_rgb8(TensorView<const float, 3>(img.data(), {3, side, side}), u8);
  const auto want_u8 = gr.at("img_u8").to_int();
  REQUIRE(want_u8.size() == u8.size());
  std::size_t off = 0;
  for (std::size_t i = 0; i < u8.size(); ++i) {
    const auto d = std::abs(std::int64_t(u8[i]) - want_u8[i]);
    REQUIRE(d <= 1);
    off += d != 0;
  }
  CHECK(double(off) <= kU8MaxOffFraction * double(u8.size()));
}

TEST_CASE("A schedule whose last scale is not the quantizer's latent is refused", "[zoo][errors]") {
  auto& S = setup();
  // The 256-px quantizer (latent 16) with the 512-px transformer (last scale 32).
  const VectorQuantizer q256(S.vae, {1, 2, 3, 4, 5, 6, 8, 10, 13, 16}, VaeConfig::tiny());
  ThreadPool pool(1);
  FullPrefix traj(Saln::config);
  const std::vector<int> labels = {1};
  REQUIRE_THROWS_WITH(sample(pool, S.model, q256, traj, labels, SampleOptions{}),
                      Catch::Contains("latent 16²) does not fit the transformer") && Catch::Contains("latent 32²"));
}

// ---- more_smooth ------------------------------------------------------------------------------

namespace {

// smooth_tiny's reference is float32 PyTorch. The exponent z = (l·(1+r) − log E)/τ reaches
// |z| ≈ 2·12/0.0135 ≈ 1800 at r = 1, where one float32 rounding is ≈ 1.2e-4 absolute — so y may
// move by that relative amount between two correct float32 orderings. Tolerances: y_soft within
// 2e-4 of y's largest value (1), h within 2e-4 · max|codebook| per unit of y mass.
constexpr double kSoftTol = 2e-4;

}  // namespace

TEST_CASE("more_smooth: soft_embedding equals the official Gumbel-softmax for given Exp(1) draws", "[zoo][smooth][fixtures]") {
  const auto f = test::load_fixture("smooth_tiny.safetensors");
  const auto logits = f.at("logits").to_float(), codebook = f.at("codebook").to_float();
  const auto& lshape = f.at("logits").shape;
  const std::int64_t rows = lshape[0], V = lshape[1], E = f.at("codebook").shape[1];
  // A quantizer around the fixture's codebook (its zero Phi convs are not used here).
  std::vector<TensorRef> refs;
  auto keep = std::make_shared<std::vector<float>>(codebook);
  refs.push_back({"quantize.embedding.weight", DType::F32, {V, E}, reinterpret_cast<const std::byte*>(keep->data()), keep->size() * 4});
  std::vector<std::shared_ptr<std::vector<float>>> phi;
  for (int k = 0; k < 4; ++k) {
    phi.push_back(std::make_shared<std::vector<float>>(std::size_t(E * E * 9), 0.0f));
    refs.push_back({concat("quantize.quant_resi.qresi_ls.", k, ".weight"), DType::F32, {E, E, 3, 3},
                    reinterpret_cast<const std::byte*>(phi.back()->data()), phi.back()->size() * 4});
    refs.push_back({concat("quantize.quant_resi.qresi_ls.", k, ".bias"), DType::F32, {E},
                    reinterpret_cast<const std::byte*>(phi.back()->data()), std::size_t(E) * 4});
  }
  const TensorStore st("<smooth codebook>", refs, keep);
  const VectorQuantizer q(st, {1, 2}, int(E), int(V));
  double cb_max = 0;
  for (float c : codebook) cb_max = std::max(cb_max, double(std::fabs(c)));
  int cases = 0;
  for (int i = 0; f.find(concat("r", i, ".ratio")); ++i, ++cases) {
    CAPTURE(i);
    const double ratio = f.at(concat("r", i, ".ratio")).to_float()[0];
    CHECK(std::fabs(smooth_tau(ratio) - f.at(concat("r", i, ".tau")).to_float()[0]) <= 1e-7);
    const auto noise = f.at(concat("r", i, ".exp_noise")).to_float();
    const auto y_want = f.at(concat("r", i, ".y_soft")).to_float(), h_want = f.at(concat("r", i, ".h")).to_float();
    std::vector<float> y(static_cast<std::size_t>(V)), h(static_cast<std::size_t>(E));
    for (std::int64_t r = 0; r < rows; ++r) {
      CAPTURE(r);
      q.soft_embedding(std::span<const float>(logits.data() + r * V, std::size_t(V)), ratio,
                       [&](std::ptrdiff_t v) { return double(noise[std::size_t(r * V + v)]); }, y, h);
      CHECK(test::max_abs_diff(y.data(), y_want.data() + r * V, std::size_t(V)) <= kSoftTol);
      CHECK(test::max_abs_diff(h.data(), h_want.data() + r * E, std::size_t(E)) <= kSoftTol * cb_max);
    }
  }
  REQUIRE(cases == 3);
}

namespace {

using Tiny = Transformer<presets::tiny>;

struct TinySetup {
  TensorStore w = test::load_fixture("tiny.transformer.safetensors");
  TensorStore vae = test::load_fixture("tiny.vae.safetensors");
  // Packed fp32 weights (the CLI's default): every row's product runs the same kernel whatever the
  // number of rows. (With WeightLayout::InPlace, linear() streams W for ≤ 256 rows and packs above,
  // so the last bits of an image's logits depend on the batch; hard tokens rarely notice, but
  // more_smooth folds those bits into f̂.)
  Tiny model{w, WeightLayout::PackedF32};
  VectorQuantizer quant{vae, {1, 2, 3, 4, 5, 6, 8, 10, 13, 16}, VaeConfig::tiny()};
};
TinySetup& tiny_setup() {
  static TinySetup s;
  return s;
}

template <class Trajectory>
Generation tiny_run(int threads, std::span<const int> labels, const SampleOptions& o) {
  auto& S = tiny_setup();
  ThreadPool pool(threads);
  Trajectory traj(Tiny::config);
  return sample(pool, S.model, S.quant, traj, labels, o);
}

template <class Trajectory>
void check_smooth_determinism() {
  SampleOptions o;
  o.seed = 11;
  o.more_smooth = true;
  const std::vector<int> labels = {3, 207, 980};
  const Generation a = tiny_run<Trajectory>(1, labels, o), b = tiny_run<Trajectory>(2, labels, o),
                   c = tiny_run<Trajectory>(3, labels, o);
  REQUIRE(a.tokens == b.tokens);
  REQUIRE(a.tokens == c.tokens);
  REQUIRE(std::memcmp(a.fhat.data(), b.fhat.data(), a.fhat.bytes()) == 0);
  REQUIRE(std::memcmp(a.fhat.data(), c.fhat.data(), a.fhat.bytes()) == 0);
  // Image 1 of the batch == the same label alone as stream index 1 (noise keyed by image index).
  SampleOptions alone = o;
  alone.first_index = 1;
  const std::vector<int> one = {207};
  const Generation d = tiny_run<Trajectory>(2, one, alone);
  for (int s = 0; s < presets::tiny.num_scales(); ++s) {
    const auto n = std::size_t(presets::tiny.patch_nums.tokens(s));
    const auto& batch = a.tokens[std::size_t(s)];
    REQUIRE(std::vector<std::int32_t>(batch.begin() + std::ptrdiff_t(n), batch.begin() + std::ptrdiff_t(2 * n)) == d.tokens[std::size_t(s)]);
  }
  REQUIRE(std::memcmp(d.fhat.data(), a.image_fhat(1).data(), d.fhat.bytes()) == 0);
  // The smooth path really ran: the same seed without it draws the same first scale (the draw is
  // unchanged) but folds other embeddings into f̂.
  SampleOptions hard = o;
  hard.more_smooth = false;
  const Generation h = tiny_run<Trajectory>(2, labels, hard);
  REQUIRE(h.tokens[0] == a.tokens[0]);
  REQUIRE(std::memcmp(h.fhat.data(), a.fhat.data(), a.fhat.bytes()) != 0);
  for (std::size_t i = 0; i < a.fhat.size(); ++i) REQUIRE(std::isfinite(a.fhat[i]));
}

}  // namespace

TEST_CASE("more_smooth: same bits for 1, 2, 3 threads and any batch composition (MVAR)", "[zoo][smooth][determinism]") {
  check_smooth_determinism<ScaleMarkov>();
}
TEST_CASE("more_smooth: same bits for 1, 2, 3 threads and any batch composition (VAR)", "[zoo][smooth][determinism]") {
  check_smooth_determinism<FullPrefix>();
}

TEST_CASE("more_smooth folds exactly the Gumbel-softmax embeddings of the masked guided logits into f̂", "[zoo][smooth]") {
  // Replays scale 0 by hand: the guided logits the sampler masked (top-k/top-p) and the Exp(1)
  // draws keyed (image, scale, token, 1 + v) give the embedding; f̂ after scale 0 must equal
  // Phi(bicubic(that embedding)) from the quantizer's own fold.
  auto& S = tiny_setup();
  SampleOptions o;
  o.seed = 5;
  o.more_smooth = true;
  std::vector<float> masked;
  std::vector<float> fhat0;
  o.on_guided = [&](int s, TensorView<const float, 2> g) {
    if (s == 0) masked.assign(g.data(), g.data() + g.extent(1));
  };
  o.on_fhat = [&](int s, TensorView<const float, 4> f) {
    if (s == 0) fhat0.assign(f.data(), f.data() + f.extent(1) * f.extent(2) * f.extent(3));
  };
  const std::vector<int> labels = {42};
  tiny_run<ScaleMarkov>(1, labels, o);
  REQUIRE(masked.size() == std::size_t(Tiny::V));
  std::vector<float> scratch(masked.size()), emb(std::size_t(presets::tiny.cvae));
  std::vector<std::uint64_t> keys(masked.size());
  top_k_top_p_mask(masked, o.top_k, o.top_p, scratch, keys);
  const CounterRng rng(o.seed);
  S.quant.soft_embedding(masked, 0.0, [&](std::ptrdiff_t v) { return -std::log(rng.uniform(0, 0, 0, std::uint32_t(1 + v)) + 0x1p-54); },
                         scratch, emb);
  std::vector<float> want(fhat0.size(), 0.0f);
  ThreadPool pool(1);
  Workspace ws(S.quant.workspace_bytes());
  const int P = S.quant.latent_side();
  S.quant.add_embeddings(pool, 0, TensorView<const float, 2>(emb.data(), {1, presets::tiny.cvae}),
                         TensorView<float, 3>(want.data(), {presets::tiny.cvae, P, P}), ws);
  REQUIRE(std::memcmp(want.data(), fhat0.data(), want.size() * sizeof(float)) == 0);
  // A y that is not one-hot: the mix differs from every single codebook entry.
  double mass_max = 0;
  for (float y : scratch) mass_max = mvar::test::nan_max(mass_max, double(y));  // a NaN must fail the check below
  CHECK(mass_max < 1.0);
}

TEST_CASE("soft_embedding vs a double-precision reference over masked rows and ratios", "[zoo][smooth]") {
  auto& S = tiny_setup();
  const int V = S.quant.vocab(), E = S.quant.cvae();
  std::mt19937 gen(3);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::uniform_real_distribution<double> ud(1e-6, 1.0);
  for (double ratio : {0.0, 0.25, 0.5, 1.0}) {
    for (int keep : {1, 2, 50, V}) {
      CAPTURE(ratio, keep);
      const std::size_t nv = static_cast<std::size_t>(V), ne = static_cast<std::size_t>(E);
      std::vector<float> l(nv), y(nv), h(ne);
      std::vector<double> noise(nv);
      for (auto& x : l) x = nd(gen);
      for (auto& x : noise) x = -std::log(ud(gen));
      for (int v = keep; v < V; ++v) l[std::size_t((v * 7919) % V)] = -INFINITY;  // a mask of V − keep entries
      S.quant.soft_embedding(l, ratio, [&](std::ptrdiff_t v) { return noise[std::size_t(v)]; }, y, h);
      const double tau = smooth_tau(ratio);
      std::vector<double> z(nv, -INFINITY);
      double zmax = -INFINITY, sum = 0;
      for (int v = 0; v < V; ++v)
        if (l[std::size_t(v)] != -INFINITY) z[std::size_t(v)] = (l[std::size_t(v)] * (1.0 + ratio) - std::log(noise[std::size_t(v)])) / tau, zmax = std::max(zmax, z[std::size_t(v)]);
      for (int v = 0; v < V; ++v) sum += std::exp(z[std::size_t(v)] - zmax);
      double ey = 0, eh = 0, total = 0;
      std::vector<double> hr(ne, 0.0);
      for (int v = 0; v < V; ++v) {
        const double yr = std::exp(z[std::size_t(v)] - zmax) / sum;
        total += y[std::size_t(v)];
        const double d = std::fabs(yr - y[std::size_t(v)]);
        ey = test::nan_max(ey, d);
        for (int c = 0; c < E; ++c) hr[std::size_t(c)] += yr * S.quant.codebook()[std::size_t(v) * E + c];
        if (l[std::size_t(v)] == -INFINITY) REQUIRE(y[std::size_t(v)] == 0.0f);  // masked: exactly no weight
      }
      double cb_max = 0;
      for (float c : S.quant.codebook()) cb_max = std::max(cb_max, double(std::fabs(c)));
      for (int c = 0; c < E; ++c) {
        const double d = std::fabs(hr[std::size_t(c)] - h[std::size_t(c)]);
        eh = test::nan_max(eh, d);
      }
      CHECK(ey <= kSoftTol);
      CHECK(eh <= kSoftTol * cb_max);
      CHECK(std::fabs(total - 1.0) <= 1e-5);  // a distribution (float sums of ≤ 4096 terms)
    }
  }
}

TEST_CASE("more_smooth with greedy (top_k 1) is refused", "[zoo][smooth][errors]") {
  SampleOptions o;
  o.more_smooth = true;
  o.top_k = 1;
  const std::vector<int> labels = {1};
  REQUIRE_THROWS_WITH(tiny_run<ScaleMarkov>(1, labels, o), Catch::Contains("more_smooth with top_k 1 (greedy)"));
  REQUIRE_THROWS_WITH(validate_options(o, labels, 1000, 1), Catch::Contains("more_smooth with top_k 1"));
}

// ---- the null class ---------------------------------------------------------------------------

TEST_CASE("Null class (label = num_classes): both CFG halves run on the null embedding", "[zoo][null]") {
  // Official autoregressive_infer_cfg: label < 0 → num_classes; the CFG batch is labels ++ null, so
  // an unconditional image runs the null class in both halves: identical raw rows, and guided =
  // (1 + t)·L − t·L.
  const int null = presets::tiny.num_classes;
  const std::vector<int> labels = {null, 5};
  SampleOptions o;
  o.seed = 9;
  int checked = 0;
  o.on_logits = [&](int s, TensorView<const float, 2> raw) {
    const int n = presets::tiny.patch_nums.tokens(s), B = int(labels.size());
    REQUIRE(raw.extent(0) == 2 * B * n);
    // Image 0's conditional rows == its unconditional rows, bit for bit.
    REQUIRE(std::memcmp(raw.row(0), raw.row(std::ptrdiff_t(B) * n), sizeof(float) * std::size_t(n) * Tiny::V) == 0);
    // Image 1 (a real class) differs from its unconditional half.
    REQUIRE(std::memcmp(raw.row(n), raw.row(std::ptrdiff_t(B + 1) * n), sizeof(float) * std::size_t(n) * Tiny::V) != 0);
    ++checked;
  };
  const Generation g = tiny_run<FullPrefix>(2, labels, o);
  REQUIRE(checked == presets::tiny.num_scales());
  // An unconditional image is the same drawn alone (batch independence holds for it too).
  SampleOptions alone = o;
  alone.on_logits = nullptr;
  const std::vector<int> one = {null};
  const Generation a = tiny_run<FullPrefix>(1, one, alone);
  for (int s = 0; s < presets::tiny.num_scales(); ++s) {
    const auto n = std::size_t(presets::tiny.patch_nums.tokens(s));
    REQUIRE(std::vector<std::int32_t>(g.tokens[std::size_t(s)].begin(), g.tokens[std::size_t(s)].begin() + std::ptrdiff_t(n)) ==
            a.tokens[std::size_t(s)]);
  }
  // MVAR at cfg 1 (no unconditional half) takes the null class too.
  SampleOptions m;
  m.cfg = 1.0f;
  REQUIRE_NOTHROW(tiny_run<ScaleMarkov>(1, one, m));
  // Beyond the null class stays refused.
  const std::vector<int> beyond = {null + 1};
  REQUIRE_THROWS_WITH(tiny_run<ScaleMarkov>(1, beyond, o), Catch::Contains("class label 1001 is out of range [0, 999] (1000 = the null class)"));
}

TEST_CASE("A model without a null class refuses the null label and guidance", "[zoo][null][errors]") {
  // The tiny file with class_emb cut to num_classes rows: ModelConfig::null_class = false binds it.
  constexpr ModelConfig no_null = [] {
    ModelConfig c = presets::tiny;
    c.null_class = false;
    return c;
  }();
  const auto w = test::load_fixture("tiny.transformer.safetensors");
  std::vector<TensorRef> refs;
  for (auto t : w.tensors()) {
    if (t.name == "class_emb.weight") {
      t.shape[0] -= 1;
      t.nbytes -= std::size_t(t.shape[1]) * 4;
    }
    refs.push_back(t);
  }
  const TensorStore cut("<tiny without null class>", refs, std::make_shared<TensorStore>(w));
  REQUIRE_THROWS_WITH(Tiny(cut), Catch::Contains("'class_emb.weight' has shape (1000, 128), expected (1001, 128)"));
  const Transformer<no_null> model(cut);
  auto& S = tiny_setup();
  ThreadPool pool(1);
  ScaleMarkov mvar_traj(no_null);
  FullPrefix var_traj(no_null);
  const std::vector<int> null_label = {1000}, real = {7};
  SampleOptions o;
  REQUIRE_THROWS_WITH(sample(pool, model, S.quant, mvar_traj, null_label, o),
                      Catch::Contains("class label 1000 is the null class, but this model has none"));
  REQUIRE_THROWS_WITH(sample(pool, model, S.quant, var_traj, real, o), Catch::Contains("needs the null class"));
  o.cfg = 1.0f;  // MVAR without guidance never builds the unconditional half
  const Generation g = sample(pool, model, S.quant, mvar_traj, real, o);
  REQUIRE(g.tokens.size() == std::size_t(presets::tiny.num_scales()));
  STATIC_REQUIRE(no_null.parameters() == presets::tiny.parameters() - presets::tiny.width);
}

TEST_CASE("Shared AdaLN binds any configuration: a random depth-3 model, fp32 and bf16 packed", "[zoo][binding]") {
  constexpr ModelConfig cfg = [] {
    ModelConfig c = presets::saln512_tiny;
    c.depth = 3;
    c.width = 192;
    c.heads = 3;
    c.vocab = 256;
    return c;
  }();
  const auto st = test::random_transformer(cfg, 4);
  std::int64_t params = 0;
  for (const auto& t : st.tensors())
    if (t.name != "lvl_1L" && t.name.find("zero_k_bias") == std::string::npos) params += t.numel();
  REQUIRE(params == cfg.parameters());
  const Transformer<cfg> f32(st), bf16(st, WeightLayout::PackedBF16);
  REQUIRE(f32.weight_bytes() == std::size_t(cfg.parameters()) * 4);
  // Block i's AdaLN = shared projection + ada_gss_i: two blocks differ by exactly their offsets.
  ThreadPool pool(1);
  const std::vector<int> labels = {7};
  Workspace ws(Transformer<cfg>::conditioning_bytes(1));
  const auto c = f32.condition(pool, labels, ws);
  const auto gss0 = st.at("blocks.0.ada_gss").to_float(), gss2 = st.at("blocks.2.ada_gss").to_float();
  double worst = 0;
  for (int j = 0; j < 6 * cfg.width; ++j) {
    const double want = double(gss2[std::size_t(j)]) - gss0[std::size_t(j)];
    const double got = double(c.ada(2, j)) - c.ada(0, j);
    const double d = std::fabs(got - want);
    worst = test::nan_max(worst, d);
  }
  CHECK(worst <= 1e-6);  // two float32 additions of values ≲ 1
#if defined(MVAR_HAS_BF16_GEMM)
  CHECK(bf16.weight_bytes() < f32.weight_bytes());
#endif
}

// ---- through the pipeline ----------------------------------------------------------------------

#include "mvar/pipeline/builtin_presets.hpp"
#include "mvar/pipeline/pipeline.hpp"

TEST_CASE("Preset table: saln512_tiny, tiny and d36 recognised from the shapes", "[zoo][pipeline][detect]") {
  const PresetTable t = builtin_presets();
  CHECK(t.recognise(test::load_fixture("saln512_tiny.transformer.safetensors")).name == "saln512_tiny");
  CHECK(t.recognise(test::load_fixture("tiny.transformer.safetensors")).name == "tiny");
  const Preset* d36 = t.find("d36");
  REQUIRE(d36);
  CHECK(d36->image_side() == 512);
  CHECK(d36->arch.shared_aln);
  CHECK(same_architecture(d36->arch, presets::d36));
}

TEST_CASE("Pipeline: the 512-px shared-AdaLN model draws the official greedy image", "[zoo][pipeline][fixtures]") {
  const Run run;
  const auto gr = test::load_fixture(run.cfg.at("greedy_file").get<std::string>());
  Pipeline p({.transformer = test::fixture_path(run.cfg.at("transformer_file").get<std::string>()),
              .vae = test::fixture_path(run.cfg.at("vae_file").get<std::string>()),
              .description = test::fixture_path("var512_saln_tiny.config.json"),
              .threads = 2});
  CHECK(p.info().preset == "saln512_tiny");
  CHECK(p.info().mode == Mode::Var);  // config.json "model": "var"
  CHECK(p.info().image_side == 512);
  const Images im = p.generate({.labels = labels_of(gr), .cfg = run.cfg_scale, .top_p = 1.0f, .top_k = 1});
  const auto want = gr.at("img_u8").to_int();
  REQUIRE(im.rgb.size() == want.size());
  std::size_t off = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const auto d = std::abs(std::int64_t(im.rgb[i]) - want[i]);
    REQUIRE(d <= 1);
    off += d != 0;
  }
  CHECK(double(off) <= kU8MaxOffFraction * double(want.size()));
  // The null class and more_smooth through the pipeline: refused with greedy, deterministic else.
  const int null = p.info().label_of("null");
  CHECK(null == run.cfg.at("num_classes").get<int>());
  REQUIRE_THROWS_WITH(p.generate({.labels = {null}, .top_k = 1, .more_smooth = true}), Catch::Contains("more_smooth with top_k 1"));
  const Images a = p.generate({.labels = {null}, .seed = 3, .more_smooth = true});
  const Images b = p.generate({.labels = {null}, .seed = 3, .more_smooth = true});
  const Images c = p.generate({.labels = {null}, .seed = 3});
  CHECK(a.settings.more_smooth);
  CHECK(a.rgb == b.rgb);
  CHECK(a.rgb != c.rgb);
}

TEST_CASE("config.json and the file disagree on the AdaLN layout: one error naming both", "[zoo][pipeline][errors]") {
  // The 512-px shared-AdaLN description beside the per-block 256-px tiny transformer.
  const std::string desc = test::fixture_path("var512_saln_tiny.config.json");
  try {
    Pipeline p({.transformer = test::fixture_path("tiny.transformer.safetensors"), .vae = test::fixture_path("tiny.vae.safetensors"),
                .description = desc});
    FAIL("a shared-AdaLN description accepted for a per-block file");
  } catch (const Error& e) {
    const std::string msg = e.what();
    CHECK_THAT(msg, Catch::Contains(desc));
    CHECK_THAT(msg, Catch::Contains("shared_aln true, but the file has per-block AdaLN"));
    CHECK_THAT(msg, Catch::Contains("L = Σ patch_nums² = 2240"));
  }
}
