// tests/test_linear.cpp — the dense layer y = x·Wᵀ + b (kernels/linear.hpp) against the naive
// double-accumulation reference (tests/reference/linear_ref.hpp), over shapes that hit every
// register-tile edge and both kernels (streaming for few rows, packed GEMM for many), on strided
// and misaligned views, with and without bias; and bit-identity across thread counts.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <random>
#include <vector>

#include "mvar/kernels/linear.hpp"
#include "reference/linear_ref.hpp"
#include "model_test_util.hpp"

namespace {

using mvar::TensorView;
using Index = std::ptrdiff_t;

using mvar::ref::bf16_bound;
using mvar::ref::fp32_bound;

struct Problem {
  Index M, K, N, ldx, ldw, ldy, offset;  // offset: elements added to each base pointer (misalign)
  bool with_bias;
  std::vector<float> xs, ws, bs, ys;
  Problem(Index m, Index k, Index n, bool bias, unsigned seed, Index pad = 0, Index off = 0)
      : M(m), K(k), N(n), ldx(k + pad), ldw(k + pad), ldy(n + pad), offset(off), with_bias(bias) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    xs.resize(std::size_t(off + M * ldx + 1));
    ws.resize(std::size_t(off + N * ldw + 1));
    bs.resize(std::size_t(off + N + 1));
    for (auto& v : xs) v = u(rng);
    for (auto& v : ws) v = u(rng);
    for (auto& v : bs) v = u(rng);
    // NaN everywhere y must not be written: the gaps between rows and around the view.
    ys.assign(std::size_t(off + M * ldy + 1), std::numeric_limits<float>::quiet_NaN());
  }
  TensorView<const float, 2> x() const { return {xs.data() + offset, {M, K}, {ldx, 1}}; }
  TensorView<const float, 2> w() const { return {ws.data() + offset, {N, K}, {ldw, 1}}; }
  TensorView<float, 2> y() { return {ys.data() + offset, {M, N}, {ldy, 1}}; }
  const float* bias() const { return with_bias ? bs.data() + offset : nullptr; }
};

// Checks y against the reference and that nothing outside the view was written.
void check(Problem& p, bool bf16 = false) {
  std::vector<double> want(std::size_t(p.M * p.N)), scale(want.size());
  TensorView<double, 2> wv(want.data(), {p.M, p.N}), sv(scale.data(), {p.M, p.N});
  mvar::ref::linear(p.x(), p.w(), p.bias(), wv, &sv);
  auto y = p.y();
  Index bad = 0;
  double worst = 0;
  for (Index m = 0; m < p.M; ++m)
    for (Index n = 0; n < p.N; ++n) {
      const double err = std::fabs(double(y(m, n)) - wv(m, n));
      const double tol = bf16 ? bf16_bound(p.K, sv(m, n)) : fp32_bound(p.K, sv(m, n));
      if (!(err <= tol)) ++bad;  // also catches NaN (unwritten)
      worst = mvar::test::nan_max(worst, err / std::max(tol, 1e-300));
    }
  CAPTURE(worst);
  REQUIRE(bad == 0);
  Index touched = 0;
  for (std::size_t i = 0; i < p.ys.size(); ++i) {
    const Index e = Index(i) - p.offset;
    const bool inside = e >= 0 && e / p.ldy < p.M && e % p.ldy < p.N;
    if (!inside && !std::isnan(p.ys[i])) ++touched;
  }
  REQUIRE(touched == 0);
}

}  // namespace

// The two entry points: linear() on weights in place, PackedLinear (packed at construction).
enum class Impl { Linear, Packed };

void run(Impl impl, mvar::ThreadPool& pool, Problem& p) {
  switch (impl) {
    case Impl::Linear: mvar::linear(pool, p.x(), p.w(), p.bias(), p.y()); break;
    case Impl::Packed: mvar::PackedLinear(p.w(), p.bias())(pool, p.x(), p.y()); break;
  }
}

TEST_CASE("linear == double reference over shapes", "[kernels][linear]") {
  const Impl impl = GENERATE(Impl::Linear, Impl::Packed);
  const Index M = GENERATE(1, 2, 3, 7, 8, 31, 50, 128, 200, 512);
  const Index K = GENERATE(1, 5, 32, 128, 1024, 1031);
  const Index N = GENERATE(1, 3, 64, 100, 384, 1025);
  const bool bias = (M + K + N) % 2 == 0;  // half the shapes with bias, half without
  CAPTURE(int(impl), M, K, N, bias);
  Problem p(M, K, N, bias, unsigned(M * 1000003 + K * 1009 + N));
  mvar::ThreadPool pool(2);
  run(impl, pool, p);
  check(p);
}

