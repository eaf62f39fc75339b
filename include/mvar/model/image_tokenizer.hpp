// mvar/model/image_tokenizer.hpp — the VQVAE as a tokenizer: image → multi-scale token pyramid
// (official VQVAE.img_to_idxBl: VqvaeEncoder, then VectorQuantizer::encode), the reconstruction
// image → tokens → f̂ → image with its PSNR (so a user sees whether an image survives the
// tokenizer before editing it), and the token pyramid as a safetensors file.
//
// Memory: one Workspace sized once by workspace_bytes() serves the encoder, the quantiser and the
// decoder in turn (their scratch is never live at the same time); the results (tokens, f̂, image)
// are the caller's buffers. Deterministic: the same image gives the same bits for any thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "mvar/core/error.hpp"
#include "mvar/core/parallel.hpp"
#include "mvar/core/tensor_view.hpp"
#include "mvar/core/workspace.hpp"
#include "mvar/io/safetensors.hpp"
#include "mvar/model/quantizer.hpp"
#include "mvar/model/vqvae.hpp"
#include "mvar/model/vqvae_encoder.hpp"

namespace mvar {

/// Peak signal-to-noise ratio in dB of rec against ref, both [3, S, S] in [−1, 1]: rec is clamped
/// to [−1, 1] (as the official fhat_to_img), peak-to-peak 2, so PSNR = 10·log10(4 / MSE)
/// (= the PSNR of the [0, 1] images; +∞ for identical images).
inline double psnr_db(TensorView<const float, 3> ref, TensorView<const float, 3> rec) {
  if (ref.extent(0) != rec.extent(0) || ref.extent(1) != rec.extent(1) || ref.extent(2) != rec.extent(2))
    throw Error("psnr_db: the two images differ in shape");
  double se = 0;
  std::size_t n = 0;
  for (std::ptrdiff_t c = 0; c < ref.extent(0); ++c)
    for (std::ptrdiff_t y = 0; y < ref.extent(1); ++y)
      for (std::ptrdiff_t x = 0; x < ref.extent(2); ++x, ++n) {
        const double d = double(std::clamp(rec(c, y, x), -1.0f, 1.0f)) - double(ref(c, y, x));
        se += d * d;
      }
  const double mse = se / double(n);
  return mse > 0 ? 10.0 * std::log10(4.0 / mse) : INFINITY;
}

class ImageTokenizer {
 public:
  /// The encoder and the quantiser must describe the same VAE (cvae, latent side).
  ImageTokenizer(const VqvaeEncoder& encoder, const VectorQuantizer& quant) : enc_(encoder), quant_(quant) {
    if (encoder.config().cvae != quant.cvae())
      throw Error(concat("ImageTokenizer: the encoder's latent width ", encoder.config().cvae,
                         " differs from the codebook's ", quant.cvae()));
  }

  const VectorQuantizer& quantizer() const { return quant_; }
  /// The image side the quantiser's scales need: latent side · 2^(levels−1).
  int image_side() const { return enc_.image_side(quant_.latent_side()); }
  std::size_t total_tokens() const { return quant_.total_tokens(); }
  std::size_t fhat_floats() const { return std::size_t(quant_.cvae()) * quant_.latent_side() * quant_.latent_side(); }

  /// Scratch for encode() (and, with a decoder, reconstruct()).
  std::size_t workspace_bytes(const VqvaeDecoder* dec = nullptr) const {
    const std::size_t f = Workspace::round(fhat_floats() * sizeof(float));
    std::size_t b = std::max(enc_.workspace_bytes(image_side()), quant_.encode_workspace_bytes());
    if (dec) b = std::max(b, dec->workspace_bytes(quant_.latent_side()));
    return f + b + 2 * kAlignment;
  }

  /// img [3, S, S] in [−1, 1] (S = image_side()) → tokens (total_tokens(), scale s at
  /// quantizer().token_offset(s)) and the final f̂ [cvae, P, P].
  void encode(ThreadPool& pool, TensorView<const float, 3> img, std::span<std::int32_t> tokens, TensorView<float, 3> fhat,
              Workspace& ws) const {
    const int S = image_side(), P = quant_.latent_side();
    if (img.extent(0) != 3 || img.extent(1) != S || img.extent(2) != S)
      throw Error(concat("ImageTokenizer: the image must be [3, ", S, ", ", S, "] for this model, got [", img.extent(0), ", ",
                         img.extent(1), ", ", img.extent(2), "]"));
    if (tokens.size() != total_tokens() || fhat.extent(0) != quant_.cvae() || fhat.extent(1) != P || fhat.extent(2) != P)
      throw Error("ImageTokenizer: output buffers of the wrong size");
    const std::size_t mark = ws.mark();
    TensorView<float, 3> f(ws.take<float>(fhat_floats()), {quant_.cvae(), P, P});
    enc_.encode(pool, img, f, ws);
    quant_.encode(pool, f, tokens, fhat, ws);
    ws.release(mark);
  }

  /// encode, then rec [3, S, S] = decoder(post_quant_conv(f̂)) (not clamped); returns the PSNR of
  /// the reconstruction against img (psnr_db).
  double reconstruct(ThreadPool& pool, const VqvaeDecoder& dec, TensorView<const float, 3> img,
                     std::span<std::int32_t> tokens, TensorView<float, 3> fhat, TensorView<float, 3> rec,
                     Workspace& ws) const {
    encode(pool, img, tokens, fhat, ws);
    dec.decode(pool, fhat, rec, ws);
    return psnr_db(img, rec);
  }

 private:
  const VqvaeEncoder& enc_;
  const VectorQuantizer& quant_;
};

/// Writes a token pyramid as safetensors: `idx.s{k}` I32 [pn_k, pn_k] (row-major tokens of scale
/// k, the layout of the fixtures' idx tensors), `patch_nums` I32 [S], plus string metadata (e.g.
/// the source image and the VAE file). Atomic: a failed write leaves nothing behind.
inline void save_token_pyramid(const std::string& path, const VectorQuantizer& quant, std::span<const std::int32_t> tokens,
                               const std::map<std::string, std::string>& metadata = {}) {
  if (tokens.size() != quant.total_tokens())
    throw Error(concat(path, ": save_token_pyramid: ", tokens.size(), " tokens, the scales need ", quant.total_tokens()));
  std::vector<std::int32_t> pn;
  for (int s = 0; s < quant.num_scales(); ++s) pn.push_back(quant.patch_num(s));
  std::vector<TensorToWrite> t;
  std::vector<std::string> names;
  for (int s = 0; s < quant.num_scales(); ++s) {
    const std::int64_t p = quant.patch_num(s);
    t.push_back(tensor_to_write(concat("idx.s", s), DType::I32, {p, p},
                                tokens.subspan(quant.token_offset(s), std::size_t(p * p))));
  }
  t.push_back(tensor_to_write("patch_nums", DType::I32, {std::int64_t(pn.size())}, std::span<const std::int32_t>(pn)));
  save_safetensors(path, t, metadata);
}

}  // namespace mvar
