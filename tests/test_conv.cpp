// 2-D convolution and nearest ×2 (kernels/conv.hpp): against the naive float64 reference over many
// shapes (SIMD and scalar paths), residual handling, identical bits for any thread count.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "mvar/core/parallel.hpp"
#include "mvar/kernels/conv.hpp"
#include "reference/vae_ref.hpp"
#include "model_test_util.hpp"

using mvar::PaddedImage;
using mvar::TensorView;

namespace {

// Rigorous bound for a float32 sum of n products computed in any order: |err| ≤ γ_n · Σ|terms|,
// γ_n = n·u/(1 − n·u), u = 2⁻²⁴ (Higham, Accuracy and Stability, §3.1); n = in·k² + 2 (bias and
// residual additions). A correct kernel cannot exceed it; a wrong tap or channel exceeds it by
// orders of magnitude.
double gamma_n(int n) {
  const double u = std::ldexp(1.0, -24);
  return n * u / (1 - n * u);
}

std::vector<float> randn(std::size_t n, unsigned seed, float sd = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

struct Problem {
  int ci, co, h, w, k;
  std::vector<float> in, wt, bias, residual;
};

Problem make_problem(int ci, int co, int h, int w, int k, unsigned seed) {
  Problem p{ci, co, h, w, k, {}, {}, {}, {}};
  p.in = randn(std::size_t(ci * h * w), seed);
  p.wt = randn(std::size_t(co * ci * k * k), seed + 1, 0.2f);
  p.bias = randn(std::size_t(co), seed + 2);
  p.residual = randn(std::size_t(co * h * w), seed + 3);
  return p;
}

// Runs Conv2d (vector type V) on p with `threads`; residual added when with_residual.
template <class V = xsimd::batch<float>>
std::vector<float> run_conv(const Problem& p, int threads, bool with_residual, bool in_place = false, bool winograd = false,
                            mvar::Precision precision = mvar::Precision::F32, int tile = 2) {
  mvar::ThreadPool pool(threads);
  std::vector<float> planes(PaddedImage::floats(p.ci, p.h, p.w), std::numeric_limits<float>::quiet_NaN());
  const PaddedImage img(planes.data(), p.ci, p.h, p.w);
  mvar::pad_copy(pool, TensorView<const float, 3>(p.in.data(), {p.ci, p.h, p.w}), img);
  mvar::Conv2d conv(TensorView<const float, 4>(p.wt.data(), {p.co, p.ci, p.k, p.k}), p.bias);
  if (winograd) conv.enable_winograd(precision, tile);
  std::vector<float> out(std::size_t(p.co * p.h * p.w), std::numeric_limits<float>::quiet_NaN());
  TensorView<float, 3> ov(out.data(), {p.co, p.h, p.w});
  if (in_place) {
    out = p.residual;
    conv.forward<V>(pool, img, ov, ov);
  } else if (with_residual) {
    conv.forward<V>(pool, img, ov, TensorView<const float, 3>(p.residual.data(), {p.co, p.h, p.w}));
  } else {
    conv.forward<V>(pool, img, ov);
  }
  return out;
}

// Worst |got − ref| / bound over the image (≤ 1 passes).
double error_ratio(const Problem& p, const std::vector<float>& got, bool with_residual) {
  const auto want = mvar::ref::conv2d(p.in, p.ci, p.h, p.w, p.wt, p.bias, p.co, p.k);
  std::vector<float> ain(p.in.size()), awt(p.wt.size()), ab(p.bias.size());
  for (std::size_t i = 0; i < ain.size(); ++i) ain[i] = std::abs(p.in[i]);
  for (std::size_t i = 0; i < awt.size(); ++i) awt[i] = std::abs(p.wt[i]);
  for (std::size_t i = 0; i < ab.size(); ++i) ab[i] = std::abs(p.bias[i]);
  const auto mag = mvar::ref::conv2d(ain, p.ci, p.h, p.w, awt, ab, p.co, p.k);
  const double g = gamma_n(p.ci * p.k * p.k + 2);
  double worst = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double r = with_residual ? p.residual[i] : 0.0;
    const double bound = g * (mag[i] + std::abs(r)) + 1e-30;
    worst = mvar::test::nan_max(worst, std::abs(double(got[i]) - (want[i] + r)) / bound);
    if (!std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
  }
  return worst;
}

// |Bᵀ|, |G|, |Aᵀ| of F(m×m, 3×3), m = 2 or 4 (winograd.hpp), for the error bound below.
struct WinoAbs {
  int m, a;  // output tile, input patch (m + 2)
  double BT[6][6], G[6][3], AT[4][6];
};
WinoAbs wino_abs(int m) {
  if (m == 2)
    return {2, 4,
            {{1, 0, 1, 0}, {0, 1, 1, 0}, {0, 1, 1, 0}, {0, 1, 0, 1}},
            {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, 0.5, 0.5}, {0, 0, 1}},
            {{1, 1, 1, 0}, {0, 1, 1, 1}}};
  return {4, 6,
          {{4, 0, 5, 0, 1, 0}, {0, 4, 4, 1, 1, 0}, {0, 4, 4, 1, 1, 0}, {0, 2, 1, 2, 1, 0}, {0, 2, 1, 2, 1, 0}, {0, 4, 0, 5, 0, 1}},
          {{0.25, 0, 0}, {1.0 / 6, 1.0 / 6, 1.0 / 6}, {1.0 / 6, 1.0 / 6, 1.0 / 6}, {1.0 / 24, 1.0 / 12, 1.0 / 6},
           {1.0 / 24, 1.0 / 12, 1.0 / 6}, {0, 0, 1}},
          {{1, 1, 1, 1, 1, 0}, {0, 1, 1, 2, 2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, 1, 8, 8, 1}}};
}

// Worst |got − ref| / bound for the Winograd F(m×m, 3×3) form. Its sums are reassociated, so the
// bound uses the magnitudes the transformed computation actually adds: per output tile and
// channel, |Y| = |Aᵀ| (Σ_c (|G| |g_c| |G|ᵀ) ⊙ (|Bᵀ| |d_c| |B|)) |A| (each product, transform and
// sum rounded at most once per term: γ_n with n = ci + 16 (m = 2) or ci + 36 (m = 4: longer
// transform chains) covers the channel sum, the transforms and the rounding of U to float), plus
// |bias| and |residual|. Tiles that reach past the image are zero-padded there, as in the kernel.
// rel: the extra relative error of each product (bf16 form: U and V each rounded to 8
// significant bits, 2·2⁻⁹ + 2⁻¹⁸).
double winograd_error_ratio(const Problem& p, const std::vector<float>& got, bool with_residual, double rel = 0,
                            int m = 2) {
  const WinoAbs T = wino_abs(m);
  const int A = T.a;
  const auto want = mvar::ref::conv2d(p.in, p.ci, p.h, p.w, p.wt, p.bias, p.co, 3);
  auto in_at = [&](int c, int y, int x) { return (y < 0 || x < 0 || y >= p.h || x >= p.w) ? 0.0 : std::abs(double(p.in[std::size_t((c * p.h + y) * p.w + x)])); };
  const double g = (gamma_n(p.ci + (m == 2 ? 16 : 36)) + rel) * (1 + rel);
  double worst = 0;
  for (int o = 0; o < p.co; ++o)
    for (int ty = 0; ty < (p.h + m - 1) / m; ++ty)
      for (int tx = 0; tx < (p.w + m - 1) / m; ++tx) {
        double S[6][6] = {};
        for (int c = 0; c < p.ci; ++c) {
          double u[6][6] = {}, v[6][6] = {}, t[6][3] = {}, e[6][6] = {};
          const float* w = &p.wt[std::size_t((o * p.ci + c) * 9)];
          for (int i = 0; i < A; ++i)
            for (int b = 0; b < 3; ++b)
              for (int a = 0; a < 3; ++a) t[i][b] += T.G[i][a] * std::abs(double(w[a * 3 + b]));
          for (int i = 0; i < A; ++i)
            for (int j = 0; j < A; ++j)
              for (int b = 0; b < 3; ++b) u[i][j] += t[i][b] * T.G[j][b];
          for (int r = 0; r < A; ++r)
            for (int j = 0; j < A; ++j)
              for (int q = 0; q < A; ++q) e[r][j] += in_at(c, m * ty - 1 + r, m * tx - 1 + q) * T.BT[j][q];
          for (int i = 0; i < A; ++i)
            for (int j = 0; j < A; ++j)
              for (int r = 0; r < A; ++r) v[i][j] += T.BT[i][r] * e[r][j];
          for (int i = 0; i < A; ++i)
            for (int j = 0; j < A; ++j) S[i][j] += u[i][j] * v[i][j];
        }
        for (int a = 0; a < m; ++a)
          for (int b = 0; b < m; ++b) {
            if (m * ty + a >= p.h || m * tx + b >= p.w) continue;
            double mag = std::abs(double(p.bias[std::size_t(o)]));
            for (int i = 0; i < A; ++i)
              for (int j = 0; j < A; ++j) mag += T.AT[a][i] * S[i][j] * T.AT[b][j];
            const std::size_t at = std::size_t((o * p.h + m * ty + a) * p.w + m * tx + b);
            const double r = with_residual ? p.residual[at] : 0.0;
            if (!std::isfinite(got[at])) return std::numeric_limits<double>::infinity();
            worst = mvar::test::nan_max(worst, std::abs(double(got[at]) - (want[at] + r)) / (g * (mag + std::abs(r)) + 1e-30));
          }
      }
  return worst;
}

}  // namespace