TEST_CASE("linear on strided, misaligned views", "[kernels][linear]") {
  const Index M = GENERATE(1, 5, 50, 130, 300);  // 300: linear() packs W per call
  const Index K = GENERATE(7, 128, 300);
  const Index N = GENERATE(3, 97, 260);
  const Index pad = GENERATE(1, 3, 16);
  const Index off = GENERATE(1, 3);  // 4 or 12 bytes past 64-byte alignment
  const bool bias = GENERATE(false, true);
  const Impl impl = GENERATE(Impl::Linear, Impl::Packed);
  CAPTURE(int(impl), M, K, N, pad, off, bias);
  Problem p(M, K, N, bias, 7u, pad, off);
  mvar::ThreadPool pool(2);
  run(impl, pool, p);
  check(p);
}

TEST_CASE("linear beyond one row block (M > 588: K blocks outer, A packed per block)", "[kernels][linear]") {
  // Every shape above stays within one A row block (panel-outer order); these take the other
  // loop order of drive_panels, including a partial last row block and a partial K block.
  const Index M = GENERATE(589, 1203);  // one full block + 1 row; two full blocks + a partial one
  const Index K = 300;                  // one full K block of 256 + a partial one
  const Index N = GENERATE(33, 257);
  const Impl impl = GENERATE(Impl::Linear, Impl::Packed);
  CAPTURE(int(impl), M, K, N);
  Problem p(M, K, N, true, unsigned(M + K + N));
  mvar::ThreadPool pool(2);
  run(impl, pool, p);
  check(p);
}

TEST_CASE("linear gives the same bits for 1, 2 and 3 threads", "[kernels][linear][determinism]") {
  const Index M = GENERATE(2, 33, 200, 300, 700);
  const Index K = GENERATE(129, 1024);
  const Index N = GENERATE(100, 1025);
  const Impl impl = GENERATE(Impl::Linear, Impl::Packed);
  CAPTURE(int(impl), M, K, N);
  std::vector<std::vector<float>> outs;
  for (int threads : {1, 2, 3}) {
    Problem p(M, K, N, true, 11u);
    mvar::ThreadPool pool(threads);
    run(impl, pool, p);
    outs.push_back(p.ys);
  }
  REQUIRE(std::memcmp(outs[0].data(), outs[1].data(), outs[0].size() * sizeof(float)) == 0);
  REQUIRE(std::memcmp(outs[0].data(), outs[2].data(), outs[0].size() * sizeof(float)) == 0);
}

TEST_CASE("linear: K = 0 gives the bias, M = 0 and N = 0 do nothing", "[kernels][linear]") {
  const Impl impl = GENERATE(Impl::Linear, Impl::Packed);
  CAPTURE(int(impl));
  mvar::ThreadPool pool(2);
  Problem p(3, 0, 5, true, 1u);
  run(impl, pool, p);
  for (Index m = 0; m < 3; ++m)
    for (Index n = 0; n < 5; ++n) REQUIRE(p.y()(m, n) == p.bs[std::size_t(n)]);
  Problem q(0, 4, 5, true, 1u);
  run(impl, pool, q);
  Problem r(3, 4, 0, false, 1u);
  run(impl, pool, r);
  REQUIRE(std::isnan(r.ys[0]));
}

TEST_CASE("PackedLinear reports its shape and bytes", "[kernels][linear]") {
  Problem p(2, 100, 33, true, 3u);
  const mvar::PackedLinear layer(p.w(), p.bias());
  REQUIRE(layer.in_features() == 100);
  REQUIRE(layer.out_features() == 33);
  REQUIRE(layer.precision() == mvar::Precision::F32);
  // Packed weights are padded to whole panels of outputs; at least N·K floats + bias.
  REQUIRE(layer.bytes() >= (33 * 100 + 33) * sizeof(float));
  REQUIRE(layer.bytes() <= (33 + 64) * 100 * sizeof(float) + 33 * sizeof(float));
}

