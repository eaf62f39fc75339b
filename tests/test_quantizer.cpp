// VectorQuantizer (model/quantizer.hpp): Phi against units.safetensors, the Phi index table, and
// the whole VQ stage teacher-forced through both traces (f̂ after every scale and the next input),
// independent of the transformer.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fixtures_path.hpp"
#include "mvar/model/quantizer.hpp"
#include "model_test_util.hpp"

using mvar::TensorView;

namespace {

// The fixtures README measures the float32 reference's f̂ within 2.3e-6 of float64 and suggests
// atol 5e-5 for f̂ / next_in (a few times that, for a different summation order).
constexpr double kFhatTol = 5e-5;
// One Phi application on values |x| ≲ 4: a 288-term float32 conv sum — a few 1e-6 at most.
constexpr double kPhiTol = 1e-5;

const std::vector<int> kPatchNums = {1, 2, 3, 4, 5, 6, 8, 10, 13, 16};

// An in-memory store over float vectors the caller keeps alive.
mvar::TensorStore make_store(const std::vector<std::pair<std::string, std::pair<std::vector<std::int64_t>, const std::vector<float>*>>>& ts) {
  std::vector<mvar::TensorRef> refs;
  for (const auto& [name, sv] : ts)
    refs.push_back({name, mvar::DType::F32, sv.first, reinterpret_cast<const std::byte*>(sv.second->data()),
                    sv.second->size() * sizeof(float)});
  return mvar::TensorStore("in-memory", std::move(refs), nullptr);
}

double max_abs_diff(const float* a, const float* b, std::size_t n) {
  double m = 0;
  for (std::size_t i = 0; i < n; ++i) m = mvar::test::nan_max(m, std::abs(double(a[i]) - double(b[i])));
  return m;
}

}  // namespace

TEST_CASE("Phi index per scale: SPEC table, fixture, and the float64 rule", "[model][quantizer][fixture]") {
  const auto units = mvar::test::load_fixture("units.safetensors");
  const auto want = units.at("phi.index_per_scale").to_int();
  const auto vae = mvar::test::load_fixture("tiny.vae.safetensors");
  const mvar::VectorQuantizer q(vae, kPatchNums, 32, 4096);
  REQUIRE(want.size() == 10);
  for (int s = 0; s < 10; ++s) {
    CAPTURE(s);
    REQUIRE(q.phi_index(s) == want[std::size_t(s)]);
    // The official float64 argmin resolves the two exact ties (s = 2, 7) the same way.
    REQUIRE(mvar::detail::phi_index_computed(s, 10, 4) == want[std::size_t(s)]);
  }
  // Other lists: K = 1 is fully shared; K = 4 over 4 scales spreads one conv per scale.
  for (int s = 0; s < 5; ++s) REQUIRE(mvar::detail::phi_index_computed(s, 5, 1) == 0);
  for (int s = 0; s < 4; ++s) REQUIRE(mvar::detail::phi_index_computed(s, 4, 4) == s);
}

