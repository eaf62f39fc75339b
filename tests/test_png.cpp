// PNG output (io/png.hpp): bytes survive a write/read round trip through libpng (single image,
// grid, numbered files); failures throw mvar::Error naming the path and leave no file behind.
#include <catch2/catch.hpp>

#include <png.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "mvar/core/error.hpp"
#include "mvar/io/png.hpp"

namespace fs = std::filesystem;

namespace {

struct Image {
  int width = 0, height = 0;
  std::vector<std::uint8_t> rgb;
};

Image read_png(const std::string& path) {
  png_image img{};
  img.version = PNG_IMAGE_VERSION;
  REQUIRE(png_image_begin_read_from_file(&img, path.c_str()) != 0);
  img.format = PNG_FORMAT_RGB;
  Image out{int(img.width), int(img.height), std::vector<std::uint8_t>(PNG_IMAGE_SIZE(img))};
  REQUIRE(png_image_finish_read(&img, nullptr, out.rgb.data(), 0, nullptr) != 0);
  return out;
}

std::vector<std::uint8_t> random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::uint8_t> v(n);
  for (auto& b : v) b = std::uint8_t(rng());
  return v;
}

// A fresh empty directory under the system temp dir, removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() : path(fs::temp_directory_path() / ("mvar_png_test_" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::vector<std::string> entries() const {
    std::vector<std::string> v;
    for (const auto& e : fs::directory_iterator(path)) v.push_back(e.path().filename().string());
    return v;
  }
};

}  // namespace

TEST_CASE("write_png round-trips RGB8 bytes", "[io][png]") {
  TempDir dir;
  const int w = 37, h = 11;  // odd sizes: no row padding assumptions
  const auto rgb = random_bytes(std::size_t(w * h * 3), 1);
  const std::string path = (dir.path / "one.png").string();
  mvar::write_png(path, rgb, w, h);
  const auto back = read_png(path);
  REQUIRE(back.width == w);
  REQUIRE(back.height == h);
  REQUIRE(back.rgb == rgb);
  REQUIRE(dir.entries() == std::vector<std::string>{"one.png"});  // no temporary left over
}

TEST_CASE("write_png_batch: grid layout and numbered files", "[io][png]") {
  TempDir dir;
  const int w = 5, h = 4, n = 3;
  const auto imgs = random_bytes(std::size_t(n * w * h * 3), 2);
  const std::string grid_path = (dir.path / "grid.png").string();
  REQUIRE(mvar::write_png_batch(grid_path, imgs, n, w, h, mvar::PngBatch::Grid) == std::vector<std::string>{grid_path});
  const auto g = read_png(grid_path);
  // 3 images → 2 columns × 2 rows, 2-pixel black gaps.
  REQUIRE(g.width == 2 * w + 2);
  REQUIRE(g.height == 2 * h + 2);
  for (int i = 0; i < n; ++i)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int c = 0; c < 3; ++c) {
          const int gx = (i % 2) * (w + 2) + x, gy = (i / 2) * (h + 2) + y;
          REQUIRE(g.rgb[std::size_t((gy * g.width + gx) * 3 + c)] == imgs[std::size_t(((i * h + y) * w + x) * 3 + c)]);
        }
  REQUIRE(g.rgb[std::size_t((0 * g.width + w) * 3)] == 0);  // a gap pixel

  const auto files = mvar::write_png_batch((dir.path / "img.png").string(), imgs, n, w, h, mvar::PngBatch::Numbered);
  REQUIRE(files.size() == 3);
  REQUIRE(files[2] == (dir.path / "img_002.png").string());
  for (int i = 0; i < n; ++i) {
    const auto b = read_png(files[std::size_t(i)]);
    REQUIRE(b.rgb == std::vector<std::uint8_t>(imgs.begin() + i * w * h * 3, imgs.begin() + (i + 1) * w * h * 3));
  }
}

