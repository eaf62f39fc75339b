// Bicubic and area resampling (kernels/resample.hpp): against the official PyTorch outputs in
// units.safetensors, against the float64 reference for many sizes, and against SPEC §5.2's table.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "fixtures_path.hpp"
#include "mvar/kernels/resample.hpp"
#include "reference/vae_ref.hpp"
#include "model_test_util.hpp"

using mvar::TensorView;

namespace {

// Both resamplings sum ≤ 16 float32 products of values |x| ≲ 4 with weights |w| ≤ 1.3 (or average
// ≤ 64 values): a few float32 ulps at 4 (≈ 5e-7 each). 1e-5 leaves a 10× margin over that and is
// still 1000× below any wrong tap or window (errors of order 0.1–1).
constexpr double kResampleTol = 1e-5;

template <class A, class B>
double max_abs_diff(const A& a, const B& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = mvar::test::nan_max(m, std::abs(double(a[i]) - double(b[i])));
  return m;
}

std::vector<float> random_image(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, 1.5f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

}  // namespace

TEST_CASE("bicubic_resize matches PyTorch (units bicubic.pn1..13 → 16)", "[kernels][resample][fixture]") {
  const auto units = mvar::test::load_fixture("units.safetensors");
  for (int p = 1; p <= 13; ++p) {
    CAPTURE(p);
    const auto& tin = units.at(mvar::concat("bicubic.pn", p, ".in"));
    const auto& tout = units.at(mvar::concat("bicubic.pn", p, ".out"));
    REQUIRE(tin.shape == std::vector<std::int64_t>{1, 4, p, p});
    REQUIRE(tout.shape == std::vector<std::int64_t>{1, 4, 16, 16});
    const auto in = tin.to_float(), want = tout.to_float();
    std::vector<float> got(want.size(), -99.f);
    mvar::bicubic_resize(TensorView<const float, 3>(in.data(), {4, p, p}), TensorView<float, 3>(got.data(), {4, 16, 16}));
    REQUIRE(max_abs_diff(got, want) <= kResampleTol);
  }
}

TEST_CASE("area_resize matches PyTorch (units area.pn1..13 from 16)", "[kernels][resample][fixture]") {
  const auto units = mvar::test::load_fixture("units.safetensors");
  int found = 0;
  for (int p = 1; p <= 16; ++p) {
    const auto* tin = units.find(mvar::concat("area.pn", p, ".in"));
    if (!tin) continue;
    CAPTURE(p);
    ++found;
    const auto in = tin->to_float(), want = units.at(mvar::concat("area.pn", p, ".out")).to_float();
    REQUIRE(want.size() == std::size_t(4 * p * p));
    std::vector<float> got(want.size(), -99.f);
    mvar::area_resize(TensorView<const float, 3>(in.data(), {4, 16, 16}), TensorView<float, 3>(got.data(), {4, p, p}));
    REQUIRE(max_abs_diff(got, want) <= kResampleTol);
  }
  REQUIRE(found >= 10);  // the fixture covers the model's scales at least
}

TEST_CASE("area windows equal SPEC §5.2's table", "[kernels][resample]") {
  using W = std::vector<std::pair<int, int>>;
  const std::vector<std::pair<int, W>> table = {
      {2, {{0, 8}, {8, 16}}},
      {3, {{0, 6}, {5, 11}, {10, 16}}},
      {4, {{0, 4}, {4, 8}, {8, 12}, {12, 16}}},
      {5, {{0, 4}, {3, 7}, {6, 10}, {9, 13}, {12, 16}}},
      {6, {{0, 3}, {2, 6}, {5, 8}, {8, 11}, {10, 14}, {13, 16}}},
      {7, {{0, 3}, {2, 5}, {4, 7}, {6, 10}, {9, 12}, {11, 14}, {13, 16}}},
      {10, {{0, 2}, {1, 4}, {3, 5}, {4, 7}, {6, 8}, {8, 10}, {9, 12}, {11, 13}, {12, 15}, {14, 16}}},
      {13, {{0, 2}, {1, 3}, {2, 4}, {3, 5}, {4, 7}, {6, 8}, {7, 9}, {8, 10}, {9, 12}, {11, 13}, {12, 14}, {13, 15}, {14, 16}}},
  };
  for (const auto& [pn, wins] : table)
    for (int i = 0; i < pn; ++i) {
      CAPTURE(pn, i);
      const auto w = mvar::area_window(i, 16, pn);
      REQUIRE(w.begin == wins[std::size_t(i)].first);
      REQUIRE(w.end == wins[std::size_t(i)].second);
    }
  for (int i = 0; i < 8; ++i) REQUIRE(mvar::area_window(i, 16, 8).begin == 2 * i);
  REQUIRE(mvar::area_window(0, 16, 1).end == 16);
}

TEST_CASE("resampling == float64 reference for many sizes, strided views", "[kernels][resample]") {
  const int h = GENERATE(1, 2, 3, 7, 13, 16);
  const int w = GENERATE(1, 5, 16);
  const int H = GENERATE(4, 16, 21);
  const int W = GENERATE(3, 16, 32);
  CAPTURE(h, w, H, W);
  const int C = 3;
  const auto small = random_image(std::size_t(C * h * w), unsigned(h * 131 + w));
  const auto big = random_image(std::size_t(C * H * W), unsigned(H * 7 + W));

  if (H >= h && W >= w) {  // upsampling direction (the model's use); downsizing works too
    // Output through a strided view (row stride W + 3) to prove strides are honoured.
    std::vector<float> buf(std::size_t(C * H * (W + 3)), 1e9f);
    TensorView<float, 3> out(buf.data(), {C, H, W}, {H * (W + 3), W + 3, 1});
    mvar::bicubic_resize(TensorView<const float, 3>(small.data(), {C, h, w}), out);
    const auto want = mvar::ref::bicubic(small, C, h, w, H, W);
    double m = 0;
    for (int c = 0; c < C; ++c)
      for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x) m = mvar::test::nan_max(m, std::abs(out(c, y, x) - want[std::size_t((c * H + y) * W + x)]));
    REQUIRE(m <= kResampleTol);
  }
  if (H >= h && W >= w) {
    std::vector<float> got(std::size_t(C * h * w));
    mvar::area_resize(TensorView<const float, 3>(big.data(), {C, H, W}), TensorView<float, 3>(got.data(), {C, h, w}));
    REQUIRE(max_abs_diff(got, mvar::ref::area(big, C, H, W, h, w)) <= kResampleTol);
  }
}

