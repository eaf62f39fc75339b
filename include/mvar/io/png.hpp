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
#include <cstring>
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

/// Encodes rgb (height rows of width·3 bytes) into f; on failure returns false with err set.
inline bool png_encode(std::FILE* f, const std::uint8_t* rgb, std::uint32_t width, std::uint32_t height,
                       PngError* err) {
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
  png_write_info(png, info);
  for (std::uint32_t y = 0; y < height; ++y) png_write_row(png, rgb + std::size_t(y) * width * 3);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

/// Encodes one image into f (the writer of atomic_write); throws mvar::Error naming path on failure.
inline bool write_png_to(std::FILE* f, const std::string& path, std::span<const std::uint8_t> hwc, int width, int height) {
  PngError err{};
  if (!png_encode(f, hwc.data(), std::uint32_t(width), std::uint32_t(height), &err))
    throw Error(concat(path, ": PNG encoding failed: ", err.message));
  return std::ferror(f) == 0;
}

}  // namespace detail

/// Writes one RGB8 image (HWC, width·height·3 bytes) to path as PNG, atomically.
inline void write_png(const std::string& path, std::span<const std::uint8_t> hwc, int width, int height) {
  if (width < 1 || height < 1 || hwc.size() != std::size_t(width) * std::size_t(height) * 3)
    throw Error(concat(path, ": write_png needs width·height·3 = ", std::size_t(width > 0 ? width : 0) * std::size_t(height > 0 ? height : 0) * 3,
                       " bytes for ", width, "×", height, ", got ", hwc.size()));
  atomic_write(path, [&](std::FILE* f) { return detail::write_png_to(f, path, hwc, width, height); });
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
/// or as numbered files (numbered_png_path). Returns the paths written. Each file is atomic, and
/// numbered files are written all or nothing: if one fails, none is (not even the ones before it).
inline std::vector<std::string> write_png_batch(const std::string& path, std::span<const std::uint8_t> images, int count,
                                                int width, int height, PngBatch mode, int columns = 0, int gap = 2) {
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
          return detail::write_png_to(f, written[i], images.subspan(one * i, one), width, height);
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
  write_png(path, grid, gw, gh);
  written.push_back(path);
  return written;
}

}  // namespace mvar
