// Reliability: every bad input a user can hand mvar gets an mvar::Error with a message that says
// what was wrong, and leaves no partial output behind. One TEST_CASE per row family of the table
// in docs/reliability.md (keep the two in sync). Files are built in the test, written to a fresh
// temporary directory, and opened through the public path-based API, as a user would.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mvar/core/error.hpp"
#include "mvar/core/memory_limit.hpp"
#include "mvar/core/parallel.hpp"
#include "mvar/io/atomic_write.hpp"
#include "mvar/io/checkpoint.hpp"
#include "mvar/io/safetensors.hpp"
#include "mvar/model/quantizer.hpp"
#include "mvar/model/transformer.hpp"
#include "mvar/sampling/sampler.hpp"

#include "fixtures_path.hpp"
#include "random_weights.hpp"

namespace fs = std::filesystem;

namespace {

// A fresh, empty directory per test case, removed afterwards.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("mvar_reliability_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(counter()++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  static int& counter() {
    static int n = 0;
    return n;
  }
  /// Names of everything in the directory (to prove that nothing partial was left behind).
  std::vector<std::string> listing() const {
    std::vector<std::string> out;
    for (auto& e : fs::directory_iterator(path)) out.push_back(e.path().filename().string());
    return out;
  }
};

// u64 little-endian length, `header`, then `data_bytes` bytes of `fill`.
std::vector<std::byte> safetensors_image(const std::string& header, std::size_t data_bytes,
                                         std::uint64_t declared_len = UINT64_MAX, std::byte fill = std::byte{0}) {
  const std::uint64_t n = declared_len == UINT64_MAX ? header.size() : declared_len;
  std::vector<std::byte> f(8 + header.size() + data_bytes, fill);
  for (int i = 0; i < 8; ++i) f[i] = std::byte((n >> (8 * i)) & 0xff);
  std::memcpy(f.data() + 8, header.data(), header.size());
  return f;
}

void write_file(const fs::path& p, const std::vector<std::byte>& bytes) {
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  REQUIRE(out.good());
}

// The message load_safetensors throws for this file, or "<no error>".
std::string load_error(const fs::path& p) {
  try {
    auto st = mvar::load_safetensors(p.string());
    (void)st;
  } catch (const mvar::Error& e) {
    return e.what();
  }
  return "<no error>";
}

std::string load_error(const TempDir& dir, const std::vector<std::byte>& bytes) {
  const fs::path p = dir.path / "w.safetensors";
  write_file(p, bytes);
  return load_error(p);
}

const std::string kOkEntry = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

}  // namespace

// ---- Checkpoint files (safetensors) ------------------------------------------------------------

TEST_CASE("reliability: truncated and oversized safetensors headers are refused", "[reliability][safetensors]") {
  TempDir dir;
  SECTION("control: a well-formed file loads") { REQUIRE(load_error(dir, safetensors_image("{" + kOkEntry + "}", 8)) == "<no error>"); }
  SECTION("empty file") {
    const auto msg = load_error(dir, {});
    REQUIRE_THAT(msg, Catch::Contains("w.safetensors") && Catch::Contains("0 bytes, too short"));
  }
  SECTION("file cut inside the length prefix") {
    auto f = safetensors_image("{" + kOkEntry + "}", 8);
    f.resize(5);
    REQUIRE_THAT(load_error(dir, f), Catch::Contains("5 bytes, too short for the 8-byte header length"));
  }
  SECTION("file cut inside the JSON header") {
    auto f = safetensors_image("{" + kOkEntry + "}", 8);
    f.resize(8 + 10);
    REQUIRE_THAT(load_error(dir, f), Catch::Contains("exceeds the 10 bytes after it"));
  }
  SECTION("file cut inside the data buffer") {
    auto f = safetensors_image("{" + kOkEntry + "}", 8);
    f.resize(f.size() - 3);
    REQUIRE_THAT(load_error(dir, f), Catch::Contains("tensor 't'") && Catch::Contains("run past the data buffer of 5 bytes"));
  }
  SECTION("declared header length larger than the file (1 GiB)") {
    REQUIRE_THAT(load_error(dir, safetensors_image("{" + kOkEntry + "}", 8, 1ull << 30)),
                 Catch::Contains("header length 1073741824 exceeds the 100 MB limit"));
  }
  SECTION("declared header length 2^64 - 1 (wrap-around)") {
    REQUIRE_THAT(load_error(dir, safetensors_image("{" + kOkEntry + "}", 8, UINT64_MAX - 1)),
                 Catch::Contains("header length 18446744073709551614 exceeds the 100 MB limit"));
  }
  SECTION("header length above the 100 MB cap is refused from the length field alone (F10)") {
    REQUIRE_THAT(load_error(dir, safetensors_image("{" + kOkEntry + "}", 8, 100000001)),
                 Catch::Contains("w.safetensors") && Catch::Contains("header length 100000001 exceeds the 100 MB limit"));
    // Exactly 100 MB is within the cap: refused here only because the file is shorter.
    REQUIRE_THAT(load_error(dir, safetensors_image("{" + kOkEntry + "}", 8, 100000000)),
                 Catch::Contains("header length 100000000 exceeds the ") && Catch::Contains(" bytes after it"));
  }
  SECTION("a file that really holds a header above 100 MB is refused by the cap, not parsed (F10)") {
    // Sparse: 8 length bytes + '{', then a hole up to 100 MB + 16 bytes; nothing is written to disk.
    auto f = safetensors_image("{", 0, 100000008);
    const fs::path p = dir.path / "w.safetensors";
    write_file(p, f);
    fs::resize_file(p, 8 + 100000008);
    REQUIRE_THAT(load_error(p), Catch::Contains("header length 100000008 exceeds the 100 MB limit"));
  }
  SECTION("header length too short to hold a JSON object") {
    REQUIRE_THAT(load_error(dir, safetensors_image("{}", 0, 1)), Catch::Contains("too short for a JSON object"));
  }
  SECTION("JSON cut short inside the declared header") {
    REQUIRE_THAT(load_error(dir, safetensors_image(R"({"t":{"dtype":"F32","sha)", 0)), Catch::Contains("not valid JSON"));
  }
  SECTION("a directory instead of a file") {
    REQUIRE_THAT(load_error(dir.path), Catch::Contains("not a regular file"));
  }
  SECTION("a path that does not exist") {
    REQUIRE_THAT(load_error(dir.path / "missing.safetensors"), Catch::Contains("missing.safetensors: cannot open"));
  }
}

TEST_CASE("reliability: out-of-range and overlapping safetensors offsets are refused", "[reliability][safetensors]") {
  TempDir dir;
  SECTION("end past the data buffer") {
    REQUIRE_THAT(load_error(dir, safetensors_image(R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8)),
                 Catch::Contains("data_offsets [0, 16) run past the data buffer of 8 bytes"));
  }
  SECTION("offsets near 2^64") {
    REQUIRE_THAT(load_error(dir, safetensors_image(
                                     R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[18446744073709551608,18446744073709551615]}})", 8)),
                 Catch::Contains("run past the data buffer"));
  }
  SECTION("begin after end") {
    REQUIRE_THAT(load_error(dir, safetensors_image(R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", 8)),
                 Catch::Contains("data_offsets [8, 4) has begin after end"));
  }
  SECTION("negative or fractional offsets") {
    REQUIRE_THAT(load_error(dir, safetensors_image(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", 8)),
                 Catch::Contains("two non-negative integers"));
    REQUIRE_THAT(load_error(dir, safetensors_image(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0.5,8]}})", 8)),
                 Catch::Contains("two non-negative integers"));
    REQUIRE_THAT(load_error(dir, safetensors_image(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8)),
                 Catch::Contains("two non-negative integers"));
  }
  SECTION("two tensors sharing bytes") {
    REQUIRE_THAT(load_error(dir, safetensors_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                                   R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12)),
                 Catch::Contains("tensors 'a' and 'b' overlap"));
  }
  SECTION("one tensor nested inside another") {
    REQUIRE_THAT(load_error(dir, safetensors_image(R"({"a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]},)"
                                                   R"("b":{"dtype":"U8","shape":[2],"data_offsets":[6,8]}})", 16)),
                 Catch::Contains("overlap"));
  }
  SECTION("control: adjacent tensors and empty tensors at any offset are fine") {
    REQUIRE(load_error(dir, safetensors_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                              R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},)"
                                              R"("z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})", 16)) == "<no error>");
  }
}

