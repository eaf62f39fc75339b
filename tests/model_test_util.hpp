// tests/model_test_util.hpp — small helpers shared by the model and sampler tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "mvar/io/tensor_store.hpp"

namespace mvar::test {

// Documented by tests/fixtures/README.md ("Suggested thresholds"): a float32 implementation with a
// different summation order stays within a few times the float32-vs-float64 spread of the
// reference (max 2.7e-5 on guided logits, 9.6e-6 on hidden states, 2.3e-6 on f̂).
inline constexpr double kLogitAtol = 2e-4;   // logits, hidden states, LSE
inline constexpr double kFhatAtol = 5e-5;    // f̂, next-scale inputs

/// max(m, d) that keeps a NaN: std::max(m, NaN) returns m, so an error accumulated with it
/// ignores NaN outputs and an all-NaN result would pass `err < tol`. Once either side is NaN the
/// result is NaN, and every `err < tol` / `err <= tol` check on it fails.
inline double nan_max(double m, double d) { return (std::isnan(m) || std::isnan(d)) ? NAN : (d > m ? d : m); }

/// Largest |a − b|; NaN when any element of either side is NaN (a NaN must fail a comparison).
inline double max_abs_diff(const float* a, const float* b, std::size_t n) {
  double m = 0;
  for (std::size_t i = 0; i < n; ++i) m = nan_max(m, std::fabs(double(a[i]) - double(b[i])));
  return m;
}
inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() ? max_abs_diff(a.data(), b.data(), a.size()) : INFINITY;
}

/// log Σ exp over one row, in double (NaN when the row holds a NaN).
inline double logsumexp(const float* x, std::size_t n) {
  double m = -INFINITY;
  for (std::size_t i = 0; i < n; ++i) m = nan_max(m, double(x[i]));
  double s = 0;
  for (std::size_t i = 0; i < n; ++i) s += std::exp(double(x[i]) - m);
  return m + std::log(s);
}

}  // namespace mvar::test
