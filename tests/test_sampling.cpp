// Sampling pieces: top-k/top-p masks against the official masking (units fixtures), the draw's
// distribution, the CFG mix against the traces' guided logits, and the counter-based RNG.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "fixtures_path.hpp"
#include "model_test_util.hpp"
#include "mvar/sampling/cfg.hpp"
#include "mvar/sampling/rng.hpp"
#include "mvar/sampling/top_k_top_p.hpp"

using namespace mvar;

TEST_CASE("top-k/top-p masks equal the official masking", "[sampling][fixtures]") {
  const auto u = test::load_fixture("units.safetensors");
  for (const char* name : {"k5", "p0.8", "k20_p0.9", "ties_k3"}) {
    CAPTURE(name);
    const auto in = u.at(concat("topkp.", name, ".in")).to_float();
    const auto want = u.at(concat("topkp.", name, ".masked")).to_float();
    const auto params = u.at(concat("topkp.", name, ".params")).to_float();
    const auto& shape = u.at(concat("topkp.", name, ".in")).shape;
    const std::size_t V = std::size_t(shape.back()), rows = in.size() / V;
    std::vector<float> scratch(V);
    std::vector<std::uint64_t> keys(V);
    for (std::size_t r = 0; r < rows; ++r) {
      std::vector<float> row(in.begin() + std::ptrdiff_t(r * V), in.begin() + std::ptrdiff_t((r + 1) * V));
      const float top_p = params[1] > 0 ? params[1] : 1.0f;
      top_k_top_p_mask(row, int(params[0]), top_p, scratch, keys);
      for (std::size_t v = 0; v < V; ++v) {
        CAPTURE(r, v);
        REQUIRE(std::isinf(row[v]) == std::isinf(want[r * V + v]));  // same survivors
        if (!std::isinf(row[v])) REQUIRE(row[v] == want[r * V + v]);  // untouched values
      }
    }
  }
}

TEST_CASE("top-k keeps ties at the threshold; greedy keeps the maximum only", "[sampling]") {
  std::vector<float> l = {1, 5, 3, 5, 5, 2}, scratch(6);
  std::vector<std::uint64_t> keys(6);
  top_k_top_p_mask(l, 2, 1.0f, scratch, keys);
  REQUIRE(std::isinf(l[0]));
  REQUIRE(l[1] == 5);
  REQUIRE(l[3] == 5);
  REQUIRE(l[4] == 5);  // three survive a top-2 because of the tie
  std::vector<float> g = {0.5f, 2.0f, 1.0f};
  top_k_top_p_mask(g, 1, 1.0f, scratch, keys);
  REQUIRE(sample_categorical(g, 0.0) == 1);
  REQUIRE(sample_categorical(g, 0.999999) == 1);
}

TEST_CASE("top-p orders ties by index and treats -0 as +0, like a stable sort of the values", "[sampling]") {
  // The definition: sort the finite survivors ascending with a stable sort (ties keep index
  // order), softmax, running sum, remove positions with c <= 1 - p except the last. Rows drawn
  // from a few values (many ties, both zeros) must get exactly this mask from the key sort.
  auto reference = [](std::vector<float> l, float p) {
    std::vector<std::int32_t> order;
    for (std::size_t v = 0; v < l.size(); ++v)
      if (l[v] != -std::numeric_limits<float>::infinity()) order.push_back(std::int32_t(v));
    std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return l[std::size_t(a)] < l[std::size_t(b)]; });
    const float mx = l[std::size_t(order.back())];
    std::vector<float> e(order.size());
    float sum = 0.f;
    for (std::size_t j = 0; j < order.size(); ++j) sum += (e[j] = std::exp(l[std::size_t(order[j])] - mx));
    float c = 0.f;
    for (std::size_t j = 0; j + 1 < order.size(); ++j) {
      c += e[j] / sum;
      if (c <= float(1.0 - double(p))) l[std::size_t(order[j])] = -std::numeric_limits<float>::infinity();
    }
    return l;
  };
  const float values[] = {-2.f, -0.0f, 0.0f, 0.5f, 1.f, 3.f};
  std::mt19937 rng(3);
  for (int trial = 0; trial < 300; ++trial) {
    const std::size_t V = 1 + rng() % 64;
    std::vector<float> l(V);
    for (auto& x : l) x = values[rng() % 6];
    const float p = 0.05f + 0.9f * float(rng() % 1000) / 1000.f;
    std::vector<float> got = l, scratch(V);
    std::vector<std::uint64_t> keys(V);
    top_k_top_p_mask(got, 0, p, scratch, keys);
    const auto want = reference(l, p);
    CAPTURE(trial, V, p);
    for (std::size_t v = 0; v < V; ++v) REQUIRE(std::isinf(got[v]) == std::isinf(want[v]));
  }
}