TEST_CASE("write_png failures name the path and leave nothing behind", "[io][png]") {
  TempDir dir;
  const auto rgb = random_bytes(4 * 4 * 3, 3);
  // A directory that does not exist: the temporary file cannot even be created.
  const std::string missing = (dir.path / "no_such_dir" / "x.png").string();
  REQUIRE_THROWS_WITH(mvar::write_png(missing, rgb, 4, 4), Catch::Contains(missing));
  // The target is an existing non-empty directory: the complete temporary file cannot be renamed
  // over it, and must be removed again.
  fs::create_directories(dir.path / "taken" / "inside");
  const std::string taken = (dir.path / "taken").string();
  REQUIRE_THROWS_AS(mvar::write_png(taken, rgb, 4, 4), mvar::Error);
  REQUIRE(dir.entries() == std::vector<std::string>{"taken"});
  // Wrong byte count.
  REQUIRE_THROWS_WITH(mvar::write_png((dir.path / "y.png").string(), rgb, 5, 4), Catch::Contains("y.png"));
  REQUIRE(dir.entries() == std::vector<std::string>{"taken"});
}

TEST_CASE("write_png_batch numbered: all images or none (F9)", "[io][png][reliability]") {
  TempDir dir;
  const int w = 4, h = 3, n = 3;
  const auto imgs = random_bytes(std::size_t(n * w * h * 3), 4);
  const std::string path = (dir.path / "x.png").string();
  SECTION("a directory in the way of image 1: nothing is written, the temporaries are removed") {
    fs::create_directories(dir.path / "x_001.png");
    try {
      mvar::write_png_batch(path, imgs, n, w, h, mvar::PngBatch::Numbered);
      FAIL("the batch was written");
    } catch (const mvar::Error& e) {
      REQUIRE_THAT(e.what(), Catch::Contains("x_001.png") && Catch::Contains("nothing was written") &&
                                 Catch::Contains("3 images"));
    }
    REQUIRE(dir.entries() == std::vector<std::string>{"x_001.png"});
    REQUIRE(fs::is_empty(dir.path / "x_001.png"));
  }
  SECTION("a failed batch leaves the files of an earlier batch untouched") {
    const auto old = random_bytes(std::size_t(w * h * 3), 5);
    mvar::write_png((dir.path / "x_000.png").string(), old, w, h);
    fs::create_directories(dir.path / "x_002.png");
    REQUIRE_THROWS_WITH(mvar::write_png_batch(path, imgs, n, w, h, mvar::PngBatch::Numbered),
                        Catch::Contains("x_002.png") && Catch::Contains("nothing was written"));
    auto entries = dir.entries();
    std::sort(entries.begin(), entries.end());
    REQUIRE(entries == std::vector<std::string>{"x_000.png", "x_002.png"});
    REQUIRE(read_png((dir.path / "x_000.png").string()).rgb == old);
  }
  SECTION("an unwritable folder: the first image fails, nothing is left") {
    const std::string missing = (dir.path / "no_dir" / "x.png").string();
    REQUIRE_THROWS_WITH(mvar::write_png_batch(missing, imgs, n, w, h, mvar::PngBatch::Numbered),
                        Catch::Contains("no_dir/x_000.png") && Catch::Contains("nothing was written"));
    REQUIRE(dir.entries().empty());
  }
  SECTION("control: the whole batch is written, and nothing else") {
    const auto files = mvar::write_png_batch(path, imgs, n, w, h, mvar::PngBatch::Numbered);
    REQUIRE(files.size() == 3);
    auto entries = dir.entries();
    std::sort(entries.begin(), entries.end());
    REQUIRE(entries == std::vector<std::string>{"x_000.png", "x_001.png", "x_002.png"});
  }
}

TEST_CASE("write_png_batch grid: absurd column counts are refused, not overflowed", "[io][png][reliability]") {
  TempDir dir;
  const auto imgs = random_bytes(std::size_t(2 * 4 * 3 * 3), 6);
  const std::string path = (dir.path / "g.png").string();
  REQUIRE_THROWS_WITH(mvar::write_png_batch(path, imgs, 2, 4, 3, mvar::PngBatch::Grid, 2147483647),
                      Catch::Contains("g.png") && Catch::Contains("more than a PNG can hold"));
  REQUIRE_THROWS_WITH(mvar::write_png_batch(path, imgs, 2, 4, 3, mvar::PngBatch::Grid, 100000000, 1000),
                      Catch::Contains("g.png") && Catch::Contains("more than a PNG can hold"));
  REQUIRE(dir.entries().empty());
}
