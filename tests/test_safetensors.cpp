// safetensors reader/writer: round trip, dtype conversions, the fixture files, and one
// hand-made malformed file per validation rule (each checks the error message).
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fixtures_path.hpp"
#include "mvar/io/safetensors.hpp"

namespace {

// A safetensors image from a raw JSON header and a data buffer of `data_bytes` bytes.
std::vector<std::byte> make_file(const std::string& header, std::size_t data_bytes, std::uint64_t declared_len = UINT64_MAX) {
  const std::uint64_t n = declared_len == UINT64_MAX ? header.size() : declared_len;
  std::vector<std::byte> f(8 + header.size() + data_bytes, std::byte{0});
  for (int i = 0; i < 8; ++i) f[i] = std::byte((n >> (8 * i)) & 0xff);
  std::memcpy(f.data() + 8, header.data(), header.size());
  return f;
}

std::string error_of(const std::vector<std::byte>& f) {
  try {
    mvar::parse_safetensors_bytes(f, "bad.safetensors");
  } catch (const mvar::Error& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace

TEST_CASE("safetensors: write then read back every dtype", "[io][safetensors]") {
  std::vector<float> f32 = {1.5f, -2.f, 3.25f, 0.f, 1e-3f, 7.f};
  std::vector<std::uint16_t> bf16 = {mvar::float_to_bf16(1.5f), mvar::float_to_bf16(-2.f)};
  std::vector<std::uint16_t> f16 = {0x3c00 /*1*/, 0xc000 /*-2*/, 0x0001 /*2^-24*/, 0x7bff /*65504*/};
  std::vector<std::int64_t> i64 = {-5, 1ll << 40};
  std::vector<std::int32_t> i32 = {7, -9};
  const std::string path = (std::filesystem::temp_directory_path() / "mvar_roundtrip.safetensors").string();
  mvar::save_safetensors(path,
                         {mvar::tensor_to_write<float>("a.weight", mvar::DType::F32, {2, 3}, f32),
                          mvar::tensor_to_write<std::uint16_t>("b", mvar::DType::BF16, {2}, bf16),
                          mvar::tensor_to_write<std::uint16_t>("c", mvar::DType::F16, {4}, f16),
                          mvar::tensor_to_write<std::int64_t>("d", mvar::DType::I64, {2}, i64),
                          mvar::tensor_to_write<std::int32_t>("e", mvar::DType::I32, {1, 2}, i32)},
                         {{"model", "test"}});
  auto st = mvar::load_safetensors(path);
  REQUIRE(st.size() == 5);
  REQUIRE(st.metadata().at("model") == "test");
  REQUIRE(st.at("a.weight").shape == std::vector<std::int64_t>{2, 3});
  REQUIRE(st.at("a.weight").to_float() == f32);
  REQUIRE(st.at("b").to_float() == std::vector<float>{1.5f, -2.f});
  REQUIRE(st.at("c").to_float() == std::vector<float>{1.f, -2.f, 5.9604645e-08f, 65504.f});
  REQUIRE(st.at("d").to_int() == i64);
  REQUIRE(st.at("e").to_int() == std::vector<std::int64_t>{7, -9});
  REQUIRE(st.find("missing") == nullptr);
  REQUIRE_THROWS_WITH(st.at("missing"), Catch::Contains("no tensor named 'missing'"));
  std::filesystem::remove(path);
}

TEST_CASE("safetensors: the fixture files open and validate", "[io][safetensors][fixtures]") {
  for (const std::string& f : {std::string("tiny.transformer.safetensors"), std::string("tiny.vae.safetensors"),
                               std::string("units.safetensors"), mvar::test::fixture_run("var").trace_file,
                               mvar::test::fixture_run("var").greedy_file, mvar::test::fixture_run("mvar").trace_file,
                               mvar::test::fixture_run("mvar").greedy_file}) {
    CAPTURE(f);
    auto st = mvar::test::load_fixture(f);
    REQUIRE(st.size() > 0);
  }
  auto w = mvar::test::load_fixture("tiny.transformer.safetensors");
  REQUIRE(w.at("blocks.0.attn.mat_qkv.weight").shape == std::vector<std::int64_t>{384, 128});
  REQUIRE(w.at("lvl_1L").dtype == mvar::DType::I64);
}

TEST_CASE("safetensors: every malformed header is rejected with a message naming the problem",
          "[io][safetensors][malformed]") {
  const std::string ok_entry = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  SECTION("valid control") { REQUIRE(error_of(make_file("{" + ok_entry + "}", 8)) == "<no error>"); }
  SECTION("too short for the length prefix") {
    std::vector<std::byte> f(5);
    REQUIRE_THAT(error_of(f), Catch::Contains("too short"));
  }
  SECTION("header length beyond the file") {
    REQUIRE_THAT(error_of(make_file("{" + ok_entry + "}", 8, 1u << 30)), Catch::Contains("exceeds"));
  }
  SECTION("header length near 2^64 (overflow)") {
    REQUIRE_THAT(error_of(make_file("{" + ok_entry + "}", 8, UINT64_MAX - 3)), Catch::Contains("exceeds"));
  }
  SECTION("not JSON") { REQUIRE_THAT(error_of(make_file("{not json", 8)), Catch::Contains("not valid JSON")); }
  SECTION("JSON but not an object") { REQUIRE_THAT(error_of(make_file("[1,2,3]", 0)), Catch::Contains("not a JSON object")); }
  SECTION("duplicate tensor name") {
    REQUIRE_THAT(error_of(make_file("{" + ok_entry + "," + ok_entry + "}", 8)), Catch::Contains("'t' appears twice"));
  }
  SECTION("unknown dtype") {
    REQUIRE_THAT(error_of(make_file(R"({"t":{"dtype":"F8","shape":[2],"data_offsets":[0,2]}})", 2)),
                 Catch::Contains("unsupported dtype 'F8'"));
  }
  SECTION("missing shape") {
    REQUIRE_THAT(error_of(make_file(R"({"t":{"dtype":"F32","data_offsets":[0,8]}})", 8)), Catch::Contains("'shape'"));
  }
  SECTION("negative extent") {
    REQUIRE_THAT(error_of(make_file(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8)),
                 Catch::Contains("negative"));
  }
  SECTION("shape that overflows") {
    REQUIRE_THAT(error_of(make_file(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8)),
                 Catch::Contains("overflows"));
  }
  SECTION("offsets out of range") {
    REQUIRE_THAT(error_of(make_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4)),
                 Catch::Contains("run past the data buffer"));
  }
  SECTION("begin after end") {
    REQUIRE_THAT(error_of(make_file(R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8)),
                 Catch::Contains("begin after end"));
  }
  SECTION("negative offsets") {
    REQUIRE_THAT(error_of(make_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", 8)),
                 Catch::Contains("two non-negative integers"));
  }
  SECTION("span does not match shape × dtype") {
    REQUIRE_THAT(error_of(make_file(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8)),
                 Catch::Contains("spans 8 bytes, but its shape (3,) × F32 needs 12"));
  }
  SECTION("overlapping tensors") {
    REQUIRE_THAT(error_of(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                    R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12)),
                 Catch::Contains("overlap"));
  }
  SECTION("metadata must be string pairs") {
    REQUIRE_THAT(error_of(make_file(R"({"__metadata__":{"x":1}})", 0)), Catch::Contains("not a string"));
  }
  SECTION("a missing file names the path") {
    REQUIRE_THROWS_WITH(mvar::load_safetensors("/nonexistent/w.safetensors"),
                        Catch::Contains("/nonexistent/w.safetensors") && Catch::Contains("cannot open"));
  }
  SECTION("a truncated real file") {
    auto good = mvar::test::load_fixture("units.safetensors");  // just to be sure it exists
    std::ifstream in(mvar::test::fixture_path("units.safetensors"), std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
    std::vector<std::byte> cut(bytes.size() / 2);
    std::memcpy(cut.data(), bytes.data(), cut.size());
    REQUIRE_THAT(error_of(cut), Catch::Contains("run past the data buffer"));
  }
}