TEST_CASE("the categorical draw follows softmax(logits)", "[sampling][statistics]") {
  const std::vector<float> logits = {0.0f, std::log(2.0f), std::log(3.0f), -std::numeric_limits<float>::infinity()};
  const CounterRng rng(123);
  std::vector<int> count(4, 0);
  const int N = 60000;
  for (int i = 0; i < N; ++i) count[std::size_t(sample_categorical(logits, rng.uniform(0, 0, std::uint32_t(i))))]++;
  REQUIRE(count[3] == 0);  // masked entries are never drawn
  // Expected 1/6, 2/6, 3/6; binomial σ ≤ √(N/4) ≈ 122 → 5σ bands.
  for (int v = 0; v < 3; ++v) REQUIRE(std::abs(count[std::size_t(v)] - N * (v + 1) / 6) < 5 * 122);
}

TEST_CASE("CFG mix reproduces the traces' guided logits bit for bit", "[sampling][fixtures]") {
  for (const char* kind : {"var", "mvar"}) {
    const test::FixtureRun run = test::fixture_run(kind);  // cfg, scales and CFG rows from its config.json
    CAPTURE(kind, run.cfg);
    const auto tr = test::load_fixture(run.trace_file);
    const int S = run.scales();
    for (int s = 0; s < S; ++s) {
      CAPTURE(s);
      const auto c = tr.at(concat("logits_cond.s", s)).to_float();
      const auto want = tr.at(concat("logits_mixed.s", s)).to_float();
      if (!run.cfg_doubled) {  // MVAR at cfg = 1: no unconditional half, the guided logits are the conditional ones
        REQUIRE(tr.find(concat("logits_uncond.s", s)) == nullptr);
        REQUIRE(c == want);
        continue;
      }
      const auto u = tr.at(concat("logits_uncond.s", s)).to_float();
      std::vector<float> got(c.size());
      cfg_mix(c, u, cfg_weight(run.cfg, s, S), got);
      REQUIRE(got == want);
    }
  }
}

TEST_CASE("counter-based RNG: deterministic, independent streams, uniform", "[sampling][rng]") {
  const CounterRng a(7), b(7), c(8);
  REQUIRE(a.uniform(3, 4, 5) == b.uniform(3, 4, 5));
  REQUIRE(a.uniform(3, 4, 5) != c.uniform(3, 4, 5));
  REQUIRE(a.uniform(3, 4, 5) != a.uniform(4, 4, 5));
  REQUIRE(a.uniform(3, 4, 5) != a.uniform(3, 5, 5));
  double sum = 0, sum2 = 0;
  std::set<double> seen;
  const int N = 100000;
  for (int i = 0; i < N; ++i) {
    const double x = a.uniform(0, 0, std::uint32_t(i));
    REQUIRE(x >= 0.0);
    REQUIRE(x < 1.0);
    sum += x;
    sum2 += x * x;
    seen.insert(x);
  }
  REQUIRE(seen.size() == std::size_t(N));
  REQUIRE(std::abs(sum / N - 0.5) < 0.005);              // σ of the mean = 0.29/√N ≈ 0.0009
  REQUIRE(std::abs(sum2 / N - 1.0 / 3.0) < 0.005);
}

TEST_CASE("the draw refuses a row without a finite maximum or with NaN: -1, never a silent token 0 (F5)",
          "[sampling][nonfinite]") {
  constexpr float kNaN = std::numeric_limits<float>::quiet_NaN(), kInf = std::numeric_limits<float>::infinity();
  const std::vector<std::vector<float>> bad = {
      {kNaN, kNaN, kNaN, kNaN},     // all NaN (NaN weights)
      {-kInf, -kInf, -kInf, -kInf}, // nothing finite
      {1.0f, kInf, 2.0f, 0.0f},     // infinite maximum
      {1.0f, kNaN, 2.0f, 0.0f},     // one NaN among finite logits
      {kNaN, -kInf, kInf, 3.0f},
  };
  std::vector<float> scratch(4);
  std::vector<std::uint64_t> keys(4);
  for (const auto& row : bad) {
    for (double u : {0.0, 0.5, 0.999}) REQUIRE(sample_categorical(row, u) == -1);
    // The masks keep such a row detectable: the sampler masks first and draws second.
    for (int k : {0, 1, 2}) {
      for (float p : {1.0f, 0.5f, 0.01f}) {
        CAPTURE(k, p);
        auto masked = row;
        top_k_top_p_mask(masked, k, p, scratch, keys);
        REQUIRE(sample_categorical(masked, 0.3) == -1);
      }
    }
  }
  // -Inf entries next to finite ones are ordinary masked entries.
  const std::vector<float> ok = {-kInf, 0.5f, -kInf, 0.25f};
  REQUIRE(sample_categorical(ok, 0.0) == 1);
  REQUIRE(sample_categorical(ok, 0.999) == 3);
}
