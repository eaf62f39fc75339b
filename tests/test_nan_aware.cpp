// The tests' error helpers must not ignore NaN (issue #23 item 6): std::max(m, NaN) returns m, so
// an error accumulated with it skips NaN outputs and an all-NaN result passes `err < tol`. These
// cases inject NaN into a real fixture tensor and require every helper's comparison to fail.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "fixtures_path.hpp"
#include "model_test_util.hpp"

using mvar::test::kFhatAtol;
using mvar::test::kLogitAtol;

TEST_CASE("nan_max keeps a NaN from either side (std::max does not)", "[test_util][nan]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK(std::max(0.0, nan) == 0.0);  // the trap: the NaN is dropped
  CHECK(std::isnan(mvar::test::nan_max(0.0, nan)));
  CHECK(std::isnan(mvar::test::nan_max(nan, 0.0)));
  CHECK(std::isnan(mvar::test::nan_max(nan, nan)));
  CHECK(mvar::test::nan_max(1.0, 2.0) == 2.0);
  CHECK(mvar::test::nan_max(2.0, 1.0) == 2.0);
  CHECK(mvar::test::nan_max(-INFINITY, -1.0) == -1.0);
}

TEST_CASE("a NaN injected into a fixture tensor fails max_abs_diff and logsumexp comparisons", "[test_util][nan]") {
  const auto trace = mvar::test::load_fixture(mvar::test::fixture_run("mvar").trace_file);
  const std::vector<float> want = trace.at("fhat.s0").to_float();
  REQUIRE(want.size() > 2);
  std::vector<float> got = want;
  REQUIRE(mvar::test::max_abs_diff(got, want) < kFhatAtol);  // control: identical tensors pass
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (std::size_t at : {std::size_t(0), want.size() / 2, want.size() - 1}) {  // first, middle, last element
    CAPTURE(at);
    got = want;
    got[at] = nan;
    const double d = mvar::test::max_abs_diff(got, want);
    CHECK(std::isnan(d));
    CHECK_FALSE(d < kFhatAtol);
    CHECK_FALSE(d <= kLogitAtol);
    CHECK_FALSE(mvar::test::max_abs_diff(want, got) < kFhatAtol);  // either side
  }
  got.assign(want.size(), nan);  // an all-NaN output
  CHECK_FALSE(mvar::test::max_abs_diff(got, want) < kFhatAtol);
  // logsumexp of a logit row holding one NaN is NaN, so an LSE comparison fails too.
  const std::vector<float> logits = trace.at("logits_cond.s0").to_float();
  REQUIRE(logits.size() >= 4);
  std::vector<float> row(logits.begin(), logits.begin() + 4);
  const double lse = mvar::test::logsumexp(row.data(), row.size());
  REQUIRE(std::isfinite(lse));
  row[2] = nan;
  CHECK_FALSE(std::fabs(mvar::test::logsumexp(row.data(), row.size()) - lse) < kLogitAtol);
  row[2] = row[0];
  row[0] = nan;  // NaN first: the running maximum starts from it
  CHECK_FALSE(std::fabs(mvar::test::logsumexp(row.data(), row.size()) - lse) < kLogitAtol);
}
