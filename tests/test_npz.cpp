// tests/test_npz.cpp — io/npz.hpp: the streaming .npz writer (stored zip of .npy members, zip64,
// atomic commit, resume of the first member) and the strict reader. numpy reading the files is
// tested by tests/evaluation/numpy_reads.py (CTest: npz_numpy_reads).
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "mvar/io/npz.hpp"

namespace fs = std::filesystem;
using namespace mvar;

namespace {

std::string scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / concat("mvar_test_npz_", ::getpid());
  fs::create_directories(dir);
  return (dir / name).string();
}

std::vector<std::byte> file_bytes(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<char> v((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(v.size());
  std::memcpy(out.data(), v.data(), v.size());
  return out;
}

void write_bytes(const std::string& p, std::span<const std::byte> b) {
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
  std::vector<std::byte> v(n);
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& b : v) x = x * 1664525u + 1013904223u, b = std::byte(x >> 24);
  return v;
}

// Writes an archive of two arrays and a raw member; `chunk` splits the data writes.
void write_sample(const std::string& path, bool zip64, std::size_t chunk) {
  NpzWriter w(path, path + ".tmp", NpzWriter::Options{zip64, true});
  const auto a = pattern(5 * 4 * 4 * 3, 1);
  w.begin_array("arr_0", NpyHeader{"|u1", {5, 4, 4, 3}});
  for (std::size_t off = 0; off < a.size(); off += chunk) w.write(std::span(a).subspan(off, std::min(chunk, a.size() - off)));
  w.end_array();
  w.add_array("arr_1", NpyHeader{"<i8", {5}}, pattern(40, 2));
  const std::string text = "{\"k\": 1}";
  w.add_file("settings.json", std::as_bytes(std::span(text.data(), text.size())));
  w.commit();
}

}  // namespace

TEST_CASE("npz: written arrays read back exactly, with and without zip64", "[io][npz]") {
  const bool zip64 = GENERATE(false, true);
  CAPTURE(zip64);
  const std::string p = scratch(zip64 ? "z64.npz" : "plain.npz");
  write_sample(p, zip64, 7);
  REQUIRE_FALSE(fs::exists(p + ".tmp"));
  const NpzReader r(p);
  const NpyArray a0 = r.array("arr_0");
  CHECK(a0.header.descr == "|u1");
  CHECK(a0.header.shape == std::vector<std::uint64_t>{5, 4, 4, 3});
  const auto want0 = pattern(240, 1);
  REQUIRE(a0.data.size() == want0.size());
  CHECK(std::memcmp(a0.data.data(), want0.data(), want0.size()) == 0);
  const NpyArray a1 = r.array("arr_1");
  CHECK(a1.header.descr == "<i8");
  CHECK(a1.header.shape == std::vector<std::uint64_t>{5});
  CHECK(std::memcmp(a1.data.data(), pattern(40, 2).data(), 40) == 0);
  const auto s = r.file("settings.json");
  CHECK(std::string(reinterpret_cast<const char*>(s.data()), s.size()) == "{\"k\": 1}");
  for (const auto& e : r.zip().entries()) r.verify_crc(e.name);  // zlib CRC == the table CRC of zip.hpp
  for (const auto& e : r.zip().entries()) r.zip().verify_crc(e);
  // zip64: the end record defers to the zip64 record (0xffff entries), sizes sit in extra fields.
  const auto bytes = file_bytes(p);
  const std::byte z64_sig[] = {std::byte{0x50}, std::byte{0x4b}, std::byte{6}, std::byte{6}};
  const bool has_z64_end = std::search(bytes.begin(), bytes.end(), std::begin(z64_sig), std::end(z64_sig)) != bytes.end();
  CHECK(has_z64_end == zip64);
}

TEST_CASE("npz: the bytes depend only on the content, not on how the data was chunked", "[io][npz]") {
  write_sample(scratch("c1.npz"), false, 1);
  write_sample(scratch("c2.npz"), false, 1000);
  CHECK(file_bytes(scratch("c1.npz")) == file_bytes(scratch("c2.npz")));
}

