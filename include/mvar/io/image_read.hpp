// mvar/io/image_read.hpp — image input for editing and reconstruction: PNG (libpng) and JPEG
// (libjpeg-turbo's libjpeg API) files → 8-bit RGB (HWC), then → the model's square input
// [3, S, S] in [−1, 1].
//
// Decoding (read_image; the format is recognised by its signature, not by the file name):
//   PNG — palette → RGB, grey (1…16 bits) → R = G = B, 16-bit samples → 8 bits rounded
//   (v·255/65535, libpng's png_set_scale_16), tRNS transparency → alpha, interlaced images
//   de-interlaced; no gamma or colour-profile correction (the bytes are taken as sRGB).
//   JPEG — grey and YCbCr → RGB by libjpeg (its default islow DCT, fancy upsampling); CMYK/YCCK
//   JPEGs are refused (no colour management here).
//   Alpha (PNG only) is composited over ImageReadOptions::background (white by default):
//   out = round((c·a + bg·(255 − a)) / 255).
// Safety: the whole file is read first (size ≤ max_file_bytes); the header's width and height are
// checked (each ≥ 1, ≤ max_side, width·height ≤ max_pixels) before any pixel buffer is allocated,
// so a small file declaring a huge image (a decompression bomb) is refused with a clear
// mvar::Error; libpng's own limits are set to the same values and its ancillary chunks are capped.
// Truncated or corrupt files give an mvar::Error naming the file (libjpeg's "premature end" and
// corrupt-data warnings are errors here, not grey fill). libpng/libjpeg report errors by longjmp:
// the frames that call setjmp hold only trivially destructible locals.
//
// Geometry (to_model_input): centre crop to a square of side min(H, W) (the offset rounds down),
// then resize to `inner` × `inner`: exact area averaging when shrinking (each output pixel is the
// mean over its footprint, partial pixels weighted by their covered fraction: antialiased, no
// moiré), bilinear with half-pixel centres (align_corners False, edges clamped) when enlarging;
// then, when inner < side, the result is centred in a side × side canvas filled with pad (the
// default model's 28-px Fashion-MNIST frame in 32 px, pad −1); values x/255·2 − 1, as the official
// normalize_01_into_pm1(ToTensor(img)). Resampling runs in float on the 0…255 values.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csetjmp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include <jpeglib.h>
#include <png.h>

#include "mvar/core/error.hpp"
#include "mvar/core/tensor_view.hpp"

