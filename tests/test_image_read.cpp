// Image input (io/image_read.hpp) on images this test writes itself with libpng / libjpeg:
// RGB, grey (1, 8, 16 bits), palette (with tRNS), 16-bit, alpha and JPEG (RGB and grey) decode to
// the documented RGB8; truncated files, non-images, absurd dimensions and decompression bombs
// give clear errors before any pixel buffer; the crop/resize to the model's square.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include "mvar/io/image_read.hpp"

using namespace mvar;

namespace {

struct PngSpec {
  int width, height, color, depth;
  std::vector<std::uint8_t> rows;  // packed rows as libpng expects for (color, depth)
  std::vector<png_color> palette;
  std::vector<std::uint8_t> trns;
  bool interlace = false;
};

void png_to_vec(png_structp png, png_bytep data, png_size_t n) {
  auto* v = static_cast<std::vector<std::uint8_t>*>(png_get_io_ptr(png));
  v->insert(v->end(), data, data + n);
}

std::vector<std::uint8_t> encode_png(const PngSpec& s) {
  std::vector<std::uint8_t> out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  REQUIRE((png && info));
  if (setjmp(png_jmpbuf(png))) FAIL("libpng write error");
  png_set_write_fn(png, &out, png_to_vec, nullptr);
  png_set_IHDR(png, info, png_uint_32(s.width), png_uint_32(s.height), s.depth, s.color,
               s.interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (!s.palette.empty()) png_set_PLTE(png, info, s.palette.data(), int(s.palette.size()));
  if (!s.trns.empty()) png_set_tRNS(png, info, s.trns.data(), int(s.trns.size()), nullptr);
  png_write_info(png, info);
  if (s.depth == 16) png_set_swap(png);  // rows hold little-endian 16-bit samples
  const std::size_t row = s.rows.size() / std::size_t(s.height);
  std::vector<png_bytep> ptrs;
  for (int y = 0; y < s.height; ++y) ptrs.push_back(const_cast<png_bytep>(s.rows.data() + std::size_t(y) * row));
  png_write_image(png, ptrs.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

std::vector<std::uint8_t> encode_jpeg(const std::vector<std::uint8_t>& px, int w, int h, int comps, int quality) {
  jpeg_compress_struct c;
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* mem = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &mem, &size);
  c.image_width = JDIMENSION(w);
  c.image_height = JDIMENSION(h);
  c.input_components = comps;
  c.in_color_space = comps == 3 ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, quality, TRUE);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW r = const_cast<JSAMPROW>(px.data() + std::size_t(c.next_scanline) * std::size_t(w * comps));
    jpeg_write_scanlines(&c, &r, 1);
  }
  jpeg_finish_compress(&c);
  std::vector<std::uint8_t> out(mem, mem + size);
  jpeg_destroy_compress(&c);
  std::free(mem);
  return out;
}

std::string error_of(const std::vector<std::uint8_t>& bytes, const ImageReadOptions& o = {}) {
  try {
    decode_image(bytes, "test.img", o);
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

// A PNG that is only its signature and an IHDR chunk (valid CRC) declaring w × h: a bomb's header.
std::vector<std::uint8_t> png_header_only(std::uint32_t w, std::uint32_t h) {
  std::vector<std::uint8_t> v = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
  auto be32 = [&](std::uint32_t x) {
    for (int s = 24; s >= 0; s -= 8) v.push_back(std::uint8_t(x >> s));
  };
  be32(w);
  be32(h);
  for (std::uint8_t b : {8, 2, 0, 0, 0}) v.push_back(b);  // 8-bit RGB, deflate, no filter, no interlace
  be32(std::uint32_t(crc32(crc32(0, nullptr, 0), v.data() + 12, 17)));
  return v;
}

std::vector<std::uint8_t> gradient_rgb(int w, int h) {
  std::vector<std::uint8_t> px(std::size_t(w * h * 3));
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      px[std::size_t((y * w + x) * 3)] = std::uint8_t(4 * x);
      px[std::size_t((y * w + x) * 3 + 1)] = std::uint8_t(4 * y);
      px[std::size_t((y * w + x) * 3 + 2)] = std::uint8_t(2 * (x + y));
    }
  return px;
}

}  // namespace

TEST_CASE("PNG colour types decode to the documented RGB8", "[io][image]") {
  SECTION("RGB 8-bit, plain and interlaced: exact") {
    for (bool interlace : {false, true}) {
      const auto px = gradient_rgb(13, 7);
      const auto img = decode_image(encode_png({13, 7, PNG_COLOR_TYPE_RGB, 8, px, {}, {}, interlace}), "rgb.png");
      REQUIRE(img.width == 13);
      REQUIRE(img.height == 7);
      REQUIRE(img.rgb == px);
    }
  }
  SECTION("grey 8-bit → R = G = B") {
    std::vector<std::uint8_t> g = {0, 17, 128, 255, 3, 99};
    const auto img = decode_image(encode_png({3, 2, PNG_COLOR_TYPE_GRAY, 8, g, {}, {}}), "g.png");
    for (std::size_t i = 0; i < g.size(); ++i)
      for (int c = 0; c < 3; ++c) REQUIRE(img.rgb[i * 3 + std::size_t(c)] == g[i]);
  }
  SECTION("grey 1-bit → 0 / 255") {
    const std::vector<std::uint8_t> row = {0b10100000};  // 3 pixels: 1 0 1
    const auto img = decode_image(encode_png({3, 1, PNG_COLOR_TYPE_GRAY, 1, row, {}, {}}), "g1.png");
    REQUIRE(img.rgb == std::vector<std::uint8_t>{255, 255, 255, 0, 0, 0, 255, 255, 255});
  }
  SECTION("grey 16-bit → v·255/65535 rounded") {
    const std::uint16_t v[3] = {0, 0x1234, 0xffff};
    std::vector<std::uint8_t> le(6);
    std::memcpy(le.data(), v, 6);
    const auto img = decode_image(encode_png({3, 1, PNG_COLOR_TYPE_GRAY, 16, le, {}, {}}), "g16.png");
    for (int i = 0; i < 3; ++i) REQUIRE(int(img.rgb[std::size_t(i * 3)]) == int(std::lround(v[i] * 255.0 / 65535.0)));
  }
  SECTION("palette with tRNS → RGB, transparency composited over white (default) or black") {
    const std::vector<png_color> pal = {{10, 20, 30}, {200, 100, 50}};
    const std::vector<std::uint8_t> trns = {255, 0};  // entry 1 fully transparent
    const auto bytes = encode_png({2, 1, PNG_COLOR_TYPE_PALETTE, 8, {0, 1}, pal, trns});
    REQUIRE(decode_image(bytes, "p.png").rgb == std::vector<std::uint8_t>{10, 20, 30, 255, 255, 255});
    ImageReadOptions black;
    black.background = 0;
    REQUIRE(decode_image(bytes, "p.png", black).rgb == std::vector<std::uint8_t>{10, 20, 30, 0, 0, 0});
  }
  SECTION("RGBA and grey+alpha: round((c·a + bg·(255 − a)) / 255)") {
    const auto img = decode_image(encode_png({2, 1, PNG_COLOR_TYPE_RGB_ALPHA, 8, {200, 0, 100, 128, 7, 8, 9, 255}, {}, {}}), "a.png");
    auto comp = [](int c, int a) { return (c * a + 255 * (255 - a) + 127) / 255; };
    REQUIRE(img.rgb == std::vector<std::uint8_t>{std::uint8_t(comp(200, 128)), std::uint8_t(comp(0, 128)),
                                                 std::uint8_t(comp(100, 128)), 7, 8, 9});
    const auto ga = decode_image(encode_png({1, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 8, {60, 51}, {}, {}}), "ga.png");
    REQUIRE(ga.rgb == std::vector<std::uint8_t>(3, std::uint8_t(comp(60, 51))));
  }
}

TEST_CASE("JPEG (RGB and grey) decodes close to its source", "[io][image]") {
  const int w = 48, h = 40;
  const auto px = gradient_rgb(w, h);
  const auto img = decode_image(encode_jpeg(px, w, h, 3, 95), "x.jpg");
  REQUIRE(img.width == w);
  REQUIRE(img.height == h);
  double err = 0;
  for (std::size_t i = 0; i < px.size(); ++i) err += std::abs(int(img.rgb[i]) - int(px[i]));
  CHECK(err / double(px.size()) < 3.0);  // quality 95 on a smooth gradient: ~1 level on average
  std::vector<std::uint8_t> grey(std::size_t(w * h));
  for (std::size_t i = 0; i < grey.size(); ++i) grey[i] = std::uint8_t(i % 251);
  const auto g = decode_image(encode_jpeg(grey, w, h, 1, 90), "g.jpg");
  for (std::size_t i = 0; i < grey.size(); ++i) {
    REQUIRE(g.rgb[i * 3] == g.rgb[i * 3 + 1]);
    REQUIRE(g.rgb[i * 3] == g.rgb[i * 3 + 2]);
  }
}

TEST_CASE("bad images: truncated, not an image, absurd dimensions, decompression bombs", "[io][image][errors]") {
  const auto png = encode_png({16, 16, PNG_COLOR_TYPE_RGB, 8, gradient_rgb(16, 16), {}, {}});
  const auto jpg = encode_jpeg(gradient_rgb(32, 32), 32, 32, 3, 90);
  SECTION("truncated PNG and JPEG") {
    for (std::size_t keep : {std::size_t(20), png.size() / 2, png.size() - 13}) {
      CAPTURE(keep);
      REQUIRE_THAT(error_of(std::vector<std::uint8_t>(png.begin(), png.begin() + std::ptrdiff_t(keep))),
                   Catch::Contains("test.img: not a readable PNG"));
    }
    for (std::size_t keep : {std::size_t(10), jpg.size() / 2, jpg.size() - 2}) {
      CAPTURE(keep);
      REQUIRE_THAT(error_of(std::vector<std::uint8_t>(jpg.begin(), jpg.begin() + std::ptrdiff_t(keep))),
                   Catch::Contains("test.img: not a readable JPEG"));
    }
  }
  SECTION("not an image") {
    REQUIRE_THAT(error_of({'G', 'I', 'F', '8', '9', 'a'}), Catch::Contains("not a PNG or JPEG file"));
    REQUIRE_THAT(error_of({}), Catch::Contains("not a PNG or JPEG file"));
  }
  SECTION("a PNG header declaring 30000 × 30000 (2.7 GB of pixels) is refused before decoding") {
    REQUIRE_THAT(error_of(png_header_only(30000, 30000)), Catch::Contains("30000×30000 pixels exceeds the limit"));
    REQUIRE_THAT(error_of(png_header_only(1u << 20, 4)), Catch::Contains("exceeds the limit"));
  }
  SECTION("a JPEG whose frame header declares 60000 × 60000") {
    auto bomb = jpg;
    bool patched = false;
    for (std::size_t i = 0; i + 8 < bomb.size(); ++i)
      if (bomb[i] == 0xff && (bomb[i + 1] == 0xc0 || bomb[i + 1] == 0xc2)) {  // SOF0/SOF2: len(2) P(1) Y(2) X(2)
        bomb[i + 5] = 0xea, bomb[i + 6] = 0x60, bomb[i + 7] = 0xea, bomb[i + 8] = 0x60;
        patched = true;
        break;
      }
    REQUIRE(patched);
    REQUIRE_THAT(error_of(bomb), Catch::Contains("60000×60000 pixels exceeds the limit"));
  }
  SECTION("the limits are options: a 16 × 16 image over a 100-pixel limit") {
    ImageReadOptions o;
    o.max_pixels = 100;
    REQUIRE_THAT(error_of(png, o), Catch::Contains("16×16 pixels exceeds the limit"));
    REQUIRE_THAT(error_of(jpg, o), Catch::Contains("32×32 pixels exceeds the limit"));
  }
  SECTION("a missing file") {
    REQUIRE_THROWS_WITH(read_image("/nonexistent/x.png"), Catch::Contains("/nonexistent/x.png: cannot open"));
  }
}

TEST_CASE("to_model_input: centre crop, area shrink, bilinear enlarge, inner frame with pad, [−1, 1]", "[io][image]") {
  auto to_m = [](double v) { return float(v) / 255.0f * 2.0f - 1.0f; };
  SECTION("a 6 × 4 image: centre crop 4 × 4 (columns 1…4), area 4 → 2") {
    Rgb8Image img{6, 4, std::vector<std::uint8_t>(6 * 4 * 3)};
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 6; ++x)
        for (int c = 0; c < 3; ++c) img.rgb[std::size_t((y * 6 + x) * 3 + c)] = std::uint8_t(10 * x + y + 60 * c);
    std::vector<float> out(3 * 2 * 2);
    to_model_input(img, ImageFit{2, 0, -1.0f}, TensorView<float, 3>(out.data(), {3, 2, 2}));
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 2; ++y)
        for (int x = 0; x < 2; ++x) {
          double m = 0;
          for (int dy = 0; dy < 2; ++dy)
            for (int dx = 0; dx < 2; ++dx) m += 10 * (1 + 2 * x + dx) + (2 * y + dy) + 60 * c;
          REQUIRE(out[std::size_t((c * 2 + y) * 2 + x)] == Approx(to_m(m / 4)).margin(1e-6));
        }
  }
  SECTION("fractional area 3 → 2 and bilinear 2 → 4") {
    Rgb8Image img{3, 3, std::vector<std::uint8_t>(27)};
    for (int i = 0; i < 9; ++i)
      for (int c = 0; c < 3; ++c) img.rgb[std::size_t(i * 3 + c)] = std::uint8_t(i % 3 == 0 ? 0 : i % 3 == 1 ? 90 : 180);
    std::vector<float> out(12);
    to_model_input(img, ImageFit{2, 0, -1.0f}, TensorView<float, 3>(out.data(), {3, 2, 2}));
    REQUIRE(out[0] == Approx(to_m((0 * 1.0 + 90 * 0.5) / 1.5)).margin(1e-6));   // columns 0 and half of 1
    REQUIRE(out[1] == Approx(to_m((90 * 0.5 + 180 * 1.0) / 1.5)).margin(1e-6));
    Rgb8Image two{2, 1, {0, 0, 0, 200, 200, 200}};  // crop 1 × 1 (the centre column 0): constant
    std::vector<float> big(3 * 4 * 4);
    to_model_input(two, ImageFit{4, 0, -1.0f}, TensorView<float, 3>(big.data(), {3, 4, 4}));
    for (float v : big) REQUIRE(v == to_m(0));
    Rgb8Image g{2, 2, {0, 0, 0, 100, 100, 100, 0, 0, 0, 100, 100, 100}};
    std::vector<float> up(3 * 4 * 4);
    to_model_input(g, ImageFit{4, 0, -1.0f}, TensorView<float, 3>(up.data(), {3, 4, 4}));
    // Columns at source x = −0.25 (clamped 0), 0.25, 0.75, 1.25 (clamped 1): 0, 25, 75, 100.
    const double want[4] = {0, 25, 75, 100};
    for (int x = 0; x < 4; ++x) REQUIRE(up[std::size_t(x)] == Approx(to_m(want[x])).margin(1e-6));
  }
  SECTION("inner 28 in 32 with pad −1 (the default model's frame)") {
    Rgb8Image img{28, 28, std::vector<std::uint8_t>(28 * 28 * 3, 255)};
    std::vector<float> out(3 * 32 * 32);
    to_model_input(img, ImageFit{32, 28, -1.0f}, TensorView<float, 3>(out.data(), {3, 32, 32}));
    for (int y = 0; y < 32; ++y)
      for (int x = 0; x < 32; ++x) {
        const bool inside = y >= 2 && y < 30 && x >= 2 && x < 30;
        REQUIRE(out[std::size_t(y * 32 + x)] == (inside ? 1.0f : -1.0f));
      }
    REQUIRE_THROWS_AS(to_model_input(img, ImageFit{32, 33, -1.0f}, TensorView<float, 3>(out.data(), {3, 32, 32})), Error);
  }
}