TEST_CASE("npz: .npy headers are numpy's 1.0 form, data 64-byte aligned", "[io][npz]") {
  const std::string h = detail::npy_header_bytes(NpyHeader{"|u1", {2, 3}});
  CHECK(h.size() % 64 == 0);
  CHECK(h.substr(0, 8) == std::string("\x93NUMPY\x01\x00", 8));
  CHECK(h.substr(10).find("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }") == 0);
  CHECK(h.back() == '\n');
  CHECK(detail::npy_header_bytes(NpyHeader{"<i8", {7}}).find("'shape': (7,), }") != std::string::npos);
  CHECK(detail::npy_header_bytes(NpyHeader{"<f4", {}}).find("'shape': (), }") != std::string::npos);
}

TEST_CASE("npz: nothing exists under the target name before commit; abort removes the temporary", "[io][npz]") {
  const std::string p = scratch("abort.npz");
  std::remove(p.c_str());
  {
    NpzWriter w(p, p + ".tmp");
    w.begin_array("arr_0", NpyHeader{"|u1", {10}});
    w.write(pattern(4, 3));
    CHECK(fs::exists(p + ".tmp"));
    CHECK_FALSE(fs::exists(p));
  }
  CHECK_FALSE(fs::exists(p + ".tmp"));
  CHECK_FALSE(fs::exists(p));
  NpzWriter w(p, p + ".tmp");
  w.begin_array("arr_0", NpyHeader{"|u1", {10}});
  w.write(pattern(4, 3));
  CHECK_THROWS_WITH(w.write(pattern(7, 3)), Catch::Contains("declared 10 data bytes, got more"));
  CHECK_THROWS_WITH(w.end_array(), Catch::Contains("declared 10 data bytes, got 4"));
  CHECK_THROWS_WITH(w.commit(), Catch::Contains("unfinished"));
}

TEST_CASE("npz: a stopped first member resumes to the same bytes; a foreign temporary is refused", "[io][npz]") {
  const std::string one = scratch("resume_one.npz"), two = scratch("resume_two.npz");
  const auto data = pattern(3000, 9);
  const NpyHeader h{"|u1", {3000}};
  {
    NpzWriter w(one, one + ".tmp");
    w.add_array("arr_0", h, data);
    w.commit();
  }
  {
    NpzWriter w(two, two + ".partial", NpzWriter::Options{false, false});
    w.begin_array("arr_0", h);
    w.write(std::span(data).first(1700));
    w.sync();
  }  // kept (remove_on_abort false)
  {
    // Garbage after the finished part (a torn write) is truncated away.
    std::ofstream app(two + ".partial", std::ios::binary | std::ios::app);
    app << "torn";
  }
  {
    NpzWriter w = NpzWriter::resume(two, two + ".partial", "arr_0.npy", h, NpzWriter::Progress{1700});
    w.write(std::span(data).subspan(1700));
    w.end_array();
    w.commit();
  }
  CHECK(file_bytes(one) == file_bytes(two));

  {
    NpzWriter w(two, two + ".partial", NpzWriter::Options{false, false});
    w.begin_array("arr_0", h);
    w.write(std::span(data).first(100));
  }
  CHECK_THROWS_WITH(NpzWriter::resume(two, two + ".partial", "arr_0.npy", NpyHeader{"|u1", {2999}}, NpzWriter::Progress{100}),
                    Catch::Contains("does not begin with the member 'arr_0.npy'"));
  CHECK_THROWS_WITH(NpzWriter::resume(two, two + ".partial", "arr_0.npy", h, NpzWriter::Progress{200}),
                    Catch::Contains("fewer than the"));
}