namespace mvar {

struct ImageReadOptions {
  std::uint64_t max_pixels = std::uint64_t(1) << 26;  // 64 Mpixel: 192 MiB of RGB, far above any model side
  std::uint32_t max_side = 1u << 15;                   // 32768 px per side
  std::uint64_t max_file_bytes = std::uint64_t(1) << 30;
  std::uint8_t background = 255;                       // alpha is composited over this grey level
};

/// An 8-bit RGB image, HWC row-major (width·height·3 bytes).
struct Rgb8Image {
  int width = 0, height = 0;
  std::vector<std::uint8_t> rgb;
};

namespace detail {

inline void check_image_size(const std::string& src, std::uint64_t w, std::uint64_t h, const ImageReadOptions& o) {
  if (w < 1 || h < 1) throw Error(concat(src, ": the image has no pixels (", w, "×", h, ")"));
  if (w > o.max_side || h > o.max_side || w * h > o.max_pixels)
    throw Error(concat(src, ": image of ", w, "×", h, " pixels exceeds the limit (", o.max_side, " px per side, ",
                       o.max_pixels, " pixels) — refused before decoding (a decompression bomb, or raise ImageReadOptions)"));
}

inline std::uint8_t composite(std::uint8_t c, std::uint8_t a, std::uint8_t bg) {
  return std::uint8_t((unsigned(c) * a + unsigned(bg) * (255u - a) + 127u) / 255u);
}

// ---- PNG ------------------------------------------------------------------------------------
struct PngReadState {
  const std::uint8_t* data;
  std::size_t size, pos;
  char message[256];
};

inline void png_read_error(png_structp png, png_const_charp msg) {
  auto* st = static_cast<PngReadState*>(png_get_error_ptr(png));
  std::snprintf(st->message, sizeof st->message, "%s", msg ? msg : "libpng error");
  png_longjmp(png, 1);
}
inline void png_read_warning(png_structp, png_const_charp) {}
inline void png_read_bytes(png_structp png, png_bytep out, png_size_t n) {
  auto* st = static_cast<PngReadState*>(png_get_io_ptr(png));
  if (n > st->size - st->pos) png_error(png, "file truncated (read past the end of the data)");
  std::memcpy(out, st->data + st->pos, n);
  st->pos += n;
}

// Decodes into *out (allocated by the caller-supplied allocator callback after the size check).
// Returns 0 on success, 1 on a libpng error (message in st), 2 on a refused size (w, h set).
template <class Alloc>
int png_decode(PngReadState* st, const ImageReadOptions* o, std::uint32_t* w, std::uint32_t* h, int* channels,
               Alloc* alloc) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, st, png_read_error, png_read_warning);
  if (!png) {
    std::snprintf(st->message, sizeof st->message, "libpng: cannot create a read struct");
    return 1;
  }
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(png_jmpbuf(png))) {
    if (!info) std::snprintf(st->message, sizeof st->message, "libpng: cannot create an info struct");
    png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    return 1;
  }
  png_set_user_limits(png, o->max_side, o->max_side);
  png_set_chunk_malloc_max(png, 8u << 20);
  png_set_read_fn(png, st, png_read_bytes);
  png_read_info(png, info);
  *w = png_get_image_width(png, info);
  *h = png_get_image_height(png, info);
  if (*w < 1 || *h < 1 || *w > o->max_side || *h > o->max_side || std::uint64_t(*w) * *h > o->max_pixels) {
    png_destroy_read_struct(&png, &info, nullptr);
    return 2;
  }
  const int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  if (depth == 16) png_set_scale_16(png);
  if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  const int passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);
  *channels = int(png_get_channels(png, info));
  if ((*channels != 3 && *channels != 4) || png_get_rowbytes(png, info) != std::size_t(*w) * std::size_t(*channels)) {
    std::snprintf(st->message, sizeof st->message, "unexpected layout after conversion (%d channels)", *channels);
    png_destroy_read_struct(&png, &info, nullptr);
    return 1;
  }
  std::uint8_t* pixels = (*alloc)(std::size_t(*w) * *h * std::size_t(*channels));
  for (int p = 0; p < passes; ++p)
    for (std::uint32_t y = 0; y < *h; ++y) png_read_row(png, pixels + std::size_t(y) * *w * std::size_t(*channels), nullptr);
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return 0;
}

inline Rgb8Image decode_png(std::span<const std::uint8_t> file, const std::string& src, const ImageReadOptions& o) {
  // The IHDR chunk (always first, right after the signature) is checked before libpng reads on:
  // a bomb's header alone is refused by its declared size, not by a later truncation.
  if (file.size() >= 24 && std::memcmp(file.data() + 12, "IHDR", 4) == 0) {
    auto be32 = [&](std::size_t at) {
      return std::uint32_t(file[at]) << 24 | std::uint32_t(file[at + 1]) << 16 | std::uint32_t(file[at + 2]) << 8 |
             std::uint32_t(file[at + 3]);
    };
    check_image_size(src, be32(16), be32(20), o);
  }
  PngReadState st{file.data(), file.size(), 0, {}};
  std::uint32_t w = 0, h = 0;
  int channels = 0;
  std::vector<std::uint8_t> buf;
  auto alloc = [&](std::size_t n) {
    buf.assign(n, 0);
    return buf.data();
  };
  const int r = png_decode(&st, &o, &w, &h, &channels, &alloc);
  if (r == 2) check_image_size(src, w, h, o);
  if (r != 0) throw Error(concat(src, ": not a readable PNG: ", st.message));
  Rgb8Image img{int(w), int(h), {}};
  if (channels == 3) {
    img.rgb = std::move(buf);
  } else {
    img.rgb.resize(std::size_t(w) * h * 3);
    for (std::size_t i = 0; i < std::size_t(w) * h; ++i)
      for (int c = 0; c < 3; ++c) img.rgb[i * 3 + std::size_t(c)] = composite(buf[i * 4 + std::size_t(c)], buf[i * 4 + 3], o.background);
  }
  return img;
}

