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

inline double max_abs_diff(const float* a, const float* b, std::size_t n) {
  double m = 0;
  for (std::size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(double(a[i]) - double(b[i])));
  return m;
}
inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() ? max_abs_diff(a.data(), b.data(), a.size()) : INFINITY;
}

/// log Σ exp over one row, in double.
inline double logsumexp(const float* x, std::size_t n) {
  double m = -INFINITY;
  for (std::size_t i = 0; i < n; ++i) m = std::max(m, double(x[i]));
  double s = 0;
  for (std::size_t i = 0; i < n; ++i) s += std::exp(double(x[i]) - m);
  return m + std::log(s);
}

}  // namespace mvar::test