TEST_CASE("reliability: wrong dtypes and shapes in a safetensors header are refused", "[reliability][safetensors]") {
  TempDir dir;
  SECTION("unknown dtype") {
    REQUIRE_THAT(load_error(dir, safetensors_image(R"({"t":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", 2)),
                 Catch::Contains("tensor 't': unsupported dtype 'F8_E4M3'"));
  }
  SECTION("dtype not a string") {
    REQUIRE_THAT(load_error(dir, safetensors_image(R"({"t":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", 8)),
                 Catch::Contains("missing or non-string 'dtype'"));
  }
  SECTION("byte span disagrees with shape × dtype") {
    REQUIRE_THAT(load_error(dir, safetensors_image(R"({"t":{"dtype":"F16","shape":[3],"data_offsets":[0,8]}})", 8)),
                 Catch::Contains("spans 8 bytes, but its shape (3,) × F16 needs 6"));
  }
  SECTION("negative extent") {
    REQUIRE_THAT(load_error(dir, safetensors_image(R"({"t":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,8]}})", 8)),
                 Catch::Contains("negative or non-integer extent"));
  }
  SECTION("extent above 2^63 (would be negative as int64)") {
    REQUIRE_THAT(load_error(dir, safetensors_image(R"({"t":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,8]}})", 8)),
                 Catch::Contains("negative or non-integer extent"));
  }
  SECTION("shape whose element count overflows 64 bits") {
    REQUIRE_THAT(load_error(dir, safetensors_image(R"({"t":{"dtype":"F32","shape":[65536,65536,65536,65536],"data_offsets":[0,8]}})", 8)),
                 Catch::Contains("shape overflows"));
  }
  SECTION("a zero extent does not excuse huge other extents (F2)") {
    REQUIRE_THAT(load_error(dir, safetensors_image(R"({"t":{"dtype":"F32","shape":[0,4611686018427387904,4611686018427387904],"data_offsets":[0,0]}})", 0)),
                 Catch::Contains("tensor 't'") && Catch::Contains("extent 4611686018427387904 exceeds the limit of 2^40"));
    // Each extent within 2^40, but their product (the stride of the zero axis) overflows.
    REQUIRE_THAT(load_error(dir, safetensors_image(R"({"t":{"dtype":"F32","shape":[0,1099511627776,1099511627776],"data_offsets":[0,0]}})", 0)),
                 Catch::Contains("tensor 't'") && Catch::Contains("shape overflows"));
    REQUIRE_THAT(load_error(dir, safetensors_image(R"({"t":{"dtype":"U8","shape":[1099511627777,0],"data_offsets":[0,0]}})", 0)),
                 Catch::Contains("extent 1099511627777 exceeds the limit of 2^40"));
  }
  SECTION("control: empty tensors with ordinary extents still load (F2)") {
    REQUIRE(load_error(dir, safetensors_image(R"({"a":{"dtype":"F32","shape":[0,3,5],"data_offsets":[0,0]},)"
                                              R"("b":{"dtype":"I64","shape":[4096,0],"data_offsets":[0,0]},)"
                                              R"("c":{"dtype":"U8","shape":[0,1099511627776],"data_offsets":[0,0]}})", 0)) == "<no error>");
  }
  SECTION("shape not an array") {
    REQUIRE_THAT(load_error(dir, safetensors_image(R"({"t":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", 8)),
                 Catch::Contains("missing or non-array 'shape'"));
  }
  SECTION("duplicate tensor name") {
    REQUIRE_THAT(load_error(dir, safetensors_image("{" + kOkEntry + "," + kOkEntry + "}", 8)),
                 Catch::Contains("'t' appears twice"));
  }
}

TEST_CASE("reliability: NaN and Inf in weights load unchanged (the reader does not inspect values)",
          "[reliability][safetensors][nonfinite]") {
  // Documented behaviour (docs/reliability.md): the safetensors reader validates structure, not
  // values; non-finite weights are passed through bit-exactly. This test pins that down so a
  // change of policy is a deliberate one.
  TempDir dir;
  const float vals[4] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                         -std::numeric_limits<float>::infinity(), 1.0f};
  const std::string path = (dir.path / "nonfinite.safetensors").string();
  mvar::save_safetensors(path, {mvar::tensor_to_write<float>("w", mvar::DType::F32, {4}, std::span<const float>(vals))});
  auto st = mvar::load_safetensors(path);
  const auto got = st.at("w").to_float();
  REQUIRE(std::isnan(got[0]));
  REQUIRE(got[1] == std::numeric_limits<float>::infinity());
  REQUIRE(got[2] == -std::numeric_limits<float>::infinity());
  REQUIRE(got[3] == 1.0f);
}