TEST_CASE("Conv2d Winograd F(2x2,3x3) == naive reference within its error bound", "[kernels][conv][winograd]") {
  const int ci = GENERATE(1, 3, 37, 160);
  const int co = GENERATE(1, 8, 13, 32);
  // Whole 16-tile groups only, then edges: odd H, W not a multiple of 32, images smaller than a tile.
  const auto hw = GENERATE(std::pair{2, 32}, std::pair{4, 64}, std::pair{32, 32}, std::pair{6, 96}, std::pair{1, 1},
                           std::pair{3, 5}, std::pair{7, 50}, std::pair{16, 16}, std::pair{9, 34});
  CAPTURE(ci, co, hw.first, hw.second);
  const auto p = make_problem(ci, co, hw.first, hw.second, 3, unsigned(ci * 5 + co));
  mvar::Conv2d probe(TensorView<const float, 4>(p.wt.data(), {p.co, p.ci, 3, 3}), p.bias);
  const std::size_t direct_bytes = probe.bytes();
  const bool have = probe.enable_winograd();
#if defined(MVAR_HAS_WINOGRAD)
  REQUIRE(have);
  REQUIRE(probe.uses_winograd());
  REQUIRE(probe.bytes() == (direct_bytes - std::size_t(co) * 4) / 9 * 16 + std::size_t(co) * 4);  // direct form dropped
#else
  REQUIRE(!have);  // direct kernel only: the checks below then test that fallback
  REQUIRE(probe.bytes() == direct_bytes);
#endif
  REQUIRE(winograd_error_ratio(p, run_conv(p, 2, false, false, true), false) <= 1.0);
  REQUIRE(winograd_error_ratio(p, run_conv(p, 2, true, false, true), true) <= 1.0);
  // The direct kernel's tighter bound must not hold by accident only: Winograd really ran.
  if (have && ci > 1 && p.h * p.w > 1) REQUIRE(run_conv(p, 2, false, false, true) != run_conv(p, 2, false));
}