// ---- JPEG -----------------------------------------------------------------------------------
struct JpegErr {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX + 64];
};

inline void jpeg_error_exit(j_common_ptr c) {
  auto* e = reinterpret_cast<JpegErr*>(c->err);
  char buf[JMSG_LENGTH_MAX];
  (*c->err->format_message)(c, buf);
  std::snprintf(e->message, sizeof e->message, "%s", buf);
  std::longjmp(e->jump, 1);
}
// Warnings (msg_level −1: corrupt data, premature end of file) are errors: libjpeg would
// otherwise fill the missing part with grey and succeed.
inline void jpeg_emit(j_common_ptr c, int level) {
  if (level < 0) jpeg_error_exit(c);
}

template <class Alloc>
int jpeg_decode(const std::uint8_t* data, std::size_t size, const ImageReadOptions* o, JpegErr* err, std::uint32_t* w,
                std::uint32_t* h, Alloc* alloc) {
  jpeg_decompress_struct cinfo;
  cinfo.err = jpeg_std_error(&err->mgr);
  err->mgr.error_exit = jpeg_error_exit;
  err->mgr.emit_message = jpeg_emit;
  if (setjmp(err->jump)) {
    jpeg_destroy_decompress(&cinfo);
    return 1;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  *w = cinfo.image_width;
  *h = cinfo.image_height;
  if (*w < 1 || *h < 1 || *w > o->max_side || *h > o->max_side || std::uint64_t(*w) * *h > o->max_pixels) {
    jpeg_destroy_decompress(&cinfo);
    return 2;
  }
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    std::snprintf(err->message, sizeof err->message, "CMYK/YCCK JPEGs are not supported (convert to RGB first)");
    jpeg_destroy_decompress(&cinfo);
    return 1;
  }
  cinfo.out_color_space = JCS_RGB;
  cinfo.mem->max_memory_to_use = long(std::min<std::uint64_t>(o->max_pixels * 16, std::uint64_t(1) << 31));
  jpeg_start_decompress(&cinfo);
  if (cinfo.output_components != 3 || cinfo.output_width != *w || cinfo.output_height != *h) {
    std::snprintf(err->message, sizeof err->message, "unexpected output layout (%d components)", cinfo.output_components);
    jpeg_destroy_decompress(&cinfo);
    return 1;
  }
  std::uint8_t* pixels = (*alloc)(std::size_t(*w) * *h * 3);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = pixels + std::size_t(cinfo.output_scanline) * *w * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return 0;
}

inline Rgb8Image decode_jpeg(std::span<const std::uint8_t> file, const std::string& src, const ImageReadOptions& o) {
  JpegErr err{};
  std::uint32_t w = 0, h = 0;
  std::vector<std::uint8_t> buf;
  auto alloc = [&](std::size_t n) {
    buf.assign(n, 0);
    return buf.data();
  };
  const int r = jpeg_decode(file.data(), file.size(), &o, &err, &w, &h, &alloc);
  if (r == 2) check_image_size(src, w, h, o);
  if (r != 0) throw Error(concat(src, ": not a readable JPEG: ", err.message));
  return Rgb8Image{int(w), int(h), std::move(buf)};
}

}  // namespace detail

/// Decodes a PNG or JPEG held in memory (recognised by its signature); src names it in errors.
inline Rgb8Image decode_image(std::span<const std::uint8_t> file, const std::string& src,
                              const ImageReadOptions& o = {}) {
  static constexpr std::uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (file.size() >= 8 && std::memcmp(file.data(), kPng, 8) == 0) return detail::decode_png(file, src, o);
  if (file.size() >= 3 && file[0] == 0xff && file[1] == 0xd8 && file[2] == 0xff) return detail::decode_jpeg(file, src, o);
  throw Error(concat(src, ": not a PNG or JPEG file (unrecognised signature)"));
}