TEST_CASE("reliability: to_int() refuses float tensors instead of converting NaN/Inf/huge values (F1)",
          "[reliability][safetensors][nonfinite]") {
  TempDir dir;
  const float f32[3] = {std::numeric_limits<float>::quiet_NaN(), 2.76733e+35f, 1.0f};
  const std::uint16_t f16[2] = {0x7c00, 0x3c00};   // +Inf, 1.0
  const std::uint16_t bf16[2] = {0x7fc0, 0x3f80};  // NaN, 1.0
  const std::int32_t i32[2] = {-7, 9};
  const std::int64_t i64[1] = {std::int64_t(1) << 40};
  const std::uint8_t u8[2] = {0, 255};
  const std::string path = (dir.path / "mixed.safetensors").string();
  mvar::save_safetensors(path, {mvar::tensor_to_write<float>("w", mvar::DType::F32, {3}, std::span<const float>(f32)),
                                mvar::tensor_to_write<std::uint16_t>("h", mvar::DType::F16, {2}, std::span<const std::uint16_t>(f16)),
                                mvar::tensor_to_write<std::uint16_t>("b", mvar::DType::BF16, {2}, std::span<const std::uint16_t>(bf16)),
                                mvar::tensor_to_write<std::int32_t>("labels", mvar::DType::I32, {2}, std::span<const std::int32_t>(i32)),
                                mvar::tensor_to_write<std::int64_t>("lvl", mvar::DType::I64, {1}, std::span<const std::int64_t>(i64)),
                                mvar::tensor_to_write<std::uint8_t>("img", mvar::DType::U8, {2}, std::span<const std::uint8_t>(u8))});
  const auto st = mvar::load_safetensors(path);
  REQUIRE_THROWS_AS(st.at("w").to_int(), mvar::Error);
  REQUIRE_THROWS_WITH(st.at("w").to_int(), Catch::Contains("tensor 'w'") && Catch::Contains("dtype F32") &&
                                                Catch::Contains("I32, I64, U8"));
  REQUIRE_THROWS_WITH(st.at("h").to_int(), Catch::Contains("tensor 'h'") && Catch::Contains("dtype F16"));
  REQUIRE_THROWS_WITH(st.at("b").to_int(), Catch::Contains("tensor 'b'") && Catch::Contains("dtype BF16"));
  // Integer tensors convert exactly; float tensors are still read with to_float().
  REQUIRE(st.at("labels").to_int() == std::vector<std::int64_t>{-7, 9});
  REQUIRE(st.at("lvl").to_int() == std::vector<std::int64_t>{std::int64_t(1) << 40});
  REQUIRE(st.at("img").to_int() == std::vector<std::int64_t>{0, 255});
  REQUIRE(st.at("w").to_float()[2] == 1.0f);
  // The element-wise primitive refuses too (no undefined float → int64 conversion anywhere).
  REQUIRE_THROWS_WITH(mvar::load_as_int(st.at("w").data, mvar::DType::F32, 0), Catch::Contains("F32"));
}

TEST_CASE("reliability: a missing tensor is named in the error", "[reliability][safetensors]") {
  TempDir dir;
  write_file(dir.path / "w.safetensors", safetensors_image("{" + kOkEntry + "}", 8));
  auto st = mvar::load_safetensors((dir.path / "w.safetensors").string());
  REQUIRE_THROWS_WITH(st.at("blocks.0.attn.mat_qkv.weight"),
                      Catch::Contains("w.safetensors") && Catch::Contains("no tensor named 'blocks.0.attn.mat_qkv.weight'"));
}

// ---- Options ------------------------------------------------------------------------------------

TEST_CASE("reliability: thread count 0 or negative is refused", "[reliability][options]") {
  REQUIRE_THROWS_AS(mvar::ThreadPool(0), mvar::Error);
  REQUIRE_THROWS_WITH(mvar::ThreadPool(0), Catch::Contains("thread count must be ≥ 1, got 0"));
  REQUIRE_THROWS_WITH(mvar::ThreadPool(-3), Catch::Contains("got -3"));
  mvar::ThreadPool ok(1);
  REQUIRE(ok.threads() == 1);
}

// ---- Output files -------------------------------------------------------------------------------

TEST_CASE("reliability: an unwritable output path is an error and leaves nothing behind", "[reliability][output]") {
  TempDir dir;
  auto write_abc = [](std::FILE* f) { return std::fwrite("abc", 1, 3, f) == 3; };
  SECTION("directory does not exist") {
    const std::string p = (dir.path / "no_such_dir" / "out.png").string();
    REQUIRE_THROWS_WITH(mvar::atomic_write(p, write_abc), Catch::Contains(p) && Catch::Contains("cannot write"));
    REQUIRE(dir.listing().empty());
  }
  SECTION("parent is a regular file") {
    write_file(dir.path / "file", {std::byte{1}});
    const std::string p = (dir.path / "file" / "out.png").string();
    REQUIRE_THROWS_WITH(mvar::atomic_write(p, write_abc), Catch::Contains("cannot write") && Catch::Contains("Not a directory"));
    REQUIRE(dir.listing() == std::vector<std::string>{"file"});
  }
  SECTION("target is an existing directory: the rename fails, the temporary is removed") {
    fs::create_directories(dir.path / "out.png");
    const std::string p = (dir.path / "out.png").string();
    REQUIRE_THROWS_WITH(mvar::atomic_write(p, write_abc), Catch::Contains("cannot rename temporary file into place"));
    REQUIRE(dir.listing() == std::vector<std::string>{"out.png"});
    REQUIRE(fs::is_directory(dir.path / "out.png"));
  }
  SECTION("a writer that fails leaves neither a temporary nor a partial target") {
    const std::string p = (dir.path / "out.bin").string();
    REQUIRE_THROWS_WITH(mvar::atomic_write(p, [](std::FILE* f) { std::fputs("partial", f); return false; }),
                        Catch::Contains("out.bin: write failed"));
    REQUIRE(dir.listing().empty());
  }
  SECTION("a writer that throws leaves an existing target untouched") {
    const std::string p = (dir.path / "out.bin").string();
    mvar::atomic_write(p, write_abc);
    REQUIRE_THROWS_WITH(mvar::atomic_write(p, [](std::FILE* f) -> bool {
                          std::fputs("partial", f);
                          throw mvar::Error("encoder failed");
                        }),
                        "encoder failed");
    REQUIRE(dir.listing() == std::vector<std::string>{"out.bin"});
    std::ifstream in(p, std::ios::binary);
    std::string content((std::istreambuf_iterator<char>(in)), {});
    REQUIRE(content == "abc");
  }
  SECTION("safetensors output to an unwritable path") {
    const std::string p = (dir.path / "no_such_dir" / "w.safetensors").string();
    const float v[2] = {1.f, 2.f};
    REQUIRE_THROWS_WITH(
        mvar::save_safetensors(p, {mvar::tensor_to_write<float>("t", mvar::DType::F32, {2}, std::span<const float>(v))}),
        Catch::Contains("w.safetensors: cannot write"));
    REQUIRE(dir.listing().empty());
  }
}