TEST_CASE("Conv2d Winograd F(4x4,3x3) == naive reference within its error bound", "[kernels][conv][winograd]") {
  const int ci = GENERATE(1, 3, 37, 160);
  const int co = GENERATE(1, 13, 32);
  // Whole 16-tile groups (4 × 64), then edges: H not a multiple of 4, W not a multiple of 64,
  // images narrower than a group or smaller than a tile.
  const auto hw = GENERATE(std::pair{4, 64}, std::pair{8, 128}, std::pair{1, 1}, std::pair{3, 5}, std::pair{7, 50},
                           std::pair{9, 130}, std::pair{16, 16}, std::pair{6, 66});
  CAPTURE(ci, co, hw.first, hw.second);
  const auto p = make_problem(ci, co, hw.first, hw.second, 3, unsigned(ci * 7 + co));
  mvar::Conv2d probe(TensorView<const float, 4>(p.wt.data(), {p.co, p.ci, 3, 3}), p.bias);
  const std::size_t direct_bytes = probe.bytes();
  const bool have = probe.enable_winograd(mvar::Precision::F32, 4);
#if defined(MVAR_HAS_WINOGRAD)
  REQUIRE(have);
  REQUIRE(probe.winograd_tile() == 4);
  REQUIRE(probe.bytes() == (direct_bytes - std::size_t(co) * 4) / 9 * 36 + std::size_t(co) * 4);
#else
  REQUIRE(!have);
  REQUIRE(probe.winograd_tile() == 0);
#endif
  const auto got = run_conv(p, 2, false, false, true, mvar::Precision::F32, 4);
  REQUIRE(winograd_error_ratio(p, got, false, 0, 4) <= 1.0);
  REQUIRE(winograd_error_ratio(p, run_conv(p, 2, true, false, true, mvar::Precision::F32, 4), true, 0, 4) <= 1.0);
#if defined(MVAR_HAS_WINOGRAD)
  // F(4×4) really ran: it is neither the direct nor the F(2×2) arithmetic.
  if (ci > 1 && p.h * p.w > 1) {
    REQUIRE(got != run_conv(p, 2, false));
    REQUIRE(got != run_conv(p, 2, false, false, true, mvar::Precision::F32, 2));
  }
#endif
  // BF16 keeps the 2 × 2 tile (F(4×4)'s transforms would amplify bf16 rounding several times).
  mvar::Conv2d b(TensorView<const float, 4>(p.wt.data(), {p.co, p.ci, 3, 3}), p.bias);
  b.enable_winograd(mvar::Precision::BF16, 4);
#if defined(MVAR_HAS_WINOGRAD_BF16)
  REQUIRE(b.winograd_tile() == 2);
#endif
  REQUIRE_THROWS_WITH(b.enable_winograd(mvar::Precision::F32, 3), Catch::Contains("tile must be 2 or 4"));
}