TEST_CASE("Phi through add_scale at the last scale == units phi.out", "[model][quantizer][fixture]") {
  // At the last scale add_scale applies Phi to codebook[tokens] without interpolation. A codebook
  // whose entry t is pixel t of phi.in, tokens 0..255 and f̂ = 0 make add_scale compute Phi(phi.in).
  const auto units = mvar::test::load_fixture("units.safetensors");
  const auto in = units.at("phi.in").to_float(), want = units.at("phi.out").to_float();
  const auto w = units.at("phi.weight").to_float(), b = units.at("phi.bias").to_float();
  REQUIRE(units.at("phi.in").shape == std::vector<std::int64_t>{1, 32, 16, 16});
  std::vector<float> codebook(256 * 32);
  for (int t = 0; t < 256; ++t)
    for (int c = 0; c < 32; ++c) codebook[std::size_t(t * 32 + c)] = in[std::size_t(c * 256 + t)];
  std::vector<std::pair<std::string, std::pair<std::vector<std::int64_t>, const std::vector<float>*>>> ts;
  ts.push_back({"quantize.embedding.weight", {{256, 32}, &codebook}});
  for (int k = 0; k < 4; ++k) {
    ts.push_back({mvar::concat("quantize.quant_resi.qresi_ls.", k, ".weight"), {{32, 32, 3, 3}, &w}});
    ts.push_back({mvar::concat("quantize.quant_resi.qresi_ls.", k, ".bias"), {{32}, &b}});
  }
  const auto store = make_store(ts);
  const mvar::VectorQuantizer q(store, {1, 16}, 32, 256);
  mvar::ThreadPool pool(2);
  mvar::Workspace ws(q.workspace_bytes());
  std::vector<float> fhat(32 * 256, 0.f);
  std::vector<std::int32_t> tokens(256);
  for (int t = 0; t < 256; ++t) tokens[std::size_t(t)] = t;
  q.add_scale(pool, 1, tokens, TensorView<float, 3>(fhat.data(), {32, 16, 16}), ws);
  REQUIRE(max_abs_diff(fhat.data(), want.data(), want.size()) <= kPhiTol);
  REQUIRE(ws.used() == 0);                          // scratch handed back
  REQUIRE(ws.high_water() <= q.workspace_bytes());  // and sized correctly
}

TEST_CASE("VQ stage teacher-forced through the traces: f̂ and next input at every scale", "[model][quantizer][fixture]") {
  const auto vae = mvar::test::load_fixture("tiny.vae.safetensors");
  const int threads = GENERATE(1, 2);
  mvar::ThreadPool pool(threads);
  for (const char* kind : {"var", "mvar"}) {
    SECTION(kind) {
      // Scales, sizes, batch and file from the run's config.json (any fixture set of this format).
      const mvar::test::FixtureRun run = mvar::test::fixture_run(kind);
      const std::vector<int> pns = run.patch_nums();
      const mvar::VectorQuantizer q(vae, pns, run.desc.vae);
      const int E = q.cvae(), P = q.latent_side(), S = q.num_scales(), B = run.batch();
      mvar::Workspace ws(q.workspace_bytes());
      const auto trace = mvar::test::load_fixture(run.trace_file);
      std::vector<float> fhat(std::size_t(B) * E * P * P, 0.f);
      for (int s = 0; s < S; ++s) {
        CAPTURE(kind, s);
        const int pn = pns[std::size_t(s)], n = pn * pn;
        const auto idx = trace.at(mvar::concat("idx.s", s)).to_int();  // [B, n]
        REQUIRE(idx.size() == std::size_t(B) * n);
        const auto want = trace.at(mvar::concat("fhat.s", s)).to_float();  // [B, E, P, P]
        REQUIRE(want.size() == fhat.size());
        const auto want_next = s + 1 < S ? trace.at(mvar::concat("next_in.s", s)).to_float() : std::vector<float>{};
        for (int b = 0; b < B; ++b) {
          CAPTURE(b);
          float* fb = fhat.data() + std::size_t(b) * E * P * P;
          const TensorView<float, 3> fv(fb, {E, P, P});
          const std::vector<std::int32_t> tokens(idx.begin() + std::ptrdiff_t(b) * n, idx.begin() + std::ptrdiff_t(b + 1) * n);
          q.add_scale(pool, s, tokens, fv, ws);
          REQUIRE(max_abs_diff(fb, want.data() + std::size_t(b) * E * P * P, std::size_t(E) * P * P) <= kFhatTol);
          if (s + 1 == S) continue;
          const int pn1 = pns[std::size_t(s + 1)], n1 = pn1 * pn1;
          std::vector<float> next(std::size_t(n1) * E);
          q.area_tokens(s + 1, fv, TensorView<float, 2>(next.data(), {n1, E}));
          REQUIRE(want_next.size() == std::size_t(B) * n1 * E);  // [B, E, pn1, pn1]
          const float* wn = want_next.data() + std::size_t(b) * n1 * E;
          double m = 0;
          for (int t = 0; t < n1; ++t)
            for (int c = 0; c < E; ++c)
              m = mvar::test::nan_max(m, std::abs(double(next[std::size_t(t * E + c)]) - wn[std::size_t(c * n1 + t)]));
          REQUIRE(m <= kFhatTol);
        }
      }
    }
  }
}