// ---- Memory limits ------------------------------------------------------------------------------

TEST_CASE("reliability: check_allocation refuses sizes beyond the machine before allocating", "[reliability][memory]") {
  const auto lim = mvar::memory_limits();
  SECTION("physical memory is read from sysconf") {
    REQUIRE(lim.physical == std::uint64_t(::sysconf(_SC_PHYS_PAGES)) * std::uint64_t(::sysconf(_SC_PAGE_SIZE)));
    REQUIRE(lim.physical > 0);
  }
  SECTION("a small request passes") { REQUIRE_NOTHROW(mvar::check_allocation(1 << 20, "a 1 MiB buffer")); }
  SECTION("more than physical memory is refused with the size and what it was for") {
    const std::uint64_t too_much = lim.physical + 1;
    REQUIRE_THROWS_WITH(mvar::check_allocation(too_much, "tensor 'head.weight'"),
                        Catch::Contains("tensor 'head.weight' needs " + std::to_string(too_much) + " bytes") &&
                            Catch::Contains("refusing before allocating"));
  }
  SECTION("2^64 - 1 bytes is refused") {
    REQUIRE_THROWS_WITH(mvar::check_allocation(SIZE_MAX, "x"), Catch::Contains("18446744073709551615 bytes (16.0 EiB)"));
  }
  SECTION("each bound is applied and named") {
    const std::uint64_t gib = 1ull << 30;
    REQUIRE_NOTHROW(mvar::detail::check_allocation_against(gib, "w", {.physical = 4 * gib}));
    REQUIRE_THROWS_WITH(mvar::detail::check_allocation_against(8 * gib, "w", {.physical = 4 * gib}),
                        Catch::Contains("w needs 8589934592 bytes (8.0 GiB)") && Catch::Contains("physical memory of 4294967296 bytes (4.0 GiB)"));
    REQUIRE_THROWS_WITH(mvar::detail::check_allocation_against(2 * gib, "w", {.physical = 4 * gib, .address_space = gib}),
                        Catch::Contains("address-space limit (RLIMIT_AS)"));
    REQUIRE_THROWS_WITH(mvar::detail::check_allocation_against(2 * gib, "w", {.physical = 4 * gib, .cgroup = gib}),
                        Catch::Contains("cgroup memory limit"));
    REQUIRE_NOTHROW(mvar::detail::check_allocation_against(UINT64_MAX, "w", {}));  // no bounds known
  }
  SECTION("RLIMIT_AS is read when set (checked in a child process, which then exits)") {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      // Lowering the soft limit is always allowed; the child only reads it back (no allocation).
      struct rlimit rl {};
      ::getrlimit(RLIMIT_AS, &rl);
      const rlim_t want = rlim_t(1) << 46;  // 64 TiB: above what sanitizers reserve, below "unlimited"
      rl.rlim_cur = (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) ? rl.rlim_max : want;
      if (::setrlimit(RLIMIT_AS, &rl) != 0) ::_exit(2);
      const auto l = mvar::memory_limits();
      ::_exit(l.address_space == std::uint64_t(rl.rlim_cur) ? 0 : 1);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
  }
  SECTION("checked_bytes multiplies without wrapping") {
    REQUIRE(mvar::checked_bytes({2, 3, 4}, 4, "x") == 96);
    REQUIRE(mvar::checked_bytes({0, UINT64_MAX}, 4, "x") == 0);
    REQUIRE_THROWS_WITH(mvar::checked_bytes({1ull << 32, 1ull << 32}, 4, "activations"),
                        Catch::Contains("activations: size overflows"));
  }
}

TEST_CASE("reliability: Buffer refuses sizes that overflow or exceed the machine before allocating (F7)",
          "[reliability][memory]") {
  const auto lim = mvar::memory_limits();
  const std::size_t too_many = std::size_t(lim.physical / sizeof(float)) + (std::size_t(1) << 20);
  REQUIRE_THROWS_WITH(mvar::Buffer<float>(too_many),
                      Catch::Contains("buffer of " + std::to_string(too_many) + " × 4 bytes") &&
                          Catch::Contains("refusing before allocating"));
  REQUIRE_THROWS_WITH(mvar::Buffer<float>(SIZE_MAX / 2), Catch::Contains("size overflows"));
  REQUIRE_THROWS_WITH(mvar::Workspace(SIZE_MAX - 8), Catch::Contains("overflows"));
  mvar::Buffer<float> ok(std::size_t(16) << 20);  // 64 MiB: checked and granted
  REQUIRE(ok.size() == std::size_t(16) << 20);
}

// ---- Model weights and conditioning -------------------------------------------------------------

namespace {

using TinyModel = mvar::Transformer<mvar::presets::tiny>;

// A copy of `st` with `edit` applied to each TensorRef (return false to drop it) and `extra`
// appended. The new store shares `st`'s memory, kept alive by `keep`.
template <class Edit>
mvar::TensorStore edited_store(const mvar::TensorStore& st, Edit edit, std::vector<mvar::TensorRef> extra = {}) {
  std::vector<mvar::TensorRef> refs;
  for (auto t : st.tensors())
    if (edit(t)) refs.push_back(std::move(t));
  for (auto& t : extra) refs.push_back(std::move(t));
  auto keep = std::make_shared<mvar::TensorStore>(st);
  return mvar::TensorStore("edited.safetensors", std::move(refs), keep);
}

std::string bind_error(const mvar::TensorStore& st) {
  try {
    TinyModel m(st);
  } catch (const mvar::Error& e) {
    return e.what();
  }
  return "<no error>";
}

const mvar::TensorStore& tiny_random() {
  static const mvar::TensorStore st = mvar::test::random_transformer(mvar::presets::tiny, 7);
  return st;
}

}  // namespace