TEST_CASE("Conv2d Winograd with bf16 products == naive reference within the bf16 bound", "[kernels][conv][winograd]") {
  const int ci = GENERATE(1, 2, 3, 37, 160);
  const int co = GENERATE(1, 13, 32);
  const auto hw = GENERATE(std::pair{4, 64}, std::pair{7, 50}, std::pair{3, 5});
  CAPTURE(ci, co, hw.first, hw.second);
  const auto p = make_problem(ci, co, hw.first, hw.second, 3, unsigned(ci * 3 + co));
  mvar::Conv2d probe(TensorView<const float, 4>(p.wt.data(), {p.co, p.ci, 3, 3}), p.bias);
  probe.enable_winograd(mvar::Precision::BF16);
#if defined(MVAR_HAS_WINOGRAD_BF16)
  REQUIRE(probe.winograd_precision() == mvar::Precision::BF16);
  const double rel = 2 * std::ldexp(1.0, -9) + std::ldexp(1.0, -18);
  // bf16 really ran: the fp32 form's bound (about 2⁻²⁴ per term) does not hold for it.
  REQUIRE(winograd_error_ratio(p, run_conv(p, 2, false, false, true, mvar::Precision::BF16), false) > 1.0);
#else
  REQUIRE(probe.winograd_precision() == mvar::Precision::F32);  // no AVX512-BF16: the fp32 form
  const double rel = 0;
#endif
  REQUIRE(winograd_error_ratio(p, run_conv(p, 2, false, false, true, mvar::Precision::BF16), false, rel) <= 1.0);
  REQUIRE(winograd_error_ratio(p, run_conv(p, 2, true, false, true, mvar::Precision::BF16), true, rel) <= 1.0);
}