/// Reads and decodes a PNG or JPEG file.
inline Rgb8Image read_image(const std::string& path, const ImageReadOptions& o = {}) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw Error(concat(path, ": cannot open: ", std::strerror(errno)));
  std::vector<std::uint8_t> bytes;
  std::fseek(f, 0, SEEK_END);
  const long n = std::ftell(f);
  std::fseek(f, 0, SEEK_SET);
  if (n < 0 || std::uint64_t(n) > o.max_file_bytes) {
    std::fclose(f);
    throw Error(concat(path, ": cannot read (size ", n, ", limit ", o.max_file_bytes, " bytes)"));
  }
  bytes.resize(std::size_t(n));
  const std::size_t got = n > 0 ? std::fread(bytes.data(), 1, bytes.size(), f) : 0;
  std::fclose(f);
  if (got != bytes.size()) throw Error(concat(path, ": read error"));
  return decode_image(bytes, path, o);
}

/// How to_model_input places the image in the model's square.
struct ImageFit {
  int side = 256;      // the model's image side S
  int inner = 0;       // resize to inner × inner (0: = side), centred in the S × S canvas
  float pad = -1.0f;   // the canvas value around an inner image (model scale, [−1, 1])
};

namespace detail {

// One axis of the resize: for output o, taps (index, weight) over the source [0, n).
struct ResizeAxis {
  std::vector<std::ptrdiff_t> begin, count;  // output o reads sources begin[o] … begin[o] + count[o] − 1
  std::vector<float> weight;                  // their weights, at weight[o·taps + k]
  std::ptrdiff_t taps = 0;
};

inline ResizeAxis resize_axis(std::ptrdiff_t in, std::ptrdiff_t out) {
  ResizeAxis a;
  a.begin.resize(std::size_t(out));
  a.count.resize(std::size_t(out));
  if (out <= in) {  // area: output o covers source [o·in/out, (o+1)·in/out)
    a.taps = in / out + 2;
    a.weight.assign(std::size_t(out * a.taps), 0.0f);
    for (std::ptrdiff_t o = 0; o < out; ++o) {
      const double lo = double(o) * double(in) / double(out), hi = double(o + 1) * double(in) / double(out);
      const auto b = std::ptrdiff_t(lo);
      const auto e = std::min<std::ptrdiff_t>(in, std::ptrdiff_t(std::ceil(hi)));
      a.begin[std::size_t(o)] = b;
      a.count[std::size_t(o)] = e - b;
      for (std::ptrdiff_t i = b; i < e; ++i)
        a.weight[std::size_t(o * a.taps + (i - b))] =
            float((std::min(hi, double(i + 1)) - std::max(lo, double(i))) / (hi - lo));
    }
  } else {  // bilinear, half-pixel centres, edges clamped
    a.taps = 2;
    a.weight.assign(std::size_t(out * 2), 0.0f);
    for (std::ptrdiff_t o = 0; o < out; ++o) {
      double src = (double(o) + 0.5) * double(in) / double(out) - 0.5;
      src = std::clamp(src, 0.0, double(in - 1));
      const auto i0 = std::ptrdiff_t(src);
      const auto i1 = std::min(i0 + 1, in - 1);
      const float t = float(src - double(i0));
      a.begin[std::size_t(o)] = i0;
      a.count[std::size_t(o)] = i1 > i0 ? 2 : 1;
      a.weight[std::size_t(o * 2)] = i1 > i0 ? 1.0f - t : 1.0f;
      a.weight[std::size_t(o * 2 + 1)] = i1 > i0 ? t : 0.0f;
    }
  }
  return a;
}

}  // namespace detail