TEST_CASE("reliability: checkpoints that do not match the model are refused at load", "[reliability][model]") {
  const auto& st = tiny_random();
  SECTION("control: the complete random checkpoint binds") { REQUIRE(bind_error(st) == "<no error>"); }
  SECTION("missing tensor") {
    const auto bad = edited_store(st, [](const mvar::TensorRef& t) { return t.name != "blocks.1.attn.proj.weight"; });
    REQUIRE_THAT(bind_error(bad), Catch::Contains("edited.safetensors") && Catch::Contains("1 problem(s)") &&
                                      Catch::Contains("missing 'blocks.1.attn.proj.weight' (expected shape (128, 128))"));
  }
  SECTION("extra tensor") {
    mvar::TensorRef extra = *st.find("head.bias");
    extra.name = "head.bias_extra";
    const auto bad = edited_store(st, [](const mvar::TensorRef&) { return true; }, {extra});
    REQUIRE_THAT(bind_error(bad), Catch::Contains("unexpected tensor 'head.bias_extra' (4096,)"));
  }
  SECTION("wrong shape") {
    const auto bad = edited_store(st, [](mvar::TensorRef& t) {
      if (t.name == "blocks.0.ffn.fc1.weight") t.shape = {128, 512};  // transposed
      return true;
    });
    REQUIRE_THAT(bind_error(bad), Catch::Contains("'blocks.0.ffn.fc1.weight' has shape (128, 512), expected (512, 128)"));
  }
  SECTION("wrong dtype (integers where floats are expected)") {
    const auto bad = edited_store(st, [](mvar::TensorRef& t) {
      if (t.name == "head.bias") {  // same byte count: 4096 × I32
        t.dtype = mvar::DType::I32;
      }
      return true;
    });
    REQUIRE_THAT(bind_error(bad), Catch::Contains("'head.bias' has dtype I32, expected a float type"));
  }
  SECTION("a checkpoint of another size names what it holds") {
    try {
      mvar::Transformer<mvar::presets::d16> m(st);
      FAIL("a d16 model bound the tiny checkpoint");
    } catch (const mvar::Error& e) {
      REQUIRE_THAT(e.what(), Catch::Contains("depth-2, width-128, 2-head model with 1000 classes"));
    }
  }
}

TEST_CASE("reliability: class labels outside [0, num_classes] are refused", "[reliability][model][options]") {
  TinyModel m(tiny_random());
  mvar::ThreadPool pool(1);
  for (int label : {-1, 1001, 1 << 30}) {
    CAPTURE(label);
    mvar::Workspace ws(TinyModel::conditioning_bytes(2));
    const int labels[2] = {3, label};
    REQUIRE_THROWS_WITH(m.condition(pool, labels, ws),
                        Catch::Contains("class label " + std::to_string(label) + " is out of range [0, 1000]"));
  }
  mvar::Workspace ws(TinyModel::conditioning_bytes(1));
  const int ok[1] = {1000};  // the null class (CFG) is a valid label
  REQUIRE_NOTHROW(m.condition(pool, ok, ws));
}

// ---- The fuzz seed corpora say what they are ----------------------------------------------------