TEST_CASE("Conv2d Winograd: residual in place, same bits for any thread count", "[kernels][conv][winograd]") {
  for (const auto precision : {mvar::Precision::F32, mvar::Precision::BF16})
    for (const int tile : {2, 4})
      for (const auto& hw : {std::pair{10, 64}, std::pair{9, 70}}) {
        CAPTURE(int(precision), tile, hw.first, hw.second);
        const auto p = make_problem(40, 24, hw.first, hw.second, 3, 9);
        const auto base = run_conv(p, 1, true, false, true, precision, tile);
        REQUIRE(std::memcmp(base.data(), run_conv(p, 2, true, true, true, precision, tile).data(), base.size() * sizeof(float)) == 0);
        for (int t : {2, 3, 8}) {
          CAPTURE(t);
          const auto got = run_conv(p, t, true, false, true, precision, tile);
          REQUIRE(std::memcmp(base.data(), got.data(), base.size() * sizeof(float)) == 0);
        }
      }
  const auto p = make_problem(8, 8, 4, 4, 3, 9);
  mvar::Conv2d one(TensorView<const float, 4>(p.wt.data(), {p.co, p.ci, 1, 1}), p.bias);  // 1×1: never
  REQUIRE(!one.enable_winograd());
#if defined(MVAR_HAS_WINOGRAD)
  // The Winograd form is the build's SIMD kernel only; asking for another vector type is an error.
  REQUIRE_THROWS_WITH(run_conv<float>(p, 1, false, false, true), Catch::Contains("Winograd form"));
#endif
}

TEST_CASE("Conv2d == naive reference over many shapes", "[kernels][conv]") {
  const int k = GENERATE(1, 3);
  const int ci = GENERATE(1, 3, 16, 37);
  const int co = GENERATE(1, 8, 13, 32);
  const auto hw = GENERATE(std::pair{1, 1}, std::pair{2, 3}, std::pair{16, 16}, std::pair{5, 40}, std::pair{23, 9});
  CAPTURE(k, ci, co, hw.first, hw.second);
  const auto p = make_problem(ci, co, hw.first, hw.second, k, unsigned(ci * 7 + co * 3 + k));
  REQUIRE(error_ratio(p, run_conv(p, 2, false), false) <= 1.0);
  REQUIRE(error_ratio(p, run_conv(p, 1, true), true) <= 1.0);
}

TEST_CASE("Conv2d scalar path == naive reference", "[kernels][conv]") {
  const int k = GENERATE(1, 3);
  const auto hw = GENERATE(std::pair{1, 1}, std::pair{7, 5}, std::pair{16, 16});
  CAPTURE(k, hw.first, hw.second);
  const auto p = make_problem(19, 11, hw.first, hw.second, k, 99);
  REQUIRE(error_ratio(p, run_conv<float>(p, 2, true), true) <= 1.0);
}