/// out [3, fit.side, fit.side] = the image centre-cropped to a square, resized to fit.inner (see
/// the header comment), in [−1, 1]; the canvas around an inner image is fit.pad.
inline void to_model_input(const Rgb8Image& img, const ImageFit& fit, TensorView<float, 3> out) {
  const int S = fit.side, inner = fit.inner > 0 ? fit.inner : fit.side;
  if (S < 1 || inner > S || out.extent(0) != 3 || out.extent(1) != S || out.extent(2) != S)
    throw Error(concat("to_model_input: need out [3, ", S, ", ", S, "] and 1 ≤ inner ≤ side, got inner ", inner));
  if (img.width < 1 || img.height < 1 || img.rgb.size() != std::size_t(img.width) * std::size_t(img.height) * 3)
    throw Error("to_model_input: empty or inconsistent image");
  const std::ptrdiff_t sq = std::min(img.width, img.height);
  const std::ptrdiff_t ox = (img.width - sq) / 2, oy = (img.height - sq) / 2;
  const auto ax = detail::resize_axis(sq, inner), ay = ax;  // square: both axes alike
  const std::ptrdiff_t off = (S - inner) / 2;
  for (std::ptrdiff_t c = 0; c < 3; ++c)
    for (std::ptrdiff_t y = 0; y < S; ++y)
      for (std::ptrdiff_t x = 0; x < S; ++x) out(c, y, x) = fit.pad;
  // Horizontal pass per source row of the crop, then vertical: a row buffer of inner·3 floats
  // per source row (sq rows) — small next to the decoded image itself.
  std::vector<float> rows(std::size_t(sq) * std::size_t(inner) * 3);
  for (std::ptrdiff_t y = 0; y < sq; ++y) {
    const std::uint8_t* src = img.rgb.data() + (std::size_t(y + oy) * std::size_t(img.width) + std::size_t(ox)) * 3;
    for (std::ptrdiff_t x = 0; x < inner; ++x)
      for (std::ptrdiff_t c = 0; c < 3; ++c) {
        float s = 0;
        for (std::ptrdiff_t k = 0; k < ax.count[std::size_t(x)]; ++k)
          s += ax.weight[std::size_t(x * ax.taps + k)] * float(src[std::size_t(ax.begin[std::size_t(x)] + k) * 3 + std::size_t(c)]);
        rows[(std::size_t(y) * std::size_t(inner) + std::size_t(x)) * 3 + std::size_t(c)] = s;
      }
  }
  for (std::ptrdiff_t y = 0; y < inner; ++y)
    for (std::ptrdiff_t x = 0; x < inner; ++x)
      for (std::ptrdiff_t c = 0; c < 3; ++c) {
        float s = 0;
        for (std::ptrdiff_t k = 0; k < ay.count[std::size_t(y)]; ++k)
          s += ay.weight[std::size_t(y * ay.taps + k)] *
               rows[(std::size_t(ay.begin[std::size_t(y)] + k) * std::size_t(inner) + std::size_t(x)) * 3 + std::size_t(c)];
        out(c, off + y, off + x) = std::clamp(s, 0.0f, 255.0f) / 255.0f * 2.0f - 1.0f;
      }
}

/// Grey levels [side × side] of an image after to_model_input's crop and resize (mean of R, G, B;
/// for mask images: EditMask::from_image).
inline std::vector<std::uint8_t> to_grey_square(const Rgb8Image& img, int side) {
  std::vector<float> planes(std::size_t(3) * std::size_t(side) * std::size_t(side));
  to_model_input(img, ImageFit{side, side, -1.0f}, TensorView<float, 3>(planes.data(), {3, side, side}));
  std::vector<std::uint8_t> g(std::size_t(side) * std::size_t(side));
  const std::size_t n = g.size();
  for (std::size_t i = 0; i < n; ++i) {
    const float m = (planes[i] + planes[n + i] + planes[2 * n + i]) / 3.0f;
    g[i] = std::uint8_t(std::clamp(std::nearbyint((m + 1.0f) * 0.5f * 255.0f), 0.0f, 255.0f));
  }
  return g;
}

}  // namespace mvar