TEST_CASE("resampling properties: constants stay constant, same size is identity", "[kernels][resample]") {
  std::vector<float> one(2, 0.f);
  one[0] = 3.25f, one[1] = -1.5f;
  std::vector<float> up(2 * 16 * 16);
  mvar::bicubic_resize(TensorView<const float, 3>(one.data(), {2, 1, 1}), TensorView<float, 3>(up.data(), {2, 16, 16}));
  for (int i = 0; i < 256; ++i) REQUIRE(up[std::size_t(i)] == Approx(3.25f).margin(kResampleTol));
  for (int i = 256; i < 512; ++i) REQUIRE(up[std::size_t(i)] == Approx(-1.5f).margin(kResampleTol));
  const auto img = random_image(3 * 16 * 16, 5);
  std::vector<float> same(img.size());
  mvar::area_resize(TensorView<const float, 3>(img.data(), {3, 16, 16}), TensorView<float, 3>(same.data(), {3, 16, 16}));
  REQUIRE(same == img);
  // Bicubic to the same size hits the taps exactly (t = 0 → weights 0, 1, 0, 0).
  mvar::bicubic_resize(TensorView<const float, 3>(img.data(), {3, 16, 16}), TensorView<float, 3>(same.data(), {3, 16, 16}));
  REQUIRE(max_abs_diff(same, img) == 0.0);
}