TEST_CASE("PackedLinear BF16 == double reference within the bf16 bound", "[kernels][linear][bf16]") {
  const Index M = GENERATE(1, 2, 13, 14, 15, 50, 200, 700);
  const Index K = GENERATE(1, 2, 5, 32, 64);
  const Index N = GENERATE(1, 31, 32, 33, 100);
  const bool bias = (M + K + N) % 2 == 1;
  CAPTURE(M, K, N, bias);
  Problem p(M, K, N, bias, unsigned(M * 31 + K * 7 + N), /*pad=*/2, /*off=*/1);
  const mvar::PackedLinear layer(p.w(), p.bias(), mvar::Precision::BF16);
  mvar::ThreadPool pool(2);
  layer(pool, p.x(), p.y());
  if (mvar::isa_has_bf16_dot(mvar::active_isa())) {
    REQUIRE(layer.precision() == mvar::Precision::BF16);
    // 2 B/weight; the AMX form pads K to whole tiles of 32.
    const Index Ks = layer.form() == mvar::GemmForm::Bf16Amx ? 2 * mvar::detail::amx_bf16_pairs(K) : K + 1;
    REQUIRE(layer.bytes() < std::size_t(((N + 31) / 32 * 32) * Ks * 2 + N * 4 + 64));
  } else {
    REQUIRE(layer.precision() == mvar::Precision::F32);  // documented fallback
  }
  check(p, layer.precision() == mvar::Precision::BF16);
}

TEST_CASE("PackedLinear BF16 on the d16 shapes: within the bound, same bits for 1/2/3 threads",
          "[kernels][linear][bf16][determinism]") {
  const Index M = GENERATE(2, 72, 512);  // M > 588 (the other loop order): the test above, M = 700
  const Index K = GENERATE(1024, 4096);
  CAPTURE(M, K);
  const Index N = 1024 + 7;
  std::vector<std::vector<float>> outs;
  for (int threads : {1, 2, 3}) {
    Problem p(M, K, N, true, 5u);
    const mvar::PackedLinear layer(p.w(), p.bias(), mvar::Precision::BF16);
    mvar::ThreadPool pool(threads);
    layer(pool, p.x(), p.y());
    outs.push_back(p.ys);
    if (threads == 1) check(p, layer.precision() == mvar::Precision::BF16);
  }
  REQUIRE(std::memcmp(outs[0].data(), outs[1].data(), outs[0].size() * sizeof(float)) == 0);
  REQUIRE(std::memcmp(outs[0].data(), outs[2].data(), outs[0].size() * sizeof(float)) == 0);
}

TEST_CASE("bf16 A packing (vector blocks + scalar tail) == bf16_round pair by pair", "[kernels][linear][bf16]") {
  using mvar::detail::bf16_round;
  if (!mvar::cpu_features().avx512) {
    WARN("no AVX-512 on this CPU: the bf16 packing kernel cannot run");
    return;
  }
  constexpr Index MR = mvar::detail::Bf16Tile::MR;
  const Index M = GENERATE(1, 13, 14, 15, 29);
  const Index K = GENERATE(1, 31, 32, 33, 63, 64, 100, 257);
  const Index Kp = (K + 1) / 2;
  const Index q0 = GENERATE(0, 5, 16);
  if (q0 >= Kp) return;
  const Index kcp = std::min<Index>(Kp - q0, GENERATE(Index(16), Index(37), Index(128)));
  CAPTURE(M, K, q0, kcp);
  const Index ldx = K + 3;
  std::mt19937 rng(unsigned(M * 1000 + K * 10 + q0));
  std::normal_distribution<float> nd;
  // Specials in every position class: ties (1 + 2⁻⁸ rounds to even, 1 + 3·2⁻⁸ up), ±0, ±inf,
  // NaN (must stay NaN), the largest finite float (rounds to inf), denormals (kept, not flushed).
  const float specials[] = {1.0f + 0x1p-8f,  1.0f + 3 * 0x1p-8f, -0.0f, 0.0f, std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::max(), 0x1p-140f, -0x1.8p-130f};
  std::vector<float> x(std::size_t(M * ldx));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = i % 7 == 3 ? specials[(i / 7) % std::size(specials)] : nd(rng);
  const Index panels = (M + MR - 1) / MR;
  std::vector<std::uint32_t> got(std::size_t(panels * kcp * MR), 0xdeadbeefu);
  mvar::detail::pack_a_bf16(x.data(), ldx, M, K, 0, panels, q0, kcp, got.data());
  Index mismatches = 0, first = -1;
  for (Index i = 0; i < panels; ++i)
    for (Index q = 0; q < kcp; ++q)
      for (Index r = 0; r < MR; ++r) {
        const Index m = i * MR + r, k = 2 * (q0 + q);
        std::uint32_t want = 0;
        if (m < M) {
          const std::uint32_t lo = k < K ? bf16_round(x[std::size_t(m * ldx + k)]) : 0u;
          const std::uint32_t hi = k + 1 < K ? bf16_round(x[std::size_t(m * ldx + k + 1)]) : 0u;
          want = lo | (hi << 16);
        }
        const Index at = (i * kcp + q) * MR + r;
        if (got[std::size_t(at)] != want && mismatches++ == 0) first = at;
      }
  CAPTURE(first);
  REQUIRE(mismatches == 0);
}