TEST_CASE("reliability: fuzz seeds named valid_* load and seeds named bad_* are refused with an mvar::Error",
          "[reliability][fuzz]") {
  for (const char* kind : {"safetensors", "pth"}) {
    const fs::path dir = fs::path(MVAR_SOURCE_DIR) / "tests" / "fuzz" / "corpus" / kind;
    std::vector<fs::path> files;
    for (auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    REQUIRE(files.size() >= 20);
    int valid = 0, bad = 0;
    for (const auto& f : files) {
      const std::string name = f.filename().string();
      CAPTURE(name);
      std::string msg = "<no error>";
      try {
        auto st = mvar::load_checkpoint(f.string());
        if (name.starts_with("valid_") && name != "valid_empty_object.safetensors") CHECK(st.size() > 0);
      } catch (const mvar::Error& e) {
        msg = e.what();
      }
      CAPTURE(msg);
      if (name.starts_with("valid_")) {
        CHECK(msg == "<no error>");
        ++valid;
      } else {
        REQUIRE(name.starts_with("bad_"));
        CHECK(msg != "<no error>");
        CHECK_THAT(msg, Catch::Contains(name));  // every message names the file
        ++bad;
      }
    }
    CHECK(valid >= 5);
    CHECK(bad >= 15);
  }
}

// ---- Sampling options and determinism -------------------------------------------------------------

namespace {

struct TinyFixtureModel {
  mvar::TensorStore w = mvar::test::load_fixture("tiny.transformer.safetensors");
  mvar::TensorStore vae = mvar::test::load_fixture("tiny.vae.safetensors");
  TinyModel model{w};
  mvar::VectorQuantizer quant{vae, mvar::test::fixture_run("mvar").patch_nums(), mvar::test::fixture_run("mvar").desc.vae};
};

TinyFixtureModel& fixture_model() {
  static TinyFixtureModel m;
  return m;
}

template <class Trajectory>
mvar::Generation generate_with(int threads, std::vector<int> labels, const mvar::SampleOptions& o) {
  auto& m = fixture_model();
  mvar::ThreadPool pool(threads);
  Trajectory traj(TinyModel::config);
  return mvar::sample(pool, m.model, m.quant, traj, labels, o);
}

bool same_bits(const mvar::Generation& a, const mvar::Generation& b) {
  return a.tokens == b.tokens && a.fhat.bytes() == b.fhat.bytes() &&
         std::memcmp(a.fhat.data(), b.fhat.data(), a.fhat.bytes()) == 0;
}

std::string sample_error(std::vector<int> labels, const mvar::SampleOptions& o, int max_batch = 4) {
  auto& m = fixture_model();
  mvar::ThreadPool pool(1);
  mvar::ScaleMarkov traj(TinyModel::config);
  try {
    mvar::Sampler<TinyModel, mvar::ScaleMarkov> s(m.model, m.quant, traj, pool, max_batch);
    s.generate(labels, o);
  } catch (const mvar::Error& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace

TEST_CASE("reliability: bad sampling options are refused before any work", "[reliability][options][sampler]") {
  mvar::SampleOptions ok;
  ok.top_k = 1;
  SECTION("negative, NaN and infinite cfg") {
    for (float cfg : {-1.0f, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
      auto o = ok;
      o.cfg = cfg;
      CAPTURE(cfg);
      REQUIRE_THAT(sample_error({1}, o), Catch::Contains("cfg must be a finite number ≥ 0"));
    }
  }
  SECTION("top_k < 0") {
    auto o = ok;
    o.top_k = -1;
    REQUIRE_THAT(sample_error({1}, o), Catch::Contains("top_k must be ≥ 0 (0 disables), got -1"));
  }
  SECTION("top_p outside (0, 1]") {
    for (float p : {0.0f, -0.5f, 1.0001f, std::numeric_limits<float>::quiet_NaN()}) {
      auto o = ok;
      o.top_p = p;
      CAPTURE(p);
      REQUIRE_THAT(sample_error({1}, o), Catch::Contains("top_p must be in (0, 1]"));
    }
  }
  SECTION("batch 0 and batch above the sampler's capacity") {
    REQUIRE_THAT(sample_error({}, ok), Catch::Contains("batch is empty"));
    REQUIRE_THAT(sample_error({1, 2, 3}, ok, 2), Catch::Contains("batch of 3 exceeds the sampler's max_batch 2"));
    REQUIRE_THAT(sample_error({1}, ok, 0), Catch::Contains("max_batch must be ≥ 1, got 0"));
  }
  SECTION("label out of range (the null class, label 1000, is a valid one: issue #19)") {
    REQUIRE_THAT(sample_error({1001}, ok), Catch::Contains("class label 1001 is out of range [0, 999] (1000 = the null class)"));
    REQUIRE_THAT(sample_error({5, -1}, ok), Catch::Contains("class label -1 is out of range"));
  }
  SECTION("control: edge values that are allowed") {
    auto o = ok;
    o.cfg = 0.0f;
    o.top_k = 0;
    o.top_p = 1.0f;
    REQUIRE(sample_error({0, 999}, o) == "<no error>");
  }
}

TEST_CASE("reliability: a batch whose memory exceeds the machine is refused before allocating (F7)",
          "[reliability][memory][sampler]") {
  auto& m = fixture_model();
  mvar::ThreadPool pool(1);
  SECTION("Sampler: the workspace for the batch is checked, and the message names the batch") {
    for (int batch : {1 << 24, std::numeric_limits<int>::max()}) {
      CAPTURE(batch);
      mvar::ScaleMarkov traj(TinyModel::config);
      try {
        mvar::Sampler<TinyModel, mvar::ScaleMarkov> s(m.model, m.quant, traj, pool, batch);
        FAIL("a sampler for batch " << batch << " was built");
      } catch (const mvar::Error& e) {
        REQUIRE_THAT(e.what(), Catch::Contains("sampler workspace for batch " + std::to_string(batch)) &&
                                   Catch::Contains("refusing before allocating"));
      }
    }
    using MvarSampler = mvar::Sampler<TinyModel, mvar::ScaleMarkov>;
    REQUIRE_THROWS_WITH(MvarSampler::check_memory(1 << 24),
                        Catch::Contains("sampler workspace for batch 16777216"));
  }
  SECTION("VAR: the K/V cache for the rows is checked") {
    mvar::FullPrefix traj(TinyModel::config);
    REQUIRE_THROWS_WITH(traj.reserve(1 << 28), Catch::Contains("VAR K/V cache for 268435456 rows") &&
                                                 Catch::Contains("refusing before allocating"));
    REQUIRE_NOTHROW(traj.reserve(2));  // and still usable afterwards
  }
  SECTION("control: ordinary batches are unaffected") {
    mvar::ScaleMarkov traj(TinyModel::config);
    using MvarSampler = mvar::Sampler<TinyModel, mvar::ScaleMarkov>;
    REQUIRE_NOTHROW(MvarSampler(m.model, m.quant, traj, pool, 8));
  }
}

namespace {

// The tiny fixture transformer with one tensor's values replaced (kept alive by the returned object).
struct EditedWeights {
  std::vector<float> values;
  mvar::TensorStore store;
};

template <class Fill>
std::unique_ptr<EditedWeights> fixture_with(const std::string& name, Fill fill) {
  auto out = std::make_unique<EditedWeights>();
  const auto& base = fixture_model().w;
  const mvar::TensorRef& t = base.at(name);
  out->values = t.to_float();
  fill(out->values);
  mvar::TensorRef edited = t;
  edited.data = reinterpret_cast<const std::byte*>(out->values.data());
  out->store = edited_store(base, [&](const mvar::TensorRef& r) { return r.name != name; }, {edited});
  return out;
}

template <class Trajectory>
std::string generate_error(const mvar::TensorStore& weights, const mvar::SampleOptions& o) {
  try {
    TinyModel model(weights);
    mvar::ThreadPool pool(2);
    Trajectory traj(TinyModel::config);
    const std::vector<int> labels = {3, 7};
    mvar::sample(pool, model, fixture_model().quant, traj, labels, o);
  } catch (const mvar::Error& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace

TEST_CASE("reliability: non-finite logits from NaN/Inf weights are refused, not drawn as token 0 (F5)",
          "[reliability][sampler][nonfinite]") {
  constexpr float kNaN = std::numeric_limits<float>::quiet_NaN(), kInf = std::numeric_limits<float>::infinity();
  mvar::SampleOptions o;  // cfg 1.5, top_k 900, top_p 0.96
  o.seed = 5;
  SECTION("every head weight NaN: all-NaN logits at scale 0") {
    const auto w = fixture_with("head.weight", [&](std::vector<float>& v) { std::fill(v.begin(), v.end(), kNaN); });
    for (const auto& msg : {generate_error<mvar::ScaleMarkov>(w->store, o), generate_error<mvar::FullPrefix>(w->store, o)})
      REQUIRE_THAT(msg, Catch::Contains("sample: non-finite logits at scale 0") && Catch::Contains("the weights contain NaN/Inf?"));
  }
  SECTION("one NaN head bias: one NaN logit per row, the rest finite") {
    const auto w = fixture_with("head.bias", [&](std::vector<float>& v) { v[5] = kNaN; });
    REQUIRE_THAT(generate_error<mvar::ScaleMarkov>(w->store, o), Catch::Contains("non-finite logits at scale 0"));
  }
  SECTION("+Inf head bias: the maximum is infinite") {
    const auto w = fixture_with("head.bias", [&](std::vector<float>& v) { v[0] = kInf; });
    REQUIRE_THAT(generate_error<mvar::ScaleMarkov>(w->store, o), Catch::Contains("non-finite logits at scale 0"));
    auto greedy = o;  // top_k 1, no CFG: the greedy path checks too
    greedy.top_k = 1;
    greedy.cfg = 0;
    REQUIRE_THAT(generate_error<mvar::ScaleMarkov>(w->store, greedy), Catch::Contains("non-finite logits at scale 0"));
  }
  SECTION("NaN in a tensor used only from scale 1 on (word_embed): the error names scale 1") {
    const auto w = fixture_with("word_embed.weight", [&](std::vector<float>& v) { std::fill(v.begin(), v.end(), kNaN); });
    REQUIRE_THAT(generate_error<mvar::ScaleMarkov>(w->store, o), Catch::Contains("non-finite logits at scale 1"));
  }
  SECTION("control: the unedited weights sample") {
    const auto w = fixture_with("head.bias", [](std::vector<float>&) {});
    REQUIRE(generate_error<mvar::ScaleMarkov>(w->store, o) == "<no error>");
  }
}

TEST_CASE("reliability: the same seed gives bit-identical tokens and f̂ across runs, thread counts and batches",
          "[reliability][determinism][sampler]") {
  mvar::SampleOptions o;  // cfg 1.5, top_k 900, top_p 0.96: the random path, not greedy
  o.seed = 1234;
  const std::vector<int> labels = {7, 207, 999};
  SECTION("MVAR: repeated runs on one Sampler (workspace reuse leaves no state behind)") {
    auto& m = fixture_model();
    mvar::ThreadPool pool(2);
    mvar::ScaleMarkov traj(TinyModel::config);
    mvar::Sampler<TinyModel, mvar::ScaleMarkov> s(m.model, m.quant, traj, pool, 4);
    const auto a = s.generate(labels, o);
    const std::vector<int> other_labels = {1, 2, 3, 4};
    const auto other = s.generate(other_labels, o);  // a different request in between
    const auto b = s.generate(labels, o);
    REQUIRE(same_bits(a, b));
    REQUIRE_FALSE(same_bits(a, other));
  }
  SECTION("MVAR and VAR: 1 thread == 2 threads") {
    REQUIRE(same_bits(generate_with<mvar::ScaleMarkov>(1, labels, o), generate_with<mvar::ScaleMarkov>(2, labels, o)));
    REQUIRE(same_bits(generate_with<mvar::FullPrefix>(1, labels, o), generate_with<mvar::FullPrefix>(2, labels, o)));
  }
  SECTION("VAR: image i of a batch == the same label alone with first_index = i") {
    const auto batch = generate_with<mvar::FullPrefix>(2, labels, o);
    auto alone_o = o;
    alone_o.first_index = 1;
    const auto alone = generate_with<mvar::FullPrefix>(1, {207}, alone_o);
    for (int s = 0; s < 10; ++s) {
      const auto n = std::size_t(mvar::presets::tiny.patch_nums.tokens(s));
      const auto& t = batch.tokens[std::size_t(s)];
      REQUIRE(std::vector<std::int32_t>(t.begin() + std::ptrdiff_t(n), t.begin() + std::ptrdiff_t(2 * n)) == alone.tokens[std::size_t(s)]);
    }
    REQUIRE(std::memcmp(alone.fhat.data(), batch.image_fhat(1).data(), alone.fhat.bytes()) == 0);
  }
  SECTION("a different seed gives different tokens (the seed is really used)") {
    auto o2 = o;
    o2.seed = 1235;
    REQUIRE_FALSE(same_bits(generate_with<mvar::ScaleMarkov>(1, labels, o), generate_with<mvar::ScaleMarkov>(1, labels, o2)));
  }
}

// ---- The generate command line (MVAR_GENERATE_EXE is set by tests/fuzz/CMakeLists.txt when the
// examples are built) -------------------------------------------------------------------------------

#ifdef MVAR_GENERATE_EXE
namespace {

struct CliResult {
  int code = -1;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// The tiny fixture model (1000 classes) unless the arguments name weights: the default model
// shipped in models/ may change.
std::string concat_cmd(const std::string& args, const fs::path& out, const fs::path& err) {
  const std::string weights = args.find("--transformer") != std::string::npos
                                  ? ""
                                  : " --transformer " + mvar::test::fixture_path("tiny.transformer.safetensors") +
                                        " --vae " + mvar::test::fixture_path("tiny.vae.safetensors") + " --mode mvar";
  return std::string(MVAR_GENERATE_EXE) + " --quiet" + weights + " " + args + " > '" + out.string() + "' 2> '" +
         err.string() + "'";
}

// Runs `generate --quiet <args>` (on the tiny fixture model by default); logs go to their own
// folder so that the test's output folder holds only what generate wrote.
CliResult run_generate(const std::string& args) {
  static TempDir logs;
  const fs::path o = logs.path / "stdout", e = logs.path / "stderr";
  const std::string cmd = concat_cmd(args, o, e);
  const int st = std::system(cmd.c_str());
  CliResult r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  r.out = slurp(o);
  r.err = slurp(e);
  return r;
}

}  // namespace

TEST_CASE("reliability: generate refuses bad options with exit code 2 and writes nothing", "[reliability][cli]") {
  TempDir out;
  const std::string png = (out.path / "x.png").string();
  struct Row {
    const char* args;
    const char* message;
  };
  const Row rows[] = {
      {"--batch 0", "--batch must be ≥ 1, got 0"},
      {"--threads 0", "--threads must be in [1, 1024], got 0"},
      {"--threads -2", "--threads must be in [1, 1024], got -2"},
      {"--class 1001", "class label 1001 is out of range [0, 999]"},
      {"--class -1", "class label -1 is out of range"},
      {"--cfg -0.5", "cfg must be a finite number ≥ 0"},
      {"--top-k -1", "top_k must be ≥ 0"},
      {"--top-p 0", "top_p must be in (0, 1]"},
      {"--top-p 1.5", "top_p must be in (0, 1]"},
      {"--mode xyz", "--mode must be 'auto', 'mvar' or 'var'"},
      {"--no-such-option", "unknown option '--no-such-option'"},
      {"--batch two", "option '--batch': 'two' is not an integer"},  // exit 1 before the F6 fix
      {"--seed 1x", "option '--seed': '1x' is not an integer"},
      {"--cfg abc", "option '--cfg': 'abc' is not a number"},
      {"--class 3,,4", "option '--class': an empty label in '3,,4'"},
      // Values beyond the option's type are refused, not truncated (--threads 4294967297 was 1).
      {"--threads 4294967297", "option '--threads': '4294967297' is out of range [-2147483648, 2147483647]"},
      {"--batch 4294967297", "option '--batch': '4294967297' is out of range"},
      {"--top-k 2147483648", "option '--top-k': '2147483648' is out of range"},
      {"--columns 99999999999999999999", "option '--columns': '99999999999999999999' is out of range"},
      {"--upscale 4294967298", "option '--upscale': '4294967298' is out of range"},
      {"--seed -1", "option '--seed': '-1' is out of range [0, 18446744073709551615]"},
      {"--seed 18446744073709551616", "option '--seed': '18446744073709551616' is out of range"},
      {"--class 3,4294967296", "class label 4294967296 is out of range"},
  };
  for (const auto& row : rows) {
    CAPTURE(row.args);
    const auto r = run_generate(std::string(row.args) + " --output " + png);
    CAPTURE(r.err);
    REQUIRE(r.code == 2);
    REQUIRE_THAT(r.err, Catch::Contains(row.message));
    REQUIRE(out.listing().empty());
  }
}

TEST_CASE("reliability: generate reports unreadable weights and unwritable outputs with exit code 1, leaving nothing",
          "[reliability][cli][output]") {
  TempDir out;
  SECTION("missing weight files") {
    const auto r = run_generate("--transformer " + (out.path / "none.pth").string() + " --vae " +
                                (out.path / "none2.pth").string() + " --output " + (out.path / "x.png").string());
    REQUIRE(r.code == 1);
    REQUIRE_THAT(r.err, Catch::Contains("none.pth: no such file"));
    REQUIRE(out.listing().empty());
  }
  SECTION("a corrupt weight file") {
    write_file(out.path / "bad.safetensors", safetensors_image("{" + kOkEntry, 8));
    const auto r = run_generate("--transformer " + (out.path / "bad.safetensors").string() + " --vae " +
                                (out.path / "bad.safetensors").string() + " --output " + (out.path / "x.png").string());
    REQUIRE(r.code == 1);
    REQUIRE_THAT(r.err, Catch::Contains("bad.safetensors") && Catch::Contains("not valid JSON"));
    REQUIRE(out.listing() == std::vector<std::string>{"bad.safetensors"});
  }
  SECTION("output folder does not exist") {
    const auto r = run_generate("--class 3 --output " + (out.path / "no_dir" / "x.png").string());
    REQUIRE(r.code == 1);
    REQUIRE_THAT(r.err, Catch::Contains("no_dir/x.png") && Catch::Contains("cannot write"));
    REQUIRE(out.listing().empty());
  }
  SECTION("--separate: a directory in the way of image 1 leaves no image of the batch behind (F9)") {
    fs::create_directories(out.path / "x_001.png");
    const auto r = run_generate("--class 1,2,3 --separate --output " + (out.path / "x.png").string());
    CAPTURE(r.err);
    REQUIRE(r.code == 1);
    REQUIRE_THAT(r.err, Catch::Contains("x_001.png") && Catch::Contains("nothing was written"));
    REQUIRE(out.listing() == std::vector<std::string>{"x_001.png"});
    REQUIRE(fs::is_empty(out.path / "x_001.png"));
  }
  SECTION("weights with NaN: non-finite logits are a runtime error (exit 1), nothing is written (F5)") {
    const auto w = fixture_with("head.bias", [](std::vector<float>& v) { v[5] = std::numeric_limits<float>::quiet_NaN(); });
    std::vector<mvar::TensorToWrite> tensors;
    for (const auto& t : w->store.tensors())
      tensors.push_back({t.name, t.dtype, t.shape, std::span<const std::byte>(t.data, t.nbytes)});
    const std::string weights = (out.path / "nan.safetensors").string();
    mvar::save_safetensors(weights, tensors);
    const auto r = run_generate("--transformer " + weights + " --vae " + mvar::test::fixture_path("tiny.vae.safetensors") +
                                " --mode mvar --class 3 --output " + (out.path / "x.png").string());
    CAPTURE(r.err);
    REQUIRE(r.code == 1);
    REQUIRE_THAT(r.err, Catch::Contains("non-finite logits at scale 0") && Catch::Contains("NaN/Inf"));
    REQUIRE(out.listing() == std::vector<std::string>{"nan.safetensors"});
  }
  SECTION("a batch too large for the machine is refused before anything is allocated (F7)") {
    const auto r = run_generate("--class 3 --batch 1000000000 --output " + (out.path / "x.png").string());
    CAPTURE(r.err);
    REQUIRE(r.code == 1);
    REQUIRE_THAT(r.err, Catch::Contains("batch 1000000000") && Catch::Contains("refusing before allocating"));
    REQUIRE(out.listing().empty());
  }
  SECTION("output path is a directory") {
    fs::create_directories(out.path / "x.png");
    const auto r = run_generate("--class 3 --output " + (out.path / "x.png").string());
    REQUIRE(r.code == 1);
    REQUIRE(out.listing() == std::vector<std::string>{"x.png"});
    REQUIRE(fs::is_empty(out.path / "x.png"));
  }
}

TEST_CASE("reliability: generate writes byte-identical PNGs for the same seed at 1 and 2 threads",
          "[reliability][cli][determinism]") {
  TempDir out;
  const auto a = out.path / "a.png", b = out.path / "b.png", c = out.path / "c.png";
  REQUIRE(run_generate("--class 3,7 --seed 11 --threads 1 --output " + a.string()).code == 0);
  REQUIRE(run_generate("--class 3,7 --seed 11 --threads 2 --output " + b.string()).code == 0);
  REQUIRE(run_generate("--class 3,7 --seed 12 --threads 2 --output " + c.string()).code == 0);
  const std::string pa = slurp(a), pb = slurp(b), pc = slurp(c);
  REQUIRE(pa.size() > 100);
  REQUIRE(pa.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0);
  REQUIRE(pa == pb);
  REQUIRE(pa != pc);
  REQUIRE(out.listing().size() == 3);  // no temporaries left behind
}
#endif  // MVAR_GENERATE_EXE