TEST_CASE("npz reader refuses malformed .npy members, each with its own message", "[io][npz][reliability]") {
  struct Case {
    const char* what;
    std::string npy;
    const char* message;
  };
  auto header = [](const std::string& dict, int major = 1) {
    std::string h = "\x93NUMPY";
    h.push_back(char(major));
    h.push_back('\0');
    const std::string d = dict + "\n";
    h.push_back(char(d.size() & 0xff));
    h.push_back(char(d.size() >> 8));
    return h + d;
  };
  const std::vector<Case> cases = {
      {"no magic", "NUMPY....", "no \\x93NUMPY magic"},
      {"version 3", header("{'descr': '|u1', 'fortran_order': False, 'shape': (1,), }", 3) + "x", "version 3.0"},
      {"fortran", header("{'descr': '|u1', 'fortran_order': True, 'shape': (1,), }") + "x", "Fortran-order"},
      {"object dtype", header("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }") + "x", "'|O' is not supported"},
      {"big endian", header("{'descr': '>i8', 'fortran_order': False, 'shape': (1,), }") + "12345678", "'>i8' is not supported"},
      {"short data", header("{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }") + "12345678", "need 16 data bytes, the member holds 8"},
      {"overflow", header("{'descr': '<i8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }"), "more than 2^64"},
      {"huge dim", header("{'descr': '|u1', 'fortran_order': False, 'shape': (99999999999999999999999,), }"), "dimension overflows"},
      {"extra key", header("{'descr': '|u1', 'fortran_order': False, 'shape': (1,), 'x': 1, }") + "x", "unexpected or repeated key 'x'"},
      {"repeated key", header("{'descr': '|u1', 'descr': '|u1', 'fortran_order': False, 'shape': (1,), }") + "x", "repeated key 'descr'"},
      {"missing shape", header("{'descr': '|u1', 'fortran_order': False, }") + "x", "lacks descr, fortran_order or shape"},
      {"header past end", std::string("\x93NUMPY\x01\x00\xff\x7f", 10) + "{", "runs past the member"},
      {"no newline", std::string("\x93NUMPY\x01\x00\x02\x00", 10) + "{}", "does not end with a newline"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    const std::string p = scratch("bad.npz");
    NpzWriter w(p, p + ".tmp");
    w.add_file("arr_0.npy", std::as_bytes(std::span(c.npy.data(), c.npy.size())));
    w.commit();
    const NpzReader r(p);
    CHECK_THROWS_WITH(r.array("arr_0"), Catch::Contains(c.message) && Catch::Contains("bad.npz: member 'arr_0.npy'"));
  }
  const std::string p = scratch("absent.npz");
  write_sample(p, false, 64);
  CHECK_THROWS_WITH(NpzReader(p).array("arr_9"), Catch::Contains("no member 'arr_9.npy'"));
}

TEST_CASE("npz reader: truncation and corruption are refused", "[io][npz][reliability]") {
  const std::string p = scratch("corrupt.npz");
  write_sample(p, false, 64);
  auto bytes = file_bytes(p);
  // Truncated anywhere: no end record, or a central directory that no longer fits.
  for (std::size_t cut : {bytes.size() - 1, bytes.size() / 2, std::size_t(10)}) {
    CAPTURE(cut);
    write_bytes(scratch("cut.npz"), std::span(bytes).first(cut));
    CHECK_THROWS_AS(NpzReader(scratch("cut.npz")), Error);
  }
  // A flipped image byte: CRC-32 mismatch.
  bytes[200] ^= std::byte{1};
  write_bytes(scratch("flip.npz"), bytes);
  const NpzReader r(scratch("flip.npz"));
  CHECK_THROWS_WITH(r.verify_crc("arr_0.npy"), Catch::Contains("member 'arr_0.npy' is corrupt"));
}

TEST_CASE("npz: a temporary being written is locked against a second writer", "[io][npz][reliability]") {
  const std::string p = scratch("locked.npz");
  NpzWriter first(p, p + ".partial", NpzWriter::Options{false, false});
  first.begin_array("arr_0", NpyHeader{"|u1", {4}});
  first.write(pattern(2, 1));
  CHECK_THROWS_WITH(NpzWriter::resume(p, p + ".partial", "arr_0.npy", NpyHeader{"|u1", {4}}, NpzWriter::Progress{2}),
                    Catch::Contains("another process is writing this file"));
  CHECK_THROWS_WITH(NpzWriter(p, p + ".partial"), Catch::Contains("another process is writing this file"));
  first.write(pattern(2, 1));  // untouched by the refused writers
  first.end_array();
  first.commit();
  CHECK(NpzReader(p).array("arr_0").data.size() == 4);
}
