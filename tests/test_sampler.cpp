// The generic next-scale sampler on the fixtures' tiny VAR and MVAR models: the greedy token
// pyramids equal the official ones exactly (free-running, no teacher forcing); teacher-forced f̂
// and guided logits follow the sampling trace; determinism across thread counts and batch
// composition; MVAR keeps no K/V; bad options are rejected with clear errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <limits>

#include "fixtures_path.hpp"
#include "model_test_util.hpp"
#include "mvar/model/quantizer.hpp"
#include "mvar/model/transformer.hpp"
#include "mvar/sampling/sampler.hpp"

using namespace mvar;

namespace {

using Tiny = Transformer<presets::tiny>;

struct TinySetup {
  TensorStore w = test::load_fixture("tiny.transformer.safetensors");
  TensorStore vae = test::load_fixture("tiny.vae.safetensors");
  Tiny model{w};
  VectorQuantizer quant{vae, test::fixture_run("mvar").patch_nums(), test::fixture_run("mvar").desc.vae};
};

TinySetup& setup() {
  static TinySetup s;
  return s;
}

std::vector<int> labels_of(const TensorStore& st) {
  std::vector<int> l;
  for (auto v : st.at("labels").to_int()) l.push_back(int(v));
  return l;
}

// The greedy run uses the run's labels and cfg with top_k = 1 and top_p off (fixtures README).
template <class Trajectory>
void check_greedy(const std::string& model_kind, int threads) {
  auto& S = setup();
  const test::FixtureRun run = test::fixture_run(model_kind);
  REQUIRE(same_architecture(run.desc.arch, presets::tiny));
  const auto gr = test::load_fixture(run.greedy_file);
  REQUIRE(labels_of(gr) == run.labels);
  ThreadPool pool(threads);
  Trajectory traj(Tiny::config);
  SampleOptions o;
  o.cfg = run.cfg;
  o.top_k = 1;
  o.top_p = 1.0f;
  const auto g = sample(pool, S.model, S.quant, traj, labels_of(gr), o);
  REQUIRE(int(g.tokens.size()) == run.scales());
  for (int s = 0; s < run.scales(); ++s) {
    CAPTURE(s);
    const auto want = gr.at(concat("idx.s", s)).to_int();
    REQUIRE(g.tokens[std::size_t(s)].size() == want.size());
    for (std::size_t i = 0; i < want.size(); ++i) REQUIRE(g.tokens[std::size_t(s)][i] == want[i]);
  }
  const auto fhat = gr.at(concat("fhat.s", run.scales() - 1)).to_float();
  REQUIRE(fhat.size() == g.fhat.size());
  CHECK(test::max_abs_diff(g.fhat.data(), fhat.data(), fhat.size()) <= test::kFhatAtol);
}

// Teacher-forced along the sampling trace: the drawn tokens are replaced by the trace's.
template <class Trajectory>
void check_trace(const std::string& model_kind) {
  auto& S = setup();
  const test::FixtureRun run = test::fixture_run(model_kind);
  REQUIRE(same_architecture(run.desc.arch, presets::tiny));
  const auto tr = test::load_fixture(run.trace_file);
  REQUIRE(labels_of(tr) == run.labels);
  ThreadPool pool(2);
  Trajectory traj(Tiny::config);
  SampleOptions o;  // the run's settings (its config.json); the drawn tokens are forced below
  o.cfg = run.cfg;
  o.top_k = run.top_k;
  o.top_p = run.top_p;
  o.seed = run.seed;
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
    for (std::ptrdiff_t r = 0; r < g.extent(0); ++r)
      worst = mvar::test::nan_max(worst, std::fabs(test::logsumexp(g.row(r), std::size_t(g.extent(1))) - lse[std::size_t(r)]));
    CHECK(worst <= test::kLogitAtol);
    ++guided_checked;
  };
  o.on_fhat = [&](int s, TensorView<const float, 4> f) {
    CAPTURE(s);
    const auto want = tr.at(concat("fhat.s", s)).to_float();
    REQUIRE(want.size() == std::size_t(f.size()));
    CHECK(test::max_abs_diff(f.data(), want.data(), want.size()) <= test::kFhatAtol);
    ++fhat_checked;
  };
  sample(pool, S.model, S.quant, traj, labels_of(tr), o);
  REQUIRE(guided_checked == run.scales());
  REQUIRE(fhat_checked == run.scales());
}

}  // namespace

TEST_CASE("MVAR greedy pyramid equals the official one exactly", "[sampler][fixtures]") {
  check_greedy<ScaleMarkov>("mvar", 2);
}
TEST_CASE("VAR greedy pyramid equals the official one exactly", "[sampler][fixtures]") {
  check_greedy<FullPrefix>("var", 2);
}
TEST_CASE("MVAR sampling trace: guided logits and f̂ after every scale, teacher-forced", "[sampler][fixtures]") {
  check_trace<ScaleMarkov>("mvar");
}
TEST_CASE("VAR sampling trace: guided logits and f̂ after every scale, teacher-forced", "[sampler][fixtures]") {
  check_trace<FullPrefix>("var");
}

