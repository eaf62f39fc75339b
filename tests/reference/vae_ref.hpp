// tests/reference/vae_ref.hpp — naive float64 references for the VQVAE side: 2-D convolution
// (cross-correlation, zero padding), bicubic and area resampling written straight from SPEC §5.1/§5.2,
// GroupNorm, SiLU and the decoder's single-head attention block. Plain loops, no blocking, no SIMD:
// obviously correct and slow. Images are [C, H, W] row-major std::vectors.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace mvar::ref {

/// out[co, y, x] = b[co] + Σ_ci Σ_ky Σ_kx w[co, ci, ky, kx] · in[ci, y + ky − pad, x + kx − pad].
inline std::vector<double> conv2d(const std::vector<float>& in, int ci, int h, int w, const std::vector<float>& wt,
                                  const std::vector<float>& bias, int co, int k) {
  const int pad = k / 2;
  std::vector<double> out(std::size_t(co) * h * w);
  for (int o = 0; o < co; ++o)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        double s = bias.empty() ? 0.0 : bias[o];
        for (int c = 0; c < ci; ++c)
          for (int ky = 0; ky < k; ++ky)
            for (int kx = 0; kx < k; ++kx) {
              const int yy = y + ky - pad, xx = x + kx - pad;
              if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
              s += double(wt[((std::size_t(o) * ci + c) * k + ky) * k + kx]) * in[(std::size_t(c) * h + yy) * w + xx];
            }
        out[(std::size_t(o) * h + y) * w + x] = s;
      }
  return out;
}

/// Keys cubic kernel, A = −0.75, evaluated at distance d (SPEC §5.1's K1/K2 pieces).
inline double keys_cubic(double d) {
  const double A = -0.75;
  d = std::abs(d);
  if (d <= 1) return ((A + 2) * d - (A + 3)) * d * d + 1;
  if (d < 2) return ((A * d - 5 * A) * d + 8 * A) * d - 4 * A;
  return 0;
}

/// Bicubic resize [C, h, w] → [C, H, W], align_corners = False, border clamp, in float64.
inline std::vector<double> bicubic(const std::vector<float>& in, int C, int h, int w, int H, int W) {
  std::vector<double> out(std::size_t(C) * H * W);
  auto axis = [](int o, int n_in, int n_out, int k, int& idx) {
    const double src = (o + 0.5) * double(n_in) / double(n_out) - 0.5;
    const int i0 = int(std::floor(src));
    idx = std::clamp(i0 - 1 + k, 0, n_in - 1);
    return keys_cubic(src - (i0 - 1 + k));
  };
  for (int c = 0; c < C; ++c)
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        double s = 0;
        for (int ky = 0; ky < 4; ++ky) {
          int iy, ix;
          const double wy = axis(y, h, H, ky, iy);
          for (int kx = 0; kx < 4; ++kx) {
            const double wx = axis(x, w, W, kx, ix);
            s += wy * wx * in[(std::size_t(c) * h + iy) * w + ix];
          }
        }
        out[(std::size_t(c) * H + y) * W + x] = s;
      }
  return out;
}

/// Area (adaptive average) resize [C, H, W] → [C, h, w]: cell i averages [⌊iH/h⌋, ⌈(i+1)H/h⌉).
inline std::vector<double> area(const std::vector<float>& in, int C, int H, int W, int h, int w) {
  std::vector<double> out(std::size_t(C) * h * w);
  for (int c = 0; c < C; ++c)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        const int y0 = int(std::floor(double(y) * H / h)), y1 = int(std::ceil(double(y + 1) * H / h));
        const int x0 = int(std::floor(double(x) * W / w)), x1 = int(std::ceil(double(x + 1) * W / w));
        double s = 0;
        for (int yy = y0; yy < y1; ++yy)
          for (int xx = x0; xx < x1; ++xx) s += in[(std::size_t(c) * H + yy) * W + xx];
        out[(std::size_t(c) * h + y) * w + x] = s / double((y1 - y0) * (x1 - x0));
      }
  return out;
}

}  // namespace mvar::ref

