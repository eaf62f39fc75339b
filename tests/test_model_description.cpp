// config.json reader (model/model_description.hpp): strict types and ranges, bounded arrays, one
// mvar::Error naming the file and the field, and the check against the weights (issue #23 item 1;
// docs/reliability.md "config.json" table).
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "fixtures_path.hpp"
#include "mvar/io/checkpoint.hpp"
#include "mvar/model/model_description.hpp"

using namespace mvar;
using nlohmann::json;

namespace {

const std::string kDefaultModel = std::string(MVAR_SOURCE_DIR) + "/models/fashion_mnist";

struct TempDir {
  std::filesystem::path dir;
  TempDir() {
    char tmpl[] = "/tmp/mvar_desc_XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(dir); }
  std::string write(const std::string& name, const std::string& text) const {
    const auto p = (dir / name).string();
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
};

json read_json(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

/// Loads `text` from a file and returns the error message ("" when it loads).
std::string error_of(const TempDir& t, const std::string& text) {
  const std::string p = t.write("config.json", text);
  try {
    (void)load_model_description(p);
  } catch (const Error& e) {
    const std::string msg = e.what();
    CHECK(msg.rfind("config.json: " + p + ": ", 0) == 0);  // names the file first
    return msg;
  }
  return "";
}

}  // namespace

TEST_CASE("config.json: valid descriptions load with every field read from the file", "[model_description]") {
  for (const std::string& path :
       {kDefaultModel + "/config.json", test::fixture_path("mvar_tiny.config.json"), test::fixture_path("var_tiny.config.json")}) {
    INFO(path);
    const json j = read_json(path);
    const ModelDescription m = load_model_description(path);
    CHECK(m.source == path);
    CHECK(m.arch.depth == j["depth"].get<int>());
    CHECK(m.arch.width == j["embed_dim"].get<int>());
    CHECK(m.arch.heads == j["num_heads"].get<int>());
    CHECK(m.arch.vocab == j["vocab_size"].get<int>());
    CHECK(m.arch.num_classes == j["num_classes"].get<int>());
    REQUIRE(m.arch.patch_nums.count == int(j["patch_nums"].size()));
    for (int s = 0; s < m.arch.patch_nums.count; ++s) CHECK(m.arch.patch_nums[s] == j["patch_nums"][std::size_t(s)].get<int>());
    CHECK(m.vae.ch == j["vae_ch"].get<int>());
    CHECK(m.vae.ch_mult == j["vae_ch_mult"].get<std::vector<int>>());
    if (j.contains("class_names")) CHECK(m.class_names == j["class_names"].get<std::vector<std::string>>());
    if (j.contains("recommended")) {
      CHECK(m.rec.cfg == j["recommended"]["cfg"].get<float>());
      CHECK(m.rec.top_k == j["recommended"]["top_k"].get<int>());
      CHECK(m.rec.top_p == j["recommended"]["top_p"].get<float>());
    }
    CHECK(m.arch.valid());
  }
}

TEST_CASE("config.json: every malformed field is one error naming the file and the field", "[model_description][reliability]") {
  const json base = read_json(kDefaultModel + "/config.json");
  TempDir t;
  REQUIRE(error_of(t, base.dump()).empty());

  json many = json::array();
  for (int i = 1; i <= 17; ++i) many.push_back(i);  // one more than PatchNums::side holds
  json huge_array = json::array();
  for (int i = 1; i <= 100000; ++i) huge_array.push_back(i);
  json names_1e5 = json::array();
  for (int i = 0; i < 100000; ++i) names_1e5.push_back("x");

  struct Case {
    const char* what;
    std::string field;   // the JSON pointer changed ("" = remove the next one)
    json value;
    const char* expect;  // substring of the message
  };
  const std::vector<Case> cases = {
      {"17 patch_nums (out-of-bounds write before)", "/patch_nums", many, "field 'patch_nums': has 17 entries (allowed: 1 to 16)"},
      {"100000 patch_nums", "/patch_nums", huge_array, "field 'patch_nums': has 100000 entries"},
      {"empty patch_nums", "/patch_nums", json::array(), "field 'patch_nums': has 0 entries"},
      {"patch_nums not increasing", "/patch_nums", json::array({1, 3, 2}), "field 'patch_nums': must be strictly increasing"},
      {"patch side 2^31", "/patch_nums", json::array({1, 2147483648LL}), "field 'patch_nums[1]': 2147483648 is out of range"},
      {"patch side as string", "/patch_nums", json::array({1, "2"}), "field 'patch_nums[1]': is a string"},
      {"patch_nums an object", "/patch_nums", json::object(), "field 'patch_nums': is a object"},
      {"fractional depth (truncated before)", "/depth", 2.5, "field 'depth': 2.5 is not an integer"},
      {"depth 2^32 + 6 (truncated before)", "/depth", 4294967302LL, "field 'depth': 4294967302 is out of range"},
      {"depth 2^64 - 1", "/depth", std::uint64_t(18446744073709551615ULL), "field 'depth': 18446744073709551615 is out of range"},
      {"depth 1e300", "/depth", 1e300, "field 'depth': 1e+300 is out of range"},
      {"depth negative", "/depth", -3, "field 'depth': -3 is out of range"},
      {"depth zero", "/depth", 0, "field 'depth': 0 is out of range"},
      {"depth a string", "/depth", "6", "field 'depth': is a string"},
      {"depth null", "/depth", nullptr, "field 'depth': is null"},
      {"mlp_ratio 4.5", "/mlp_ratio", 4.5, "field 'mlp_ratio': 4.5 is not an integer"},
      {"embed_dim not a multiple of heads", "/embed_dim", 191, "field 'embed_dim': 191 is not a multiple of num_heads 3"},
      {"head_dim inconsistent", "/head_dim", 32, "field 'head_dim': 32 is not embed_dim / num_heads = 64"},
      {"ffn_hidden inconsistent", "/ffn_hidden", 700, "field 'ffn_hidden': 700 is not mlp_ratio"},
      {"vocab 2^40", "/vocab_size", 1099511627776LL, "field 'vocab_size': 1099511627776 is out of range"},
      {"num_classes bool", "/num_classes", true, "field 'num_classes': is a boolean"},
      {"null_class inconsistent", "/null_class", 3, "field 'null_class': 3 is not num_classes = 10"},
      {"even kernel", "/kernel_size", 4, "field 'kernel_size': 4 is even"},
      {"refine_step past the scales", "/refine_step", 99, "field 'refine_step': 99 is out of range"},
      {"huge vae_ch_mult", "/vae_ch_mult", json::array({1, 1000000}), "field 'vae_ch_mult[1]': 1000000 is out of range"},
      {"9 VAE levels", "/vae_ch_mult", json::array({1, 1, 1, 1, 1, 1, 1, 1, 1}), "field 'vae_ch_mult': has 9 entries"},
      {"vae_ch 2^33", "/vae_ch", 8589934592LL, "field 'vae_ch': 8589934592 is out of range"},
      {"vae_using_sa as 1", "/vae_using_sa", 1, "field 'vae_using_sa': is a number"},
      {"quant_resi as string", "/quant_resi", "0.5", "field 'quant_resi': is a string"},
      {"quant_resi 1e39 (float overflow)", "/quant_resi", 1e39, "field 'quant_resi': 1e+39 is out of range"},
      {"top_k beyond int (truncated before)", "/recommended/top_k", 4294967396LL, "field 'recommended.top_k': 4294967396 is out of range"},
      {"top_k beyond the vocabulary", "/recommended/top_k", 513, "field 'recommended.top_k': 513 is out of range"},
      {"top_k fractional", "/recommended/top_k", 10.5, "field 'recommended.top_k': 10.5 is not an integer"},
      {"top_p 0", "/recommended/top_p", 0, "field 'recommended.top_p': 0 is out of range"},
      {"top_p 1.5", "/recommended/top_p", 1.5, "field 'recommended.top_p': 1.5 is out of range"},
      {"cfg negative", "/recommended/cfg", -1, "field 'recommended.cfg': -1 is out of range"},
      {"cfg a string", "/recommended/cfg", "high", "field 'recommended.cfg': is a string"},
      {"recommended an array", "/recommended", json::array({1}), "field 'recommended': is a array"},
      {"class_names count", "/class_names", json::array({"a", "b"}), "field 'class_names': has 2 entries, num_classes is 10"},
      {"class_names 100000", "/class_names", names_1e5, "field 'class_names': has 100000 entries"},
      {"class name a number", "/class_names/3", 7, "field 'class_names[3]': is a number"},
      {"class name empty", "/class_names/0", "", "field 'class_names[0]': is 0 bytes long"},
      {"class name 300 bytes", "/class_names/0", std::string(300, 'a'), "field 'class_names[0]': is 300 bytes long"},
      {"model unknown", "/model", "gpt", "field 'model': \"gpt\" is not"},
      {"shared_aln a number", "/shared_aln", 1, "field 'shared_aln': is a number"},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    json j = base;
    j[json::json_pointer(c.field)] = c.value;
    const std::string msg = error_of(t, j.dump());
    CHECK_THAT(msg, Catch::Contains(c.expect));
  }
  for (const char* field : {"depth", "embed_dim", "num_heads", "mlp_ratio", "vocab_size", "Cvae", "num_classes", "patch_nums",
                            "vae_ch", "vae_ch_mult", "vae_num_res_blocks"}) {
    INFO(field);
    json j = base;
    j.erase(field);
    CHECK_THAT(error_of(t, j.dump()), Catch::Contains(concat("field '", field, "': is missing")));
  }
  // Whole-file problems.
  CHECK_THAT(error_of(t, "[1, 2]"), Catch::Contains("the top level is a array, not a JSON object"));
  CHECK_THAT(error_of(t, "{\"depth\": "), Catch::Contains("not valid JSON"));
  CHECK_THAT(error_of(t, ""), Catch::Contains("not valid JSON"));
  CHECK_THAT(error_of(t, std::string(100000, '[') + std::string(100000, ']')), Catch::Contains("JSON nested deeper than 32 levels"));
  // Brackets inside strings do not count as nesting.
  {
    json j = base;
    j["name"] = std::string(1000, '[');
    CHECK(error_of(t, j.dump()).empty());
  }
  // Unknown extra fields and VAR's null kernel/refine_step are fine.
  {
    json j = base;
    j["something_new"] = json::array({1, 2, 3});
    j["kernel_size"] = nullptr;
    j["refine_step"] = nullptr;
    j["model"] = "var";
    CHECK(error_of(t, j.dump()).empty());
  }
}

TEST_CASE("config.json: a directory, a device-sized or a missing file is refused by name", "[model_description][reliability]") {
  TempDir t;
  const std::string dir = (t.dir / "config.json").string();
  std::filesystem::create_directory(dir);
  CHECK_THROWS_WITH(load_model_description(dir), "config.json: " + dir + ": is a directory, not a file");
  const std::string missing = (t.dir / "nope.json").string();
  CHECK_THROWS_WITH(load_model_description(missing), Catch::StartsWith("config.json: " + missing + ": cannot open: No such file"));
  // A sparse 5 MiB file is refused from its size alone (nothing is read).
  const std::string big = (t.dir / "big.json").string();
  { std::ofstream(big) << "{}"; }
  REQUIRE(::truncate(big.c_str(), 5 << 20) == 0);
  CHECK_THROWS_WITH(load_model_description(big), Catch::Contains("bytes, more than the limit of 4194304"));
  // A FIFO is not a regular file (reading it would block).
  const std::string fifo = (t.dir / "fifo.json").string();
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_THROWS_WITH(load_model_description(fifo), "config.json: " + fifo + ": not a regular file");
}

TEST_CASE("config.json: check_against compares the description with the weights' shapes", "[model_description]") {
  SECTION("the default model") {
    const ModelDescription m = load_model_description(kDefaultModel + "/config.json");
    const TensorStore tw = load_checkpoint(kDefaultModel + "/mvar.safetensors");
    const TensorStore tv = load_checkpoint(kDefaultModel + "/vae.safetensors");
    CHECK_NOTHROW(m.check_against(tw));
    CHECK_NOTHROW(m.check_vae_against(tv));
    CHECK_THROWS_WITH(m.check_against(tv), Catch::Contains("does not describe"));  // a VAE is not a transformer
  }
  SECTION("the fixtures, and descriptions that contradict them field by field") {
    const TensorStore tw = test::load_fixture("tiny.transformer.safetensors");
    const TensorStore tv = test::load_fixture("tiny.vae.safetensors");
    const ModelDescription m = load_model_description(test::fixture_path("mvar_tiny.config.json"));
    CHECK_NOTHROW(m.check_against(tw));
    CHECK_NOTHROW(m.check_vae_against(tv));
    struct Bad {
      const char* what;
      void (*edit)(ModelDescription&);
      const char* expect;
    };
    const Bad bad[] = {
        {"depth", [](ModelDescription& d) { d.arch.depth += 1; }, "blocks"},
        {"width", [](ModelDescription& d) { d.arch.width *= 2; }, "embed_dim"},
        {"heads", [](ModelDescription& d) { d.arch.heads += 1; }, "num_heads"},
        {"classes", [](ModelDescription& d) { d.arch.num_classes -= 1; }, "num_classes + 1 ="},
        {"vocab", [](ModelDescription& d) { d.arch.vocab /= 2; }, "vocab_size"},
        {"cvae", [](ModelDescription& d) { d.arch.cvae *= 2; }, "Cvae"},
        {"scales", [](ModelDescription& d) { d.arch.patch_nums.count -= 1; }, "len(patch_nums)"},
        {"mlp", [](ModelDescription& d) { d.arch.mlp_ratio += 1; }, "mlp_ratio"},
    };
    for (const auto& b : bad) {
      INFO(b.what);
      ModelDescription d = m;
      b.edit(d);
      CHECK_THROWS_WITH(d.check_against(tw), Catch::StartsWith("config.json: " + m.source + " does not describe " + tw.source()) &&
                                                  Catch::Contains(b.expect));
    }
    ModelDescription d = m;
    d.vae.ch *= 2;
    CHECK_THROWS_WITH(d.check_vae_against(tv), Catch::Contains("vae_ch × vae_ch_mult[-1]"));
    d = m;
    d.vae.ch_mult.pop_back();
    CHECK_THROWS_WITH(d.check_vae_against(tv), Catch::Contains("decoder levels"));
  }
}

TEST_CASE("config.json: fuzz seeds named valid_* load and seeds named bad_* are refused naming the file",
          "[model_description][fuzz]") {
  const auto dir = std::filesystem::path(MVAR_SOURCE_DIR) / "tests" / "fuzz" / "corpus" / "config";
  int valid = 0, bad = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    CAPTURE(name);
    std::string msg = "<no error>";
    try {
      (void)load_model_description(e.path().string());
    } catch (const Error& err) {
      msg = err.what();
    }
    CAPTURE(msg);
    if (name.starts_with("valid_")) {
      CHECK(msg == "<no error>");
      ++valid;
    } else {
      REQUIRE(name.starts_with("bad_"));
      CHECK_THAT(msg, Catch::StartsWith("config.json: " + e.path().string() + ": "));
      ++bad;
    }
  }
  CHECK(valid >= 4);
  CHECK(bad >= 15);
}
