// tests/reference/norm_ref.hpp — naive double-precision references for the element-wise and
// normalisation kernels (formulas from SPEC §1.4–1.6 and §5.3), computed on plain vectors.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace mvar::ref {

/// LayerNorm without affine over rows of length n (biased variance).
inline std::vector<double> layer_norm(const std::vector<float>& x, std::size_t n, double eps) {
  std::vector<double> y(x.size());
  for (std::size_t r = 0; r < x.size() / n; ++r) {
    double m = 0, v = 0;
    for (std::size_t i = 0; i < n; ++i) m += x[r * n + i];
    m /= double(n);
    for (std::size_t i = 0; i < n; ++i) v += (x[r * n + i] - m) * (x[r * n + i] - m);
    v /= double(n);
    for (std::size_t i = 0; i < n; ++i) y[r * n + i] = (x[r * n + i] - m) / std::sqrt(v + eps);
  }
  return y;
}

/// GroupNorm of one image x[C, HW] with affine.
inline std::vector<double> group_norm(const std::vector<float>& x, std::size_t C, std::size_t HW, std::size_t groups,
                                      const std::vector<float>& w, const std::vector<float>& b, double eps) {
  std::vector<double> y(x.size());
  const std::size_t cg = C / groups, n = cg * HW;
  for (std::size_t g = 0; g < groups; ++g) {
    double m = 0, v = 0;
    for (std::size_t i = 0; i < n; ++i) m += x[g * n + i];
    m /= double(n);
    for (std::size_t i = 0; i < n; ++i) v += (x[g * n + i] - m) * (x[g * n + i] - m);
    v /= double(n);
    for (std::size_t c = g * cg; c < (g + 1) * cg; ++c)
      for (std::size_t i = 0; i < HW; ++i) y[c * HW + i] = (x[c * HW + i] - m) / std::sqrt(v + eps) * w[c] + b[c];
  }
  return y;
}

inline double gelu_tanh(double u) {
  return 0.5 * u * (1.0 + std::tanh(std::sqrt(2.0 / 3.14159265358979323846) * (u + 0.044715 * u * u * u)));
}
inline double silu(double z) { return z / (1.0 + std::exp(-z)); }

/// max |got − want| / max(1, max |want|).
template <class G, class W>
double max_norm_error_d(const G& got, const W& want) {
  double err = 0, mag = 1;
  for (std::size_t i = 0; i < want.size(); ++i) {
    err = std::max(err, std::abs(double(got[i]) - double(want[i])));
    mag = std::max(mag, std::abs(double(want[i])));
  }
  return err / mag;
}

}  // namespace mvar::ref