// ---------------------------------------------------------------------------------------------
// Random VQVAE weights under the official key names, for any VaeConfig (benchmarks, shape tests).
#include <memory>
#include <random>
#include <string>

#include "mvar/io/tensor_store.hpp"
#include "mvar/model/vae_config.hpp"

namespace mvar::ref {

/// A TensorStore over freshly generated float32 tensors (owned by the store's backing): every
/// post_quant_conv.* / decoder.* / quantize.* key that `cfg` implies. Conv weights ~ N(0, 1/fan_in)
/// and affine norms near (1, 0), so activations keep a realistic scale through the whole decoder.
inline TensorStore random_vae_store(const VaeConfig& cfg, unsigned seed, bool with_encoder = false) {
  auto data = std::make_shared<std::vector<std::vector<float>>>();
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> specs;
  std::mt19937 rng(seed);
  auto add = [&](const std::string& name, std::vector<std::int64_t> shape, float sd, float mean) {
    std::int64_t n = 1;
    for (auto e : shape) n *= e;
    std::normal_distribution<float> d(mean, sd);
    std::vector<float> v(static_cast<std::size_t>(n));
    for (auto& x : v) x = d(rng);
    data->push_back(std::move(v));
    specs.emplace_back(name, std::move(shape));
  };
  auto conv = [&](const std::string& p, std::int64_t co, std::int64_t ci, std::int64_t k) {
    add(p + ".weight", {co, ci, k, k}, float(1.0 / std::sqrt(double(ci * k * k))), 0.f);
    add(p + ".bias", {co}, 0.05f, 0.f);
  };
  auto norm = [&](const std::string& p, std::int64_t c) {
    add(p + ".weight", {c}, 0.1f, 1.f);
    add(p + ".bias", {c}, 0.1f, 0.f);
  };
  auto resnet = [&](const std::string& p, std::int64_t ci, std::int64_t co) {
    norm(p + ".norm1", ci);
    conv(p + ".conv1", co, ci, 3);
    norm(p + ".norm2", co);
    conv(p + ".conv2", co, co, 3);
    if (ci != co) conv(p + ".nin_shortcut", co, ci, 1);
  };
  auto attn = [&](const std::string& p, std::int64_t c) {
    norm(p + ".norm", c);
    conv(p + ".qkv", 3 * c, c, 1);
    conv(p + ".proj_out", c, c, 1);
  };
  add("quantize.embedding.weight", {cfg.vocab, cfg.cvae}, 1.f, 0.f);
  for (int k = 0; k < cfg.n_phi; ++k) conv("quantize.quant_resi.qresi_ls." + std::to_string(k), cfg.cvae, cfg.cvae, 3);
  conv("post_quant_conv", cfg.cvae, cfg.cvae, 3);
  std::int64_t block_in = std::int64_t(cfg.ch) * cfg.ch_mult.back();
  conv("decoder.conv_in", block_in, cfg.cvae, 3);
  resnet("decoder.mid.block_1", block_in, block_in);
  if (cfg.using_mid_sa) attn("decoder.mid.attn_1", block_in);
  resnet("decoder.mid.block_2", block_in, block_in);
  for (int L = cfg.levels() - 1; L >= 0; --L) {
    const std::int64_t block_out = std::int64_t(cfg.ch) * cfg.ch_mult[std::size_t(L)];
    for (int j = 0; j <= cfg.num_res_blocks; ++j) {
      const std::string p = "decoder.up." + std::to_string(L);
      resnet(p + ".block." + std::to_string(j), block_in, block_out);
      block_in = block_out;
      if (L == cfg.levels() - 1 && cfg.using_sa) attn(p + ".attn." + std::to_string(j), block_in);
    }
    if (L != 0) conv("decoder.up." + std::to_string(L) + ".upsample.conv", block_in, block_in, 3);
  }
  norm("decoder.norm_out", block_in);
  conv("decoder.conv_out", 3, block_in, 3);
  if (with_encoder) {  // after every decoder key, so the decoder's values do not depend on it
    conv("encoder.conv_in", cfg.ch, 3, 3);
    std::int64_t bin = cfg.ch;
    for (int L = 0; L < cfg.levels(); ++L) {
      const std::string p = "encoder.down." + std::to_string(L);
      bin = std::int64_t(cfg.ch) * (L == 0 ? 1 : cfg.ch_mult[std::size_t(L - 1)]);
      const std::int64_t bout = std::int64_t(cfg.ch) * cfg.ch_mult[std::size_t(L)];
      for (int j = 0; j < cfg.num_res_blocks; ++j) {
        resnet(p + ".block." + std::to_string(j), bin, bout);
        bin = bout;
        if (L == cfg.levels() - 1 && cfg.using_sa) attn(p + ".attn." + std::to_string(j), bin);
      }
      if (L != cfg.levels() - 1) conv(p + ".downsample.conv", bin, bin, 3);
    }
    resnet("encoder.mid.block_1", bin, bin);
    if (cfg.using_mid_sa) attn("encoder.mid.attn_1", bin);
    resnet("encoder.mid.block_2", bin, bin);
    norm("encoder.norm_out", bin);
    conv("encoder.conv_out", cfg.cvae, bin, 3);
    conv("quant_conv", cfg.cvae, cfg.cvae, 3);
  }
  std::vector<TensorRef> refs;
  for (std::size_t i = 0; i < specs.size(); ++i)
    refs.push_back({specs[i].first, DType::F32, specs[i].second, reinterpret_cast<const std::byte*>((*data)[i].data()),
                    (*data)[i].size() * sizeof(float)});
  return TensorStore("random-vae", std::move(refs), std::shared_ptr<const void>(data));
}

}  // namespace mvar::ref

