// tests/reference/problems.hpp — random attention problems laid out as the model lays them out:
// one token-major qkv buffer [B·N, 3·heads·head_dim (+ padding)] whose q, k and v parts are
// strided views with heads interleaved, optionally shifted by one float so nothing is aligned.
// Plus the normalised error measure used by the kernel tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <random>
#include <vector>

#include "mvar/core/tensor_view.hpp"

namespace mvar::ref {

struct ProblemShape {
  std::ptrdiff_t batch = 1, heads = 1, h = 1, w = 1, head_dim = 64;
  std::ptrdiff_t nk = 0;        // keys per batch for (prefix) attention; 0 → same as h·w
  std::ptrdiff_t row_pad = 0;   // extra floats at the end of each qkv row
  bool misalign = false;        // start the buffer one float past a 64-byte boundary
};

/// q, k, v as views into one qkv buffer, plus an output buffer of the same layout as q.
struct Problem {
  ProblemShape s;
  std::vector<float> qkv, kv, out_buf;
  std::ptrdiff_t row = 0, N = 0, Nk = 0, C = 0;
  float* base = nullptr;

  Problem(const ProblemShape& shape, unsigned seed, float q_scale = 1.0f) : s(shape) {
    N = s.h * s.w;
    Nk = s.nk > 0 ? s.nk : N;
    C = s.heads * s.head_dim;
    row = 3 * C + s.row_pad;
    const std::ptrdiff_t rows = s.batch * std::max(N, Nk);
    qkv.assign(std::size_t(rows * row + 16), 0.0f);
    out_buf.assign(std::size_t(s.batch * N * C + 16), -7.0f);  // poison: every element must be written
    base = qkv.data() + (s.misalign ? 1 : 0);
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (std::ptrdiff_t r = 0; r < rows; ++r)
      for (std::ptrdiff_t f = 0; f < 3 * C; ++f) base[r * row + f] = u(rng) * (f < C ? q_scale : 1.0f);
  }
  // Grid views [B, H, W, heads, D] (NA). Batch b's tokens start at row b·max(N, Nk).
  std::ptrdiff_t batch_rows() const { return std::max(N, Nk); }
  TensorView<const float, 5> grid(int part) const {
    return {base + part * C, {s.batch, s.h, s.w, s.heads, s.head_dim},
            {batch_rows() * row, s.w * row, row, s.head_dim, 1}};
  }
  TensorView<float, 5> out5() {
    float* o = out_buf.data() + (s.misalign ? 1 : 0);
    return {o, {s.batch, s.h, s.w, s.heads, s.head_dim}, {N * C, s.w * C, C, s.head_dim, 1}};
  }
  // Token views [B, N or Nk, heads, D] (full / prefix attention).
  TensorView<const float, 4> tokens(int part) const {
    return {base + part * C, {s.batch, part == 0 ? N : Nk, s.heads, s.head_dim},
            {batch_rows() * row, row, s.head_dim, 1}};
  }
  TensorView<float, 4> out4() {
    float* o = out_buf.data() + (s.misalign ? 1 : 0);
    return {o, {s.batch, N, s.heads, s.head_dim}, {N * C, C, s.head_dim, 1}};
  }
  std::vector<float> out_copy() const { return out_buf; }
  /// FLOPs of NA with kernel k (QK and AV, multiply + add each).
  double na_flop(int k) const { return double(s.batch) * s.heads * N * k * k * s.head_dim * 2.0 * 2.0; }
  double attention_flop() const { return double(s.batch) * s.heads * N * Nk * s.head_dim * 2.0 * 2.0; }
};

/// max |got − want| / max(1, max |want|): one tolerance holds at any output magnitude.
inline double max_norm_error(const float* got, const float* want, std::size_t n) {
  double err = 0, mag = 1;
  for (std::size_t i = 0; i < n; ++i) {
    err = std::max(err, std::abs(double(got[i]) - double(want[i])));
    mag = std::max(mag, std::abs(double(want[i])));
  }
  return err / mag;
}
inline double max_norm_error(const std::vector<float>& got, const std::vector<float>& want) {
  return max_norm_error(got.data(), want.data(), std::min(got.size(), want.size()));
}

}  // namespace mvar::ref
