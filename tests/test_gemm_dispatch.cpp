// tests/test_gemm_dispatch.cpp — run-time kernel dispatch (kernels/cpu_dispatch.hpp) and every
// PackedLinear form this CPU can run: fp32 (portable / AVX2 / AVX-512), bf16 (AVX512-BF16 / AMX)
// and int8 (portable / AVX2 / AVX512-VNNI / AMX-INT8), each against the naive double reference
// within its stated bound, the same bits for any thread count, and the forms of one precision
// against each other (fp32 and int8: the same bits). Forms the CPU lacks are skipped and named
// (the AMX ones run on the Xeon through bench/device_run.sh).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "mvar/kernels/linear.hpp"
#include "reference/linear_ref.hpp"

namespace {

using mvar::GemmForm;
using mvar::Isa;
using mvar::Precision;
using mvar::TensorView;
using Index = std::ptrdiff_t;

// Restores the ceiling a test changed.
struct IsaLimitGuard {
  Isa saved = mvar::isa_limit();
  ~IsaLimitGuard() { mvar::set_isa_limit(saved); }
};

// Forces drive_panels' loop order for one test (−1: automatic) and restores it.
struct OrderGuard {
  int saved = mvar::detail::gemm_k_outer_override();
  explicit OrderGuard(int v) { mvar::detail::gemm_k_outer_override() = v; }
  ~OrderGuard() { mvar::detail::gemm_k_outer_override() = saved; }
};

std::vector<Isa> supported_levels() {
  std::vector<Isa> v;
  for (Isa i : {Isa::Portable, Isa::Avx2, Isa::Avx512, Isa::Amx})
    if (i <= mvar::cpu_isa()) v.push_back(i);
  return v;
}

struct Data {
  Index M, K, N;
  std::vector<float> x, w, b;
  Data(Index m, Index k, Index n, unsigned seed) : M(m), K(k), N(n) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    x.resize(std::size_t(M * K));
    w.resize(std::size_t(N * K));
    b.resize(std::size_t(N));
    for (auto& v : x) v = u(rng);
    for (auto& v : w) v = u(rng);
    for (auto& v : b) v = u(rng);
  }
  TensorView<const float, 2> xv() const { return {x.data(), {M, K}}; }
  TensorView<const float, 2> wv() const { return {w.data(), {N, K}}; }
};

std::vector<float> run(const mvar::PackedLinear& layer, const Data& d, int threads) {
  std::vector<float> y(std::size_t(d.M * d.N), std::numeric_limits<float>::quiet_NaN());
  mvar::ThreadPool pool(threads);
  layer(pool, d.xv(), TensorView<float, 2>(y.data(), {d.M, d.N}));
  return y;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Outputs outside tol(m, n) (NaN-aware: a NaN output or NaN difference counts as outside).
template <class Tol>
Index count_outside(const Data& d, const std::vector<float>& y, Tol&& tol) {
  std::vector<double> want(std::size_t(d.M * d.N)), scale(want.size());
  TensorView<double, 2> wv(want.data(), {d.M, d.N}), sv(scale.data(), {d.M, d.N});
  mvar::ref::linear(d.xv(), d.wv(), d.b.data(), wv, &sv);
  Index bad = 0;
  for (Index m = 0; m < d.M; ++m)
    for (Index n = 0; n < d.N; ++n) {
      const double err = std::fabs(double(y[std::size_t(m * d.N + n)]) - wv(m, n));
      if (!(err <= tol(m, n, sv(m, n)))) ++bad;
    }
  return bad;
}

// The int8 arithmetic written out independently of the kernels: per-channel and per-row
// symmetric quantisation, exact integer dot products, then fma(float(dot), sx·sw, b).
std::vector<float> int8_reference(const Data& d, std::vector<float>* sx_out = nullptr, std::vector<float>* sw_out = nullptr) {
  auto quant = [](const float* v, Index K, std::vector<int>& q) {
    float amax = 0;
    for (Index k = 0; k < K; ++k) amax = std::max(amax, std::fabs(v[k]));
    const float inv = amax > 0 ? 127.0f / amax : 0.0f;
    q.resize(std::size_t(K));
    for (Index k = 0; k < K; ++k) q[std::size_t(k)] = int(std::clamp(std::nearbyint(v[k] * inv), -127.0f, 127.0f));
    return amax > 0 ? amax / 127.0f : 0.0f;
  };
  std::vector<std::vector<int>> qw(std::size_t(d.N));
  std::vector<float> sw(std::size_t(d.N)), sx(std::size_t(d.M)), y(std::size_t(d.M * d.N));
  for (Index n = 0; n < d.N; ++n) sw[std::size_t(n)] = quant(d.w.data() + n * d.K, d.K, qw[std::size_t(n)]);
  std::vector<int> qx;
  for (Index m = 0; m < d.M; ++m) {
    sx[std::size_t(m)] = quant(d.x.data() + m * d.K, d.K, qx);
    for (Index n = 0; n < d.N; ++n) {
      long long dot = 0;
      for (Index k = 0; k < d.K; ++k) dot += (long long)qx[std::size_t(k)] * qw[std::size_t(n)][std::size_t(k)];
      y[std::size_t(m * d.N + n)] = std::fma(float(dot), sx[std::size_t(m)] * sw[std::size_t(n)], d.b[std::size_t(n)]);
    }
  }
  if (sx_out) *sx_out = sx;
  if (sw_out) *sw_out = sw;
  return y;
}

}  // namespace