// ---------------------------------------------------------------------------------------------
// The whole decoder, naively in float64, straight from SPEC §2 (for small configurations).
namespace mvar::ref {

struct Image {
  int c = 0, h = 0, w = 0;
  std::vector<double> v;  // [c, h, w]
  double& at(int ch, int y, int x) { return v[(std::size_t(ch) * h + y) * w + x]; }
  double at(int ch, int y, int x) const { return v[(std::size_t(ch) * h + y) * w + x]; }
};

namespace detail_ref {

inline std::vector<float> get(const TensorStore& st, const std::string& name) { return st.at(name).to_float(); }

inline Image conv(const TensorStore& st, const std::string& p, const Image& x) {
  const auto& wt = st.at(p + ".weight");
  const int co = int(wt.shape[0]), k = int(wt.shape[2]), pad = k / 2;
  const auto w = wt.to_float(), b = get(st, p + ".bias");
  Image y{co, x.h, x.w, std::vector<double>(std::size_t(co) * x.h * x.w)};
  for (int o = 0; o < co; ++o)
    for (int yy = 0; yy < x.h; ++yy)
      for (int xx = 0; xx < x.w; ++xx) {
        double s = b[std::size_t(o)];
        for (int c = 0; c < x.c; ++c)
          for (int ky = 0; ky < k; ++ky)
            for (int kx = 0; kx < k; ++kx) {
              const int sy = yy + ky - pad, sx = xx + kx - pad;
              if (sy >= 0 && sy < x.h && sx >= 0 && sx < x.w)
                s += double(w[((std::size_t(o) * x.c + c) * k + ky) * k + kx]) * x.at(c, sy, sx);
            }
        y.at(o, yy, xx) = s;
      }
  return y;
}

inline Image group_norm(const TensorStore& st, const std::string& p, const Image& x, bool silu) {
  const auto g = get(st, p + ".weight"), b = get(st, p + ".bias");
  const int groups = 32, cg = x.c / groups, n = cg * x.h * x.w;
  Image y = x;
  for (int gr = 0; gr < groups; ++gr) {
    double m = 0, v = 0;
    for (int c = gr * cg; c < (gr + 1) * cg; ++c)
      for (int i = 0; i < x.h * x.w; ++i) m += x.v[std::size_t(c) * x.h * x.w + i];
    m /= n;
    for (int c = gr * cg; c < (gr + 1) * cg; ++c)
      for (int i = 0; i < x.h * x.w; ++i) v += std::pow(x.v[std::size_t(c) * x.h * x.w + i] - m, 2);
    v /= n;
    for (int c = gr * cg; c < (gr + 1) * cg; ++c)
      for (int i = 0; i < x.h * x.w; ++i) {
        double& e = y.v[std::size_t(c) * x.h * x.w + i];
        e = (e - m) / std::sqrt(v + 1e-6) * g[std::size_t(c)] + b[std::size_t(c)];
        if (silu) e = e / (1 + std::exp(-e));
      }
  }
  return y;
}

inline Image add(Image a, const Image& b) {
  for (std::size_t i = 0; i < a.v.size(); ++i) a.v[i] += b.v[i];
  return a;
}

inline Image resnet(const TensorStore& st, const std::string& p, const Image& x) {
  Image h = conv(st, p + ".conv1", group_norm(st, p + ".norm1", x, true));
  h = conv(st, p + ".conv2", group_norm(st, p + ".norm2", h, true));
  return add(h, st.find(p + ".nin_shortcut.weight") ? conv(st, p + ".nin_shortcut", x) : x);
}

inline Image attn(const TensorStore& st, const std::string& p, const Image& x) {
  const Image qkv = conv(st, p + ".qkv", group_norm(st, p + ".norm", x, false));
  const int C = x.c, N = x.h * x.w;
  auto q = [&](int c, int i) { return qkv.v[std::size_t(c) * N + i]; };
  auto k = [&](int c, int i) { return qkv.v[std::size_t(C + c) * N + i]; };
  auto v = [&](int c, int i) { return qkv.v[std::size_t(2 * C + c) * N + i]; };
  Image o{C, x.h, x.w, std::vector<double>(std::size_t(C) * N)};
  std::vector<double> w(static_cast<std::size_t>(N));
  for (int i = 0; i < N; ++i) {
    double mx = -1e300, sum = 0;
    for (int j = 0; j < N; ++j) {
      double s = 0;
      for (int c = 0; c < C; ++c) s += q(c, i) * k(c, j);
      w[std::size_t(j)] = s / std::sqrt(double(C));
      mx = std::max(mx, w[std::size_t(j)]);
    }
    for (int j = 0; j < N; ++j) sum += (w[std::size_t(j)] = std::exp(w[std::size_t(j)] - mx));
    for (int c = 0; c < C; ++c) {
      double s = 0;
      for (int j = 0; j < N; ++j) s += v(c, j) * w[std::size_t(j)] / sum;
      o.v[std::size_t(c) * N + i] = s;
    }
  }
  return add(x, conv(st, p + ".proj_out", o));
}

}  // namespace detail_ref

/// decoder(post_quant_conv(fhat)) for fhat [cvae, P, P], every step in float64.
inline Image decoder(const TensorStore& st, const VaeConfig& cfg, const std::vector<float>& fhat, int P) {
  using namespace detail_ref;
  Image x{cfg.cvae, P, P, std::vector<double>(fhat.begin(), fhat.end())};
  x = conv(st, "post_quant_conv", x);
  x = conv(st, "decoder.conv_in", x);
  x = resnet(st, "decoder.mid.block_1", x);
  if (cfg.using_mid_sa) x = attn(st, "decoder.mid.attn_1", x);
  x = resnet(st, "decoder.mid.block_2", x);
  for (int L = cfg.levels() - 1; L >= 0; --L) {
    const std::string p = "decoder.up." + std::to_string(L);
    for (int j = 0; j <= cfg.num_res_blocks; ++j) {
      x = resnet(st, p + ".block." + std::to_string(j), x);
      if (L == cfg.levels() - 1 && cfg.using_sa) x = attn(st, p + ".attn." + std::to_string(j), x);
    }
    if (L != 0) {
      Image u{x.c, 2 * x.h, 2 * x.w, std::vector<double>(std::size_t(x.c) * 4 * x.h * x.w)};
      for (int c = 0; c < u.c; ++c)
        for (int y = 0; y < u.h; ++y)
          for (int xx = 0; xx < u.w; ++xx) u.at(c, y, xx) = x.at(c, y / 2, xx / 2);
      x = conv(st, p + ".upsample.conv", u);
    }
  }
  return conv(st, "decoder.conv_out", group_norm(st, "decoder.norm_out", x, true));
}

}  // namespace mvar::ref