TEST_CASE("Conv2d residual may be the output itself", "[kernels][conv]") {
  const auto p = make_problem(24, 16, 12, 20, 3, 7);
  const auto a = run_conv(p, 2, true), b = run_conv(p, 2, true, /*in_place=*/true);
  REQUIRE(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

TEST_CASE("Conv2d gives identical bits for 1, 2, 3 and 8 threads", "[kernels][conv]") {
  const auto p = make_problem(32, 40, 33, 30, 3, 11);
  const auto base = run_conv(p, 1, true);
  for (int t : {2, 3, 8}) {
    CAPTURE(t);
    const auto got = run_conv(p, t, true);
    REQUIRE(std::memcmp(base.data(), got.data(), base.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("Conv2d rejects kernels other than 1×1 and 3×3", "[kernels][conv]") {
  std::vector<float> w(2 * 2 * 5 * 5);
  REQUIRE_THROWS_WITH(mvar::Conv2d(TensorView<const float, 4>(w.data(), {2, 2, 5, 5}), {}),
                      Catch::Contains("1×1 or 3×3"));
}

TEST_CASE("pad_copy: contiguous rows and strided views give the same padded planes", "[kernels][conv]") {
  const int C = 3, H = 5, W = 7;
  const auto in = randn(std::size_t(C * H * W), 4);
  std::vector<float> wide(std::size_t(C * H * 2 * W), std::numeric_limits<float>::quiet_NaN());  // every other column
  for (std::size_t i = 0; i < in.size(); ++i) wide[2 * i] = in[i];
  mvar::ThreadPool pool(2);
  std::vector<float> a(PaddedImage::floats(C, H, W), 1.f), b(PaddedImage::floats(C, H, W), 2.f);
  mvar::pad_copy(pool, TensorView<const float, 3>(in.data(), {C, H, W}), PaddedImage(a.data(), C, H, W));
  mvar::pad_copy(pool, TensorView<const float, 3>(wide.data(), {C, H, W}, {2 * H * W, 2 * W, 2}), PaddedImage(b.data(), C, H, W));
  REQUIRE(a == b);  // interior copied, border and slack zeroed, in both paths
  const auto interior = PaddedImage(a.data(), C, H, W).interior();
  for (int c = 0; c < C; ++c)
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) REQUIRE(interior(c, y, x) == in[std::size_t((c * H + y) * W + x)]);
}

TEST_CASE("nearest ×2 upsampling, plain and into padded planes", "[kernels][conv]") {
  const int C = 3, H = 5, W = 7;
  const auto in = randn(std::size_t(C * H * W), 3);
  std::vector<float> out(std::size_t(C * 4 * H * W));
  mvar::upsample_nearest2x(TensorView<const float, 3>(in.data(), {C, H, W}), TensorView<float, 3>(out.data(), {C, 2 * H, 2 * W}));
  for (int c = 0; c < C; ++c)
    for (int y = 0; y < 2 * H; ++y)
      for (int x = 0; x < 2 * W; ++x)
        REQUIRE(out[std::size_t((c * 2 * H + y) * 2 * W + x)] == in[std::size_t((c * H + y / 2) * W + x / 2)]);
  mvar::ThreadPool pool(2);
  std::vector<float> planes(PaddedImage::floats(C, 2 * H, 2 * W), std::numeric_limits<float>::quiet_NaN());
  const PaddedImage img(planes.data(), C, 2 * H, 2 * W);
  mvar::upsample_nearest2x(pool, TensorView<const float, 3>(in.data(), {C, H, W}), img);
  const auto interior = img.interior();
  for (int c = 0; c < C; ++c) {
    for (int y = 0; y < 2 * H; ++y)
      for (int x = 0; x < 2 * W; ++x) REQUIRE(interior(c, y, x) == out[std::size_t((c * 2 * H + y) * 2 * W + x)]);
    // Border and slack are zero: every non-interior float of the plane.
    std::size_t zeros = 0;
    for (std::ptrdiff_t i = 0; i < img.plane_stride(); ++i) zeros += img.plane(c)[i] == 0.f;
    REQUIRE(zeros >= std::size_t(img.plane_stride() - 4 * H * W));
  }
}