TEST_CASE("cpu_features agrees with the compiler's own cpuid reading", "[kernels][dispatch]") {
  const auto& f = mvar::cpu_features();
  __builtin_cpu_init();
  CHECK(f.avx2 == bool(__builtin_cpu_supports("avx2")));
  CHECK(f.fma == bool(__builtin_cpu_supports("fma")));
  CHECK(f.avx512 == (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                     __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")));
  CHECK(f.avx512_vnni == (f.avx512 && __builtin_cpu_supports("avx512vnni")));
  CHECK(f.avx512_bf16 == (f.avx512 && __builtin_cpu_supports("avx512bf16")));
  CHECK(f.amx_cpu == (__builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-int8") &&
                      __builtin_cpu_supports("amx-bf16")));
  if (f.amx) CHECK(f.amx_cpu);
  INFO("cpu_isa = " << mvar::isa_name(mvar::cpu_isa()));
  CHECK(mvar::cpu_isa() >= (f.avx512 && f.fma ? Isa::Avx512 : f.avx2 && f.fma ? Isa::Avx2 : Isa::Portable));
}

TEST_CASE("MVAR_ISA values parse, and a bad one is one mvar::Error naming MVAR_ISA", "[kernels][dispatch]") {
  CHECK(mvar::isa_limit_from_env(nullptr) == Isa::Amx);
  CHECK(mvar::isa_limit_from_env("") == Isa::Amx);
  CHECK(mvar::isa_limit_from_env("portable") == Isa::Portable);
  CHECK(mvar::isa_limit_from_env("avx2") == Isa::Avx2);
  CHECK(mvar::isa_limit_from_env("avx512") == Isa::Avx512);
  CHECK(mvar::isa_limit_from_env("amx") == Isa::Amx);
  CHECK_THROWS_WITH(mvar::isa_limit_from_env("AVX2"), Catch::Contains("MVAR_ISA") && Catch::Contains("avx512"));
  CHECK_THROWS_AS(mvar::isa_limit_from_env("sse"), mvar::Error);
  for (Isa i : {Isa::Portable, Isa::Avx2, Isa::Avx512, Isa::Amx}) CHECK(mvar::parse_isa(mvar::isa_name(i)) == i);
}

TEST_CASE("the ceiling picks the form; a level above the CPU's is clamped", "[kernels][dispatch]") {
  IsaLimitGuard guard;
  const Data d(3, 40, 20, 1u);
  mvar::set_isa_limit(Isa::Portable);
  CHECK(mvar::active_isa() == Isa::Portable);
  CHECK(mvar::PackedLinear(d.wv(), nullptr).form() == GemmForm::F32Portable);
  CHECK(mvar::PackedLinear(d.wv(), nullptr, Precision::BF16).form() == GemmForm::F32Portable);  // no bf16 dot: fp32
  CHECK(mvar::PackedLinear(d.wv(), nullptr, Precision::BF16).precision() == Precision::F32);
  CHECK(mvar::PackedLinear(d.wv(), nullptr, Precision::Int8).form() == GemmForm::Int8Plain);
  mvar::set_isa_limit(Isa::Amx);
  CHECK(mvar::active_isa() == mvar::cpu_isa());
  const mvar::PackedLinear top(d.wv(), nullptr, Precision::Int8);
  CHECK(top.form() == mvar::gemm_form_for(Precision::Int8, mvar::cpu_isa()));
  // Asking a layer for more than the CPU has gives the CPU's best.
  CHECK(mvar::PackedLinear(d.wv(), nullptr, Precision::F32, Isa::Amx).form() == mvar::gemm_form_for(Precision::F32, mvar::cpu_isa()));
  if (mvar::cpu_isa() >= Isa::Avx2) {
    mvar::set_isa_limit(Isa::Avx2);
    CHECK(mvar::PackedLinear(d.wv(), nullptr).form() == GemmForm::F32Avx2);
    CHECK(mvar::PackedLinear(d.wv(), nullptr, Precision::Int8).form() == GemmForm::Int8Avx2);
  }
  if (mvar::cpu_isa() >= Isa::Avx512) {
    mvar::set_isa_limit(Isa::Avx512);
    CHECK(mvar::PackedLinear(d.wv(), nullptr).form() == GemmForm::F32Avx512);
    CHECK(mvar::PackedLinear(d.wv(), nullptr, Precision::BF16).form() ==
          (mvar::cpu_features().avx512_bf16 ? GemmForm::Bf16Avx512 : GemmForm::F32Avx512));
    CHECK(mvar::PackedLinear(d.wv(), nullptr, Precision::Int8).form() ==
          (mvar::cpu_features().avx512_vnni ? GemmForm::Int8Vnni : GemmForm::Int8Avx2));
  }
}

TEST_CASE("fp32 forms: within the fp32 bound, same bits for any threads, same bits as each other",
          "[kernels][dispatch][linear]") {
  const Index M = GENERATE(1, 5, 14, 15, 57, 600);
  const Index K = GENERATE(1, 7, 64, 300);
  const Index N = GENERATE(1, 33, 70);
  const int k_outer = GENERATE(0, 1);  // the one-row-block loop order: panel-outer, K-outer
  OrderGuard order(k_outer);
  CAPTURE(M, K, N);
  const Data d(M, K, N, unsigned(M * 131 + K * 17 + N));
  std::vector<float> first;
  for (Isa level : supported_levels()) {
    const mvar::PackedLinear layer(d.wv(), d.b.data(), Precision::F32, level);
    CAPTURE(mvar::gemm_form_name(layer.form()));
    const auto y1 = run(layer, d, 1);
    CHECK(count_outside(d, y1, [&](Index, Index, double s) { return mvar::ref::fp32_bound(K, s); }) == 0);
    CHECK(same_bits(y1, run(layer, d, 2)));
    CHECK(same_bits(y1, run(layer, d, 5)));
    // One FMA per k in increasing k in every SIMD form (intrinsics). The portable form's a·b + c
    // is contracted into an FMA or not at the compiler's discretion (-march, -O level: the ASan
    // build at -O1 does not), so it is held to the bound and to thread independence only.
    const bool comparable = layer.form() != GemmForm::F32Portable;
    if (comparable) {
      if (first.empty()) first = y1;
      CHECK(same_bits(first, y1));
    }
  }
}

TEST_CASE("fp32 and bf16: K-outer and panel-outer orders give the same bits", "[kernels][dispatch][linear]") {
  const Index M = GENERATE(57, 300), K = 1024, N = 100;  // one row block; A = M·K·4 bytes
  CAPTURE(M);
  const Data d(M, K, N, 77u);
  for (Isa level : supported_levels())
    for (Precision prec : {Precision::F32, Precision::BF16}) {
      const mvar::PackedLinear layer(d.wv(), d.b.data(), prec, level);
      CAPTURE(mvar::gemm_form_name(layer.form()));
      std::vector<float> ys[2];
      for (int o : {0, 1}) {
        OrderGuard order(o);
        ys[o] = run(layer, d, 3);
      }
      CHECK(same_bits(ys[0], ys[1]));
    }
}

TEST_CASE("bf16 forms: within the bf16 bound, same bits for any threads", "[kernels][dispatch][bf16]") {
  const Index M = GENERATE(1, 15, 33, 600);
  const Index K = GENERATE(2, 33, 64, 1024);
  const Index N = GENERATE(1, 33, 64);
  const int k_outer = GENERATE(0, 1);
  OrderGuard order(k_outer);
  CAPTURE(M, K, N);
  const Data d(M, K, N, unsigned(M * 7 + K * 3 + N));
  int ran = 0;
  for (Isa level : supported_levels()) {
    const mvar::PackedLinear layer(d.wv(), d.b.data(), Precision::BF16, level);
    if (layer.precision() != Precision::BF16) continue;
    ++ran;
    CAPTURE(mvar::gemm_form_name(layer.form()));
    const auto y1 = run(layer, d, 1);
    CHECK(count_outside(d, y1, [&](Index, Index, double s) { return mvar::ref::bf16_bound(K, s); }) == 0);
    CHECK(same_bits(y1, run(layer, d, 2)));
    CHECK(same_bits(y1, run(layer, d, 5)));
  }
  if (!ran) WARN("no bf16 dot product on this CPU: only the fp32 fallback ran (test_linear)");
}

// int8 budget per output (derivation in kernels/gemm_int8.hpp): each activation is within half a
// step sx/2 of its quantised value, each weight within sw/2, so the exact-integer result differs
// from Σ x·w by ≤ (sx/2)·Σ|w| + (sw/2)·Σ|x| + K·sx·sw/4; the fp32 rounding of the scales, the
// int → float conversion and the fma add ≤ 8u of Σ|x·w| + |b| (u = 2⁻²⁴).
TEST_CASE("int8 forms: the exact quantised result, same bits across forms and threads, within the int8 bound",
          "[kernels][dispatch][int8]") {
  const Index M = GENERATE(1, 3, 14, 15, 33, 100, 600);
  const Index K = GENERATE(1, 5, 64, 130, 1024);
  const Index N = GENERATE(1, 32, 33, 70);
  CAPTURE(M, K, N);
  const Data d(M, K, N, unsigned(M * 1009 + K * 31 + N));
  std::vector<float> sx, sw;
  const auto want = int8_reference(d, &sx, &sw);
  std::vector<double> abs_x(static_cast<std::size_t>(M)), abs_w(static_cast<std::size_t>(N));
  for (Index m = 0; m < M; ++m)
    for (Index k = 0; k < K; ++k) abs_x[std::size_t(m)] += std::fabs(d.x[std::size_t(m * K + k)]);
  for (Index n = 0; n < N; ++n)
    for (Index k = 0; k < K; ++k) abs_w[std::size_t(n)] += std::fabs(d.w[std::size_t(n * K + k)]);
  auto tol = [&](Index m, Index n, double s) {
    const double a = sx[std::size_t(m)], b = sw[std::size_t(n)];
    return a / 2 * abs_w[std::size_t(n)] + b / 2 * abs_x[std::size_t(m)] + double(K) * a * b / 4 + 8 * 0x1p-24 * s;
  };
  for (Isa level : supported_levels()) {
    const mvar::PackedLinear layer(d.wv(), d.b.data(), Precision::Int8, level);
    CAPTURE(mvar::gemm_form_name(layer.form()));
    REQUIRE(layer.precision() == Precision::Int8);
    const auto y1 = run(layer, d, 1);
    CHECK(same_bits(y1, want));
    CHECK(same_bits(y1, run(layer, d, 2)));
    CHECK(same_bits(y1, run(layer, d, 3)));
    CHECK(count_outside(d, y1, tol) == 0);
  }
}

TEST_CASE("int8: 1 byte per weight; a NaN or Inf row gives NaN outputs, a zero row the bias", "[kernels][dispatch][int8]") {
  const Index M = 4, K = 256, N = 70;
  Data d(M, K, N, 9u);
  for (Index k = 0; k < K; ++k) d.x[std::size_t(1 * K + k)] = 0.0f;
  d.x[std::size_t(2 * K + 77)] = std::numeric_limits<float>::quiet_NaN();
  d.x[std::size_t(3 * K + 5)] = std::numeric_limits<float>::infinity();
  for (Isa level : supported_levels()) {
    const mvar::PackedLinear layer(d.wv(), d.b.data(), Precision::Int8, level);
    CAPTURE(mvar::gemm_form_name(layer.form()));
    // Panels of 32 outputs × K rounded up to 64: 96·256 bytes, + scales, corrections, bias.
    CHECK(layer.bytes() == std::size_t(96 * 256 + 96 * 4 * 3));
    const auto y = run(layer, d, 2);
    for (Index n = 0; n < N; ++n) {
      CHECK(y[std::size_t(1 * N + n)] == d.b[std::size_t(n)]);
      CHECK(std::isnan(y[std::size_t(2 * N + n)]));
      CHECK(std::isnan(y[std::size_t(3 * N + n)]));
      CHECK(std::isfinite(y[std::size_t(n)]));
    }
  }
}