TEST_CASE("VQ stage gives identical bits for 1, 2 and 5 threads", "[model][quantizer]") {
  const auto vae = mvar::test::load_fixture("tiny.vae.safetensors");
  const mvar::test::FixtureRun run = mvar::test::fixture_run("var");
  const auto trace = mvar::test::load_fixture(run.trace_file);
  const mvar::VectorQuantizer q(vae, run.patch_nums(), run.desc.vae);
  const int E = q.cvae(), P = q.latent_side();
  std::vector<std::vector<float>> results;
  for (int threads : {1, 2, 5}) {
    mvar::ThreadPool pool(threads);
    mvar::Workspace ws(q.workspace_bytes());
    std::vector<float> fhat(std::size_t(E) * P * P, 0.f);
    for (int s = 0; s < q.num_scales(); ++s) {
      const auto idx = trace.at(mvar::concat("idx.s", s)).to_int();
      const std::size_t n = std::size_t(q.patch_num(s)) * std::size_t(q.patch_num(s));
      REQUIRE(idx.size() >= n);
      const std::vector<std::int32_t> tokens(idx.begin(), idx.begin() + std::ptrdiff_t(n));  // image 0
      q.add_scale(pool, s, tokens, TensorView<float, 3>(fhat.data(), {E, P, P}), ws);
    }
    results.push_back(fhat);
  }
  REQUIRE(std::memcmp(results[0].data(), results[1].data(), results[0].size() * sizeof(float)) == 0);
  REQUIRE(std::memcmp(results[0].data(), results[2].data(), results[0].size() * sizeof(float)) == 0);
}

TEST_CASE("VectorQuantizer lists every missing or mis-shaped tensor in one error", "[model][quantizer]") {
  std::vector<float> cb(10 * 8), w(8 * 8 * 3 * 3), wbad(8 * 8), b(8);
  const auto store = make_store({{"quantize.embedding.weight", {{10, 8}, &cb}},
                                 {"quantize.quant_resi.qresi_ls.0.weight", {{8, 8, 3, 3}, &w}},
                                 {"quantize.quant_resi.qresi_ls.0.bias", {{8}, &b}},
                                 {"quantize.quant_resi.qresi_ls.1.weight", {{8, 8, 1, 1}, &wbad}}});
  REQUIRE_NOTHROW(mvar::VectorQuantizer(store, {1, 2, 4}, 8, 10, 1));
  try {
    mvar::VectorQuantizer(store, {1, 2, 4}, 8, 10, 2);
    FAIL("expected mvar::Error");
  } catch (const mvar::Error& e) {
    const std::string msg = e.what();
    CHECK_THAT(msg, Catch::Contains("'quantize.quant_resi.qresi_ls.1.weight' has shape (8, 8, 1, 1), expected (8, 8, 3, 3)"));
    CHECK_THAT(msg, Catch::Contains("missing 'quantize.quant_resi.qresi_ls.1.bias' (expected shape (8,))"));
  }
  REQUIRE_THROWS_WITH(mvar::VectorQuantizer(store, {1, 2, 4}, 8, 12, 1),
                      Catch::Contains("'quantize.embedding.weight' has shape (10, 8), expected (12, 8)"));
  REQUIRE_THROWS_WITH(mvar::VectorQuantizer(store, {2, 2, 4}, 8, 10, 1), Catch::Contains("strictly increasing"));
}