TEST_CASE("Same seed → same tokens for 1, 2 and 3 threads and any batch composition", "[sampler][determinism]") {
  auto& S = setup();
  SampleOptions o;
  o.seed = 42;
  const std::vector<int> labels = {3, 207, 980};
  std::vector<Generation> runs;
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    ScaleMarkov traj(Tiny::config);
    runs.push_back(sample(pool, S.model, S.quant, traj, labels, o));
  }
  for (std::size_t r = 1; r < runs.size(); ++r) {
    REQUIRE(runs[r].tokens == runs[0].tokens);
    REQUIRE(std::memcmp(runs[r].fhat.data(), runs[0].fhat.data(), runs[0].fhat.bytes()) == 0);
  }
  // Image 2 of the batch == the same label generated alone as stream index 2.
  ThreadPool pool(2);
  ScaleMarkov traj(Tiny::config);
  SampleOptions alone = o;
  alone.first_index = 2;
  const std::vector<int> one = {980};
  const auto g = sample(pool, S.model, S.quant, traj, one, alone);
  for (int s = 0; s < 10; ++s) {
    const auto n = std::size_t(presets::tiny.patch_nums.tokens(s));
    const auto& batch = runs[0].tokens[std::size_t(s)];
    REQUIRE(std::vector<std::int32_t>(batch.begin() + std::ptrdiff_t(2 * n), batch.begin() + std::ptrdiff_t(3 * n)) == g.tokens[std::size_t(s)]);
  }
  REQUIRE(std::memcmp(g.fhat.data(), runs[0].image_fhat(2).data(), g.fhat.bytes()) == 0);
}

TEST_CASE("MVAR holds no K/V; VAR's cache is the SPEC §4.4 size", "[sampler][memory]") {
  auto& S = setup();
  ThreadPool pool(2);
  SampleOptions o;
  const std::vector<int> labels = {1, 2};
  ScaleMarkov mvar_traj(Tiny::config);
  FullPrefix var_traj(Tiny::config);
  const auto a = sample(pool, S.model, S.quant, mvar_traj, labels, o);
  const auto b = sample(pool, S.model, S.quant, var_traj, labels, o);
  REQUIRE(a.kv_bytes == 0);
  // depth × (K, V) × 2B rows × L × C × 4 bytes
  REQUIRE(b.kv_bytes == std::size_t(2) * 2 * 4 * 680 * 128 * 4);
  REQUIRE(a.workspace_high_water > 0);
  REQUIRE(a.workspace_high_water <= a.workspace_bytes);
}

TEST_CASE("The sampler's workspace can be lent out between generations (one arena with the decoder)", "[sampler][memory]") {
  auto& S = setup();
  ThreadPool pool(2);
  ScaleMarkov traj(Tiny::config);
  SampleOptions o;
  o.seed = 7;
  const std::vector<int> labels = {5, 600};
  Sampler<Tiny, ScaleMarkov> own(S.model, S.quant, traj, pool, 2);
  const std::size_t lend = own.workspace_bytes() * 3;
  Sampler<Tiny, ScaleMarkov> shared(S.model, S.quant, traj, pool, 2, lend);
  REQUIRE(shared.workspace_bytes() >= lend);
  const Generation a = own.generate(labels, o);
  const Generation b = shared.generate(labels, o);
  // A borrower fills the whole arena with garbage and leaves something taken: the next
  // generation starts from a reset arena and gives the same tokens and f̂.
  mvar::Workspace& ws = shared.workspace();
  ws.reset();
  float* junk = ws.take<float>(lend / sizeof(float) - 64);
  std::fill(junk, junk + (lend / sizeof(float) - 64), std::numeric_limits<float>::quiet_NaN());
  const Generation c = shared.generate(labels, o);
  REQUIRE(b.tokens == a.tokens);
  REQUIRE(c.tokens == a.tokens);
  REQUIRE(std::memcmp(c.fhat.data(), a.fhat.data(), a.fhat.bytes()) == 0);
}

TEST_CASE("Bad sampling options are rejected with clear errors", "[sampler][errors]") {
  auto& S = setup();
  ThreadPool pool(1);
  ScaleMarkov traj(Tiny::config);
  auto err = [&](std::vector<int> labels, SampleOptions o) -> std::string {
    try {
      sample(pool, S.model, S.quant, traj, labels, o);
    } catch (const Error& e) {
      return e.what();
    }
    return "<no error>";
  };
  SampleOptions ok;
  CHECK_THAT(err({}, ok), Catch::Contains("batch is empty"));
  CHECK_THAT(err({1001}, ok), Catch::Contains("class label 1001 is out of range [0, 999] (1000 = the null class)"));
  CHECK_THAT(err({-1}, ok), Catch::Contains("class label -1 is out of range"));
  auto o = ok;
  o.cfg = -0.5f;
  CHECK_THAT(err({1}, o), Catch::Contains("cfg must be a finite number ≥ 0"));
  o = ok;
  o.top_k = -3;
  CHECK_THAT(err({1}, o), Catch::Contains("top_k must be ≥ 0"));
  for (float p : {0.0f, -0.1f, 1.5f}) {
    o = ok;
    o.top_p = p;
    CHECK_THAT(err({1}, o), Catch::Contains("top_p must be in (0, 1]"));
  }
}
