// Element-wise and normalisation kernels: LayerNorm, AdaLN modulation, per-head L2
// normalisation, GroupNorm, GELU(tanh), SiLU, softmax — against double references (including
// rows with a large mean, where a one-pass variance would cancel), strided views, and the
// official fixtures in units.safetensors (layernorm.*, groupnorm.*, gelu_tanh.*, silu.*).
#include <catch2/catch.hpp>

#include <cstring>

#include <cmath>
#include <numeric>
#include <random>
#include <span>
#include <vector>

#include "fixtures_path.hpp"
#include "mvar/kernels/activations.hpp"
#include "mvar/kernels/norm.hpp"
#include "mvar/kernels/softmax.hpp"
#include "reference/norm_ref.hpp"

using mvar::TensorView;

namespace {

// fp32 kernels vs double references, error normalised by max(1, max|out|). One fp32 rounding of a
// normalised value is 6e-8 relative; the statistics (fp32 lane sums combined in double) add
// ≈ 1e-7 for rows ≤ 4096; xsimd's exp/tanh are within a few ulp. The fixtures README measures
// the official fp32 code ≈ 1e-6 relative from fp64 (9.6e-6 on hidden states of ≈ 10); 1e-5 is
// that spread ×10, while a wrong eps, biased/unbiased variance or missing (1 + scale) is ≥ 1e-4.
constexpr double kElementwiseTol = 1e-5;

std::vector<float> random_vector(std::size_t n, unsigned seed, float offset = 0.f, float spread = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(offset, spread);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

}  // namespace

TEST_CASE("layer_norm == double reference, also with a large row mean and odd widths", "[kernels][norm]") {
  for (std::ptrdiff_t n : {1024, 128, 37, 1}) {
    for (float offset : {0.f, 300.f}) {
      CAPTURE(n, offset);
      const std::ptrdiff_t rows = 5;
      const auto x = random_vector(std::size_t(rows * n), 3, offset, 2.f);
      std::vector<float> y(x.size());
      mvar::layer_norm(TensorView<const float, 2>(x.data(), {rows, n}), TensorView<float, 2>(y.data(), {rows, n}));
      const auto want = mvar::ref::layer_norm(x, std::size_t(n), 1e-6);
      REQUIRE(mvar::ref::max_norm_error_d(y, want) <= kElementwiseTol);  // offset 300: ≈ 3e-6
    }
  }
}

TEST_CASE("layer_norm works in place and on strided rows", "[kernels][norm]") {
  const std::ptrdiff_t rows = 3, n = 64, stride = 200;
  auto buf = random_vector(std::size_t(rows * stride), 8);
  std::vector<float> dense(std::size_t(rows * n));
  for (std::ptrdiff_t r = 0; r < rows; ++r)
    for (std::ptrdiff_t i = 0; i < n; ++i) dense[std::size_t(r * n + i)] = buf[std::size_t(r * stride + 1 + i)];
  const auto want = mvar::ref::layer_norm(dense, std::size_t(n), 1e-6);
  TensorView<float, 2> v(buf.data() + 1, {rows, n}, {stride, 1});
  mvar::layer_norm(v, v);
  std::vector<float> got(dense.size());
  for (std::ptrdiff_t r = 0; r < rows; ++r)
    for (std::ptrdiff_t i = 0; i < n; ++i) got[std::size_t(r * n + i)] = v(r, i);
  REQUIRE(mvar::ref::max_norm_error_d(got, want) <= kElementwiseTol);
}

TEST_CASE("modulate: y = x ⊙ (1 + scale) + shift", "[kernels][norm]") {
  const std::ptrdiff_t rows = 4, n = 133;
  const auto x = random_vector(std::size_t(rows * n), 1), sc = random_vector(std::size_t(n), 2),
             sh = random_vector(std::size_t(n), 3);
  std::vector<float> y(x.size());
  mvar::modulate(TensorView<const float, 2>(x.data(), {rows, n}), sc.data(), sh.data(),
                 TensorView<float, 2>(y.data(), {rows, n}));
  std::vector<double> want(x.size());
  for (std::ptrdiff_t r = 0; r < rows; ++r)
    for (std::ptrdiff_t i = 0; i < n; ++i) {
      const auto k = std::size_t(r * n + i);
      want[k] = double(x[k]) * (1.0 + sc[std::size_t(i)]) + sh[std::size_t(i)];
    }
  REQUIRE(mvar::ref::max_norm_error_d(y, want) <= kElementwiseTol);
}

TEST_CASE("l2_normalize_heads: unit norm per head × the clamped temperature", "[kernels][norm]") {
  for (std::ptrdiff_t hd : {64, 32, 20}) {
    CAPTURE(hd);
    const int heads = 3;
    const std::ptrdiff_t rows = 5, C = heads * hd;
    auto x = random_vector(std::size_t(rows * C), 4);
    const auto x0 = x;
    const float mult[3] = {std::exp(std::min(5.0f, mvar::kLn100)), 1.0f, 2.5f};  // 5.0 > ln 100: clamped to 100
    mvar::l2_normalize_heads(TensorView<float, 2>(x.data(), {rows, C}), heads, mult);
    std::vector<double> want(x.size());
    for (std::ptrdiff_t r = 0; r < rows; ++r)
      for (int h = 0; h < heads; ++h) {
        double s = 0;
        for (std::ptrdiff_t i = 0; i < hd; ++i) s += double(x0[std::size_t(r * C + h * hd + i)]) * x0[std::size_t(r * C + h * hd + i)];
        const double m = h == 0 ? 100.0 : mult[h];
        for (std::ptrdiff_t i = 0; i < hd; ++i)
          want[std::size_t(r * C + h * hd + i)] = x0[std::size_t(r * C + h * hd + i)] / std::sqrt(s) * m;
      }
    REQUIRE(mvar::ref::max_norm_error_d(x, want) <= kElementwiseTol);
  }
  // An all-zero head stays zero (the 1e-12 floor, no NaN).
  std::vector<float> z(64, 0.f);
  mvar::l2_normalize_heads(TensorView<float, 2>(z.data(), {1, 64}), 1, nullptr);
  REQUIRE(std::all_of(z.begin(), z.end(), [](float v) { return v == 0.f; }));
}

TEST_CASE("group_norm / group_norm_into == double reference over shapes, with SiLU, same bits for any thread count",
          "[kernels][norm]") {
  // (C, groups, H, W): group sizes 1…4 channels, widths below, at and above a vector, odd sizes.
  const int shapes[][4] = {{64, 32, 5, 10}, {32, 32, 7, 7}, {96, 32, 3, 17}, {128, 32, 16, 16}, {8, 4, 1, 33}};
  for (const auto& sh : shapes) {
    const std::size_t C = std::size_t(sh[0]), groups = std::size_t(sh[1]), H = std::size_t(sh[2]), W = std::size_t(sh[3]);
    const std::size_t HW = H * W;
    CAPTURE(C, groups, H, W);
    const auto x = random_vector(C * HW, 5 + unsigned(C + HW), 3.f, 2.f), w = random_vector(C, 6), b = random_vector(C, 7);
    const auto want = mvar::ref::group_norm(x, C, HW, groups, w, b, 1e-6);
    std::vector<float> y(x.size());
    mvar::group_norm(TensorView<const float, 2>(x.data(), {std::ptrdiff_t(C), std::ptrdiff_t(HW)}),
                     TensorView<float, 2>(y.data(), {std::ptrdiff_t(C), std::ptrdiff_t(HW)}), int(groups), w.data(),
                     b.data());
    REQUIRE(mvar::ref::max_norm_error_d(y, want) <= kElementwiseTol);
    // Fused SiLU into a strided destination (a padded plane's interior), 1, 2 and 3 threads.
    std::vector<double> want_silu(want.size());
    for (std::size_t i = 0; i < want.size(); ++i) want_silu[i] = want[i] / (1.0 + std::exp(-want[i]));
    std::vector<float> first;
    for (int threads : {1, 2, 3}) {
      mvar::ThreadPool pool(threads);
      std::vector<float> planes(C * (H + 2) * (W + 2), -7.f), z(x.size());
      int seen = 0;
      mvar::group_norm_into(pool, TensorView<const float, 3>(x.data(), {std::ptrdiff_t(C), std::ptrdiff_t(H), std::ptrdiff_t(W)}),
                            int(groups), w.data(), b.data(), 1e-6, true,
                            TensorView<float, 3>(planes.data() + W + 3, {std::ptrdiff_t(C), std::ptrdiff_t(H), std::ptrdiff_t(W)},
                                                 {std::ptrdiff_t((H + 2) * (W + 2)), std::ptrdiff_t(W + 2), 1}),
                            [&](std::ptrdiff_t) { __atomic_add_fetch(&seen, 1, __ATOMIC_RELAXED); });
      REQUIRE(seen == int(C));
      for (std::size_t c = 0; c < C; ++c)
        for (std::size_t i = 0; i < H; ++i)
          for (std::size_t j = 0; j < W; ++j) z[c * HW + i * W + j] = planes[c * (H + 2) * (W + 2) + (i + 1) * (W + 2) + j + 1];
      REQUIRE(planes[0] == -7.f);  // the border is the caller's (on_channel), untouched here
      REQUIRE(mvar::ref::max_norm_error_d(z, want_silu) <= kElementwiseTol);
      if (first.empty()) first = z;
      REQUIRE(std::memcmp(first.data(), z.data(), z.size() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("gelu_tanh / silu: vector and scalar paths == double formulas", "[kernels][activations]") {
  std::vector<float> x(1000);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = -12.f + 24.f * float(i) / float(x.size() - 1);
  auto g = x, s = x;
  mvar::gelu_tanh_inplace(std::span<float>(g.data() + 1, g.size() - 1));  // misaligned, odd length: tail path
  mvar::silu_inplace(std::span<float>(s.data() + 1, s.size() - 1));
  std::vector<double> gw(x.size()), sw(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    gw[i] = i == 0 ? x[0] : mvar::ref::gelu_tanh(x[i]);
    sw[i] = i == 0 ? x[0] : mvar::ref::silu(x[i]);
  }
  REQUIRE(mvar::ref::max_norm_error_d(g, gw) <= kElementwiseTol);
  REQUIRE(mvar::ref::max_norm_error_d(s, sw) <= kElementwiseTol);
  REQUIRE(std::abs(mvar::gelu_tanh(1.5f) - mvar::ref::gelu_tanh(1.5)) <= kElementwiseTol);
  REQUIRE(std::abs(mvar::silu(-2.0f) - mvar::ref::silu(-2.0)) <= kElementwiseTol);
}

TEST_CASE("softmax_inplace: rows sum to 1, equal the double formula, survive large logits", "[kernels][softmax]") {
  for (std::size_t n : {1u, 7u, 64u, 4097u}) {
    CAPTURE(n);
    auto x = random_vector(n, 9, 0.f, 30.f);
    x[0] = 1000.f;  // exp would overflow without max subtraction
    const auto x0 = x;
    mvar::softmax_inplace(std::span<float>(x));
    double mx = *std::max_element(x0.begin(), x0.end()), sum = 0;
    std::vector<double> want(n);
    for (std::size_t i = 0; i < n; ++i) sum += (want[i] = std::exp(double(x0[i]) - mx));
    for (auto& w : want) w /= sum;
    REQUIRE(std::abs(std::accumulate(x.begin(), x.end(), 0.0) - 1.0) <= kElementwiseTol);
    REQUIRE(mvar::ref::max_norm_error_d(x, want) <= kElementwiseTol);
  }
}

TEST_CASE("norm and activation kernels match the official fixtures", "[kernels][norm][fixture]") {
  const auto store = mvar::test::load_fixture("units.safetensors");
  SECTION("layernorm (4 × 128, eps 1e-6, no affine)") {
    const auto& in = store.at("layernorm.in");
    const auto x = in.to_float(), want = store.at("layernorm.out").to_float();
    const std::ptrdiff_t rows = in.shape[0], n = in.shape[1];
    std::vector<float> y(x.size());
    mvar::layer_norm(TensorView<const float, 2>(x.data(), {rows, n}), TensorView<float, 2>(y.data(), {rows, n}));
    REQUIRE(mvar::ref::max_norm_error_d(y, want) <= kElementwiseTol);
  }
  SECTION("groupnorm (32 groups, 64 channels, 8×8, eps 1e-6, affine)") {
    const auto& in = store.at("groupnorm.in");
    REQUIRE(in.shape.size() == 4);
    const auto x = in.to_float(), want = store.at("groupnorm.out").to_float();
    const auto w = store.at("groupnorm.weight").to_float(), b = store.at("groupnorm.bias").to_float();
    const std::ptrdiff_t C = in.shape[1], HW = in.shape[2] * in.shape[3];
    std::vector<float> y(x.size());
    mvar::group_norm(TensorView<const float, 2>(x.data(), {C, HW}), TensorView<float, 2>(y.data(), {C, HW}), 32,
                     w.data(), b.data());
    REQUIRE(mvar::ref::max_norm_error_d(y, want) <= kElementwiseTol);
  }
  SECTION("gelu_tanh and silu on 1001 points in [−8, 8]") {
    auto g = store.at("gelu_tanh.in").to_float();
    auto s = store.at("silu.in").to_float();
    mvar::gelu_tanh_inplace(g);
    mvar::silu_inplace(s);
    REQUIRE(mvar::ref::max_norm_error_d(g, store.at("gelu_tanh.out").to_float()) <= kElementwiseTol);
    REQUIRE(mvar::ref::max_norm_error_d(s, store.at("silu.out").to_float()) <= kElementwiseTol);
  }
}
