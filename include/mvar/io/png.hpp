// mvar/io/png.hpp — PNG output of 8-bit RGB images (HWC, as to_rgb8 produces) through libpng:
// one image, or a batch as one grid image or as numbered files. Every file is written atomically
// (io/atomic_write.hpp: temporary file + rename), so a failed run leaves no half-written image, and
// the numbered files of a batch are written all or nothing (atomic_write_all); a path that cannot
// be written throws mvar::Error naming it.
//
// libpng's errors arrive by longjmp. The encoder below keeps only trivially destructible locals in
// the frame that calls setjmp and writes row by row (no row-pointer vector), so the jump never
// skips a destructor.
#pragma once

#include <csetjmp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include <png.h>

#include "mvar/core/error.hpp"
#include "mvar/core/memory_limit.hpp"
#include "mvar/io/atomic_write.hpp"

namespace mvar {

namespace detail {

struct PngError {
  char message[256];
};

inline void png_error_to_buffer(png_structp png, png_const_charp msg) {
  auto* e = static_cast<PngError*>(png_get_error_ptr(png));
  std::snprintf(e->message, sizeof e->message, "%s", msg ? msg : "libpng error");
  png_longjmp(png, 1);
}
inline void png_ignore_warning(png_structp, png_const_charp) {}

}  // namespace detail

/// A text chunk of a PNG (written as iTXt: UTF-8, uncompressed).
struct PngText {
  std::string key, value;
};

namespace detail {

/// Encodes rgb (height rows of width·3 bytes) into f; on failure returns false with err set.
inline bool png_encode(std::FILE* f, const std::uint8_t* rgb, std::uint32_t width, std::uint32_t height,
                       PngError* err, std::span<const PngText> text = {}) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, err, png_error_to_buffer, png_ignore_warning);
  if (!png) {
    std::snprintf(err->message, sizeof err->message, "libpng: cannot create a write struct");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(png_jmpbuf(png))) {
    if (!info) std::snprintf(err->message, sizeof err->message, "libpng: cannot create an info struct");
    png_destroy_write_struct(&png, info ? &info : nullptr);
    return false;
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  // Text chunks before the image data. libpng keeps pointers: the strings outlive png_write_info.
  png_text chunks[8];
  const int n_text = int(std::min<std::size_t>(text.size(), 8));
  for (int i = 0; i < n_text; ++i) {
    chunks[i] = png_text{};
    chunks[i].compression = PNG_ITXT_COMPRESSION_NONE;
    chunks[i].key = const_cast<char*>(text[std::size_t(i)].key.c_str());
    chunks[i].text = const_cast<char*>(text[std::size_t(i)].value.c_str());
    chunks[i].itxt_length = text[std::size_t(i)].value.size();
    chunks[i].lang = nullptr;
    chunks[i].lang_key = nullptr;
  }
  if (n_text > 0) png_set_text(png, info, chunks, n_text);
  png_write_info(png, info);
  for (std::uint32_t y = 0; y < height; ++y) png_write_row(png, rgb + std::size_t(y) * width * 3);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

/// Encodes one image into f (the writer of atomic_write); throws mvar::Error naming path on failure.
inline bool write_png_to(std::FILE* f, const std::string& path, std::span<const std::uint8_t> hwc, int width, int height,
                         std::span<const PngText> text = {}) {
  PngError err{};
  if (text.size() > 8) throw Error(concat(path, ": at most 8 PNG text chunks, got ", text.size()));
  for (const auto& t : text)
    if (t.key.empty() || t.key.size() > 79 || t.key.find('\0') != std::string::npos)
      throw Error(concat(path, ": a PNG text key must have 1 to 79 characters, got '", t.key, "'"));
  if (!png_encode(f, hwc.data(), std::uint32_t(width), std::uint32_t(height), &err, text))
    throw Error(concat(path, ": PNG encoding failed: ", err.message));
  return std::ferror(f) == 0;
}

}  // namespace detail

/// Writes one RGB8 image (HWC, width·height·3 bytes) to path as PNG, atomically.
inline void write_png(const std::string& path, std::span<const std::uint8_t> hwc, int width, int height,
                      std::span<const PngText> text = {}) {
  if (width < 1 || height < 1 || hwc.size() != std::size_t(width) * std::size_t(height) * 3)
    throw Error(concat(path, ": write_png needs width·height·3 = ", std::size_t(width > 0 ? width : 0) * std::size_t(height > 0 ? height : 0) * 3,
                       " bytes for ", width, "×", height, ", got ", hwc.size()));
  atomic_write(path, [&](std::FILE* f) { return detail::write_png_to(f, path, hwc, width, height, text); });
}

/// How write_png_batch stores a batch.
enum class PngBatch { Grid, Numbered };

/// Path of image i of a numbered batch: "dir/name.png" → "dir/name_000.png", "dir/name_001.png", …
inline std::string numbered_png_path(const std::string& path, int i) {
  std::string stem = path;
  const auto slash = stem.find_last_of('/');
  const auto dot = stem.find_last_of('.');
  std::string ext = ".png";
  if (dot != std::string::npos && (slash == std::string::npos || dot > slash)) {
    ext = stem.substr(dot);
    stem.resize(dot);
  }
  char num[16];
  std::snprintf(num, sizeof num, "_%03d", i);
  return stem + num + ext;
}

/// Writes `count` RGB8 images (each height × width × 3, stored one after another in images) either
/// as one grid image (`columns` per row, 0 = ⌈√count⌉, `gap` black pixels between cells) at path,
/// or as numbered files (numbered_png_path). text_of(i) gives the text chunks of image i's file
/// (i = −1: the grid's). Returns the paths written. Each file is atomic, and
/// numbered files are written all or nothing: if one fails, none is (not even the ones before it).
inline std::vector<std::string> write_png_batch(const std::string& path, std::span<const std::uint8_t> images, int count,
                                                int width, int height, PngBatch mode, int columns = 0, int gap = 2,
                                                const std::function<std::vector<PngText>(int image)>& text_of = {}) {
  const std::size_t one = std::size_t(width > 0 ? width : 0) * std::size_t(height > 0 ? height : 0) * 3;
  if (count < 1 || one == 0 || images.size() != one * std::size_t(count))
    throw Error(concat(path, ": write_png_batch needs ", count, " images of ", width, "×", height, "×3 bytes (",
                       one * std::size_t(count > 0 ? count : 0), " bytes), got ", images.size()));
  std::vector<std::string> written;
  if (mode == PngBatch::Numbered) {
    for (int i = 0; i < count; ++i) written.push_back(numbered_png_path(path, i));
    atomic_write_all(
        written,
        [&](std::FILE* f, std::size_t i) {
          const auto text = text_of ? text_of(int(i)) : std::vector<PngText>{};
          return detail::write_png_to(f, written[i], images.subspan(one * i, one), width, height, text);
        },
        count == 1 ? "image" : "images");
    return written;
  }
  if (columns <= 0)
    while (columns * columns < count) ++columns;
  if (gap < 0) gap = 0;
  // Grid extents in 64 bits: --columns and --upscale come from the command line.
  const std::int64_t cols = columns, rows64 = (count + cols - 1) / cols;
  const std::int64_t gw64 = cols * width + (cols - 1) * gap, gh64 = rows64 * height + (rows64 - 1) * gap;
  if (gw64 > std::numeric_limits<std::int32_t>::max() || gh64 > std::numeric_limits<std::int32_t>::max())
    throw Error(concat(path, ": a grid of ", columns, " columns × ", rows64, " rows of ", width, "×", height, " images would be ",
                       gw64, "×", gh64, " pixels, more than a PNG can hold (2^31 − 1 per side)"));
  const int gw = int(gw64), gh = int(gh64);
  const std::string grid_what = concat(path, ": grid image of ", gw, "×", gh, " pixels");
  check_allocation(checked_bytes({std::uint64_t(gw), std::uint64_t(gh)}, 3, grid_what), grid_what);
  std::vector<std::uint8_t> grid(std::size_t(gw) * std::size_t(gh) * 3, 0);
  for (int i = 0; i < count; ++i) {
    const int x0 = (i % columns) * (width + gap), y0 = (i / columns) * (height + gap);
    for (int y = 0; y < height; ++y)
      std::memcpy(&grid[(std::size_t(y0 + y) * gw + x0) * 3], &images[one * std::size_t(i) + std::size_t(y) * width * 3],
                  std::size_t(width) * 3);
  }
  write_png(path, grid, gw, gh, text_of ? text_of(-1) : std::vector<PngText>{});
  written.push_back(path);
  return written;
}

/// Each of `count` images (side × side × 3, one after another) enlarged `factor`× by repeating
/// pixels (nearest neighbour), for viewing small images.
inline std::vector<std::uint8_t> upscale_nearest(std::span<const std::uint8_t> images, int count, int side, int factor) {
  if (factor < 1 || side < 1 || images.size() != std::size_t(count) * side * side * 3)
    throw Error(concat("upscale_nearest: ", count, " images of ", side, "² pixels do not fill ", images.size(), " bytes (factor ", factor, ")"));
  const std::size_t big = std::size_t(side) * std::size_t(factor);
  const std::string what = concat(count, " images of ", big, "×", big, " pixels");
  check_allocation(checked_bytes({std::uint64_t(count), big, big}, 3, what), what);
  std::vector<std::uint8_t> out(std::size_t(count) * big * big * 3);
  for (std::size_t b = 0; b < std::size_t(count); ++b)
    for (std::size_t y = 0; y < big; ++y)
      for (std::size_t x = 0; x < big; ++x)
        for (std::size_t c = 0; c < 3; ++c)
          out[((b * big + y) * big + x) * 3 + c] = images[((b * std::size_t(side) + y / std::size_t(factor)) * std::size_t(side) + x / std::size_t(factor)) * 3 + c];
  return out;
}

/// The text chunks (tEXt and uncompressed iTXt) of a PNG file, in file order, read by walking its
/// chunks without decoding the image. Throws naming the file when it is not a PNG or a chunk runs
/// past the end; compressed text chunks (zTXt, compressed iTXt) are skipped.
inline std::vector<PngText> read_png_text(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw Error(concat(path, ": cannot open: ", std::strerror(errno)));
  struct Closer {
    std::FILE* f;
    ~Closer() { std::fclose(f); }
  } closer{f};
  unsigned char sig[8];
  static constexpr unsigned char kSig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (std::fread(sig, 1, 8, f) != 8 || std::memcmp(sig, kSig, 8) != 0) throw Error(concat(path, ": not a PNG file"));
  std::vector<PngText> out;
  constexpr std::uint32_t kMaxText = 1u << 20;  // a text chunk larger than 1 MiB is not ours: skipped
  for (int chunks = 0; chunks < 1000000; ++chunks) {
    unsigned char head[8];
    if (std::fread(head, 1, 8, f) != 8) throw Error(concat(path, ": truncated PNG (no IEND chunk)"));
    const std::uint32_t len = std::uint32_t(head[0]) << 24 | std::uint32_t(head[1]) << 16 | std::uint32_t(head[2]) << 8 | head[3];
    const std::string type(reinterpret_cast<const char*>(head + 4), 4);
    if (len > 0x7fffffffu) throw Error(concat(path, ": PNG chunk '", type, "' claims ", len, " bytes (more than 2^31 − 1)"));
    if (type == "IEND") return out;
    if ((type == "tEXt" || type == "iTXt") && len <= kMaxText) {
      std::string data(len, '\0');
      if (len && std::fread(data.data(), 1, len, f) != len) throw Error(concat(path, ": truncated PNG chunk '", type, "'"));
      if (std::fseek(f, 4, SEEK_CUR) != 0) throw Error(concat(path, ": truncated PNG chunk '", type, "'"));
      const auto z = data.find('\0');
      if (z == std::string::npos || z == 0 || z > 79) continue;  // malformed keyword: not a text we can show
      PngText t{data.substr(0, z), {}};
      if (type == "tEXt") {
        t.value = data.substr(z + 1);
      } else {  // iTXt: flag, method, language\0, translated keyword\0, text
        if (z + 2 >= data.size() || data[z + 1] != 0) continue;  // compressed: skipped
        const auto lang_end = data.find('\0', z + 3);
        const auto trans_end = lang_end == std::string::npos ? lang_end : data.find('\0', lang_end + 1);
        if (trans_end == std::string::npos) continue;
        t.value = data.substr(trans_end + 1);
      }
      out.push_back(std::move(t));
    } else if (std::fseek(f, long(len) + 4, SEEK_CUR) != 0) {
      throw Error(concat(path, ": truncated PNG chunk '", type, "'"));
    }
  }
  throw Error(concat(path, ": more than a million PNG chunks"));
}

}  // namespace mvar
