// PNG output (io/png.hpp): bytes survive a write/read round trip through libpng (single image,
// grid, numbered files); failures throw mvar::Error naming the path and leave no file behind.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <png.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
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

// ---- Output onto nodes that are not regular files (issue #23 item 2) -----------------------------
// Every node is created by the test inside its own temporary folder — never the system's /dev/null.

namespace {

mode_t mode_of(const std::string& p) {
  struct stat st {};
  REQUIRE(::lstat(p.c_str(), &st) == 0);
  return st.st_mode;
}

std::vector<char> file_bytes(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

}  // namespace

TEST_CASE("write_png onto a FIFO writes through it and leaves the FIFO in place", "[io][png][reliability][device]") {
  TempDir dir;
  const auto rgb = random_bytes(5 * 4 * 3, 11);
  const std::string ref = (dir.path / "ref.png").string();
  mvar::write_png(ref, rgb, 5, 4);
  const std::vector<char> want = file_bytes(ref);
  REQUIRE(want.size() < 4096);  // fits a pipe buffer: the test reads after the write returns

  const std::string fifo = (dir.path / "out.fifo").string();
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  SECTION("with a reader: the PNG's bytes arrive, the node stays a FIFO, no temporary is left") {
    const int rd = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
    REQUIRE(rd >= 0);
    mvar::write_png(fifo, rgb, 5, 4);
    std::vector<char> got(want.size() + 16);
    const ssize_t n = ::read(rd, got.data(), got.size());
    ::close(rd);
    REQUIRE(n == ssize_t(want.size()));
    got.resize(std::size_t(n));
    REQUIRE(got == want);
    REQUIRE(S_ISFIFO(mode_of(fifo)));  // the old code renamed a regular file over it
    auto e = dir.entries();
    std::sort(e.begin(), e.end());
    REQUIRE(e == std::vector<std::string>{"out.fifo", "ref.png"});
  }
  SECTION("without a reader: refused at once (no hang), the FIFO stays, nothing is left") {
    REQUIRE_THROWS_WITH(mvar::write_png(fifo, rgb, 5, 4), fifo + ": is a FIFO that no process reads; nothing was written");
    REQUIRE(S_ISFIFO(mode_of(fifo)));
    REQUIRE(dir.entries().size() == 2);
  }
  SECTION("a numbered batch never goes to a FIFO: refused before anything is written") {
    const std::string base = (dir.path / "b.png").string();
    REQUIRE(::mkfifo(mvar::numbered_png_path(base, 1).c_str(), 0600) == 0);
    REQUIRE_THROWS_WITH(mvar::write_png_batch(base, std::vector<std::uint8_t>(rgb.size() * 2), 2, 5, 4, mvar::PngBatch::Numbered),
                        Catch::Contains("b_001.png: is a FIFO; the files of a batch are written all or nothing") &&
                            Catch::Contains("nothing was written (none of the 2 images)"));
    REQUIRE(dir.entries().size() == 3);  // ref.png, out.fifo, b_001.png: no b_000.png, no temporary
  }
}

TEST_CASE("write_png onto a character device (and a symlink to one) writes through, the node stays",
          "[io][png][reliability][device]") {
  TempDir dir;
  const std::string node = (dir.path / "null").string();
  // A private copy of the null device (major 1, minor 3). Needs CAP_MKNOD and a folder not mounted
  // nodev; where either is missing the case says so and checks nothing else.
  if (::mknod(node.c_str(), S_IFCHR | 0600, makedev(1, 3)) != 0) {
    WARN("mknod of a character device not permitted here (" << std::strerror(errno) << "): case not run");
    return;
  }
  if (const int fd = ::open(node.c_str(), O_WRONLY); fd < 0) {
    WARN("the temporary folder does not allow device nodes (" << std::strerror(errno) << "): case not run");
    return;
  } else {
    ::close(fd);
  }
  const auto rgb = random_bytes(6 * 3 * 3, 12);
  mvar::write_png(node, rgb, 6, 3);
  REQUIRE(S_ISCHR(mode_of(node)));  // the old code renamed the PNG over the device node
  const std::string link = (dir.path / "link.png").string();
  fs::create_symlink(node, link);
  mvar::write_png(link, rgb, 6, 3);
  REQUIRE(S_ISLNK(mode_of(link)));
  REQUIRE(S_ISCHR(mode_of(node)));
  REQUIRE(dir.entries().size() == 2);  // no temporaries
}

TEST_CASE("write_png refuses block devices, sockets and an empty path", "[io][png][reliability][device]") {
  TempDir dir;
  const auto rgb = random_bytes(2 * 2 * 3, 13);
  const std::string blk = (dir.path / "blk").string();
  if (::mknod(blk.c_str(), S_IFBLK | 0600, makedev(7, 200)) == 0) {  // a loop-device number; never opened
    REQUIRE_THROWS_WITH(mvar::write_png(blk, rgb, 2, 2), blk + ": is a block device; refusing to write onto it "
                                                               "(regular files, character devices such as /dev/null and FIFOs are written)");
    REQUIRE(S_ISBLK(mode_of(blk)));
  } else {
    WARN("mknod of a block device not permitted here (" << std::strerror(errno) << "): block case not run");
  }
  const std::string sock = (dir.path / "s").string();
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  REQUIRE(sock.size() < sizeof addr.sun_path);
  std::strcpy(addr.sun_path, sock.c_str());
  REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE_THROWS_WITH(mvar::write_png(sock, rgb, 2, 2), Catch::StartsWith(sock + ": is a socket; refusing to write onto it"));
  REQUIRE(S_ISSOCK(mode_of(sock)));
  ::close(fd);
  REQUIRE_THROWS_WITH(mvar::write_png("", rgb, 2, 2), "output path is empty");
  REQUIRE(std::find_if(fs::directory_iterator("."), fs::directory_iterator{}, [](const auto& e) {
            return e.path().filename().string().starts_with(".tmp.");
          }) == fs::directory_iterator{});
}
