// mvar::Pipeline (include/mvar/pipeline/): the run-time front door gives exactly the bytes of the
// compile-time API assembled by hand; presets are recognised, extended and named; the mode comes
// from what the files say (or is refused); settings, labels, cancellation, image streams.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "../examples/two_scale_trajectory.hpp"
#include "fixtures_path.hpp"
#include "mvar/mvar.hpp"

using namespace mvar;
namespace fs = std::filesystem;

namespace {

const std::string kTransformer = test::fixture_path("tiny.transformer.safetensors");
const std::string kVae = test::fixture_path("tiny.vae.safetensors");

/// The labels of the fixtures' VAR run (var_tiny.config.json), plus the null class.
std::vector<int> fixture_labels() {
  std::ifstream in(test::fixture_path("var_tiny.config.json"));
  const auto j = nlohmann::json::parse(in);
  std::vector<int> l = j.at("labels").get<std::vector<int>>();
  l.push_back(j.at("num_classes").get<int>());
  return l;
}

/// The same images through the compile-time API, assembled by hand (what the CLI did before).
template <class Trajectory>
std::vector<std::uint8_t> by_hand(const std::vector<int>& labels, const SampleOptions& o) {
  const auto w = load_checkpoint(kTransformer);
  const auto v = load_checkpoint(kVae);
  const Transformer<presets::tiny> model(w, WeightLayout::PackedF32);
  const VectorQuantizer quant(v, {1, 2, 3, 4, 5, 6, 8, 10, 13, 16}, VaeConfig::tiny());
  ThreadPool pool(2);
  Trajectory traj(presets::tiny);
  const auto g = sample(pool, model, quant, traj, labels, o);
  const VqvaeDecoder decoder(v, VaeConfig::tiny());
  const int side = decoder.image_side(16);
  Workspace ws(decoder.workspace_bytes(16));
  std::vector<float> img(std::size_t(3) * side * side);
  std::vector<std::uint8_t> rgb(labels.size() * std::size_t(side) * side * 3);
  for (std::size_t b = 0; b < labels.size(); ++b) {
    decoder.decode(pool, g.image_fhat(int(b)), TensorView<float, 3>(img.data(), {3, side, side}), ws);
    to_rgb8(TensorView<const float, 3>(img.data(), {3, side, side}), std::span<std::uint8_t>(rgb).subspan(b * side * side * 3, std::size_t(side) * side * 3));
  }
  return rgb;
}

}  // namespace

TEST_CASE("Pipeline: the same bytes as the compile-time API, both trajectories", "[pipeline]") {
  const auto labels = fixture_labels();
  for (const Mode mode : {Mode::Mvar, Mode::Var}) {
    CAPTURE(mode_name(mode));
    Pipeline p({.transformer = kTransformer, .vae = kVae, .mode = mode, .threads = 2});
    REQUIRE(p.info().preset == "tiny");
    const Images im = p.generate({.labels = labels, .seed = 11, .cfg = 2.0f, .top_p = 0.9f, .top_k = 50});
    SampleOptions o;
    o.seed = 11, o.cfg = 2.0f, o.top_k = 50, o.top_p = 0.9f;
    const auto want = mode == Mode::Var ? by_hand<FullPrefix>(labels, o) : by_hand<ScaleMarkov>(labels, o);
    REQUIRE(im.count == int(labels.size()));
    REQUIRE(im.side == 256);
    REQUIRE(im.rgb == want);
    REQUIRE(im.settings.cfg == 2.0f);
    REQUIRE(im.sampling_peak_rss <= im.peak_rss);
  }
}

TEST_CASE("Pipeline: unset settings are the preset's recommendation for the mode", "[pipeline]") {
  Pipeline p({.transformer = kTransformer, .vae = kVae, .mode = Mode::Var});
  const auto o = p.settings({.labels = {1}});
  const PresetTable table = builtin_presets();
  const auto& rec = table.find("tiny")->recommended_var;
  REQUIRE(o.cfg == rec.cfg);
  REQUIRE(o.top_k == rec.top_k);
  REQUIRE(o.top_p == rec.top_p);
  REQUIRE_THROWS_WITH(p.settings({.labels = {1}, .cfg = -1.0f}), Catch::Contains("cfg must be"));
  REQUIRE_THROWS_WITH(p.generate({.labels = {}}), Catch::Contains("no images requested"));
}

TEST_CASE("Pipeline: the mode comes from what the files say, else it is refused", "[pipeline][mode]") {
  // Nothing in the fixture file says VAR or MVAR.
  REQUIRE_THROWS_WITH(Pipeline({.transformer = kTransformer, .vae = kVae}),
                      Catch::Contains("cannot tell whether this checkpoint holds VAR or MVAR") && Catch::Contains("--mode"));
  const fs::path dir = fs::temp_directory_path() / "mvar_test_pipeline_mode";
  fs::remove_all(dir);
  fs::create_directories(dir);
  // The official file names decide.
  for (const auto& [name, mode] : std::vector<std::pair<std::string, Mode>>{
           {"var_d16.safetensors", Mode::Var}, {"mvar-finetune-d16.safetensors", Mode::Mvar}, {"mvar-d16.safetensors", Mode::Mvar}}) {
    CAPTURE(name);
    fs::copy_file(kTransformer, dir / name);
    Pipeline p({.transformer = (dir / name).string(), .vae = kVae});
    REQUIRE(p.info().mode == mode);
    REQUIRE_THAT(p.info().mode_reason, Catch::Contains(name));
  }
  // An explicit mode wins over the name.
  REQUIRE(Pipeline({.transformer = (dir / "var_d16.safetensors").string(), .vae = kVae, .mode = Mode::Mvar}).info().mode == Mode::Mvar);
  // The default model's config.json and its file metadata both say mvar.
  const std::string fm = std::string(MVAR_SOURCE_DIR) + "/models/fashion_mnist";
  Pipeline d({.transformer = fm + "/mvar.safetensors", .vae = fm + "/vae.safetensors"});
  REQUIRE(d.info().mode == Mode::Mvar);
  REQUIRE(d.info().preset == "fashion_mnist");
  REQUIRE_THAT(d.info().mode_reason, Catch::Contains("config.json"));
  fs::remove_all(dir);
}

TEST_CASE("decide_mode: config.json, metadata, wrapper key and names, in that order", "[pipeline][mode]") {
  auto store = [](std::map<std::string, std::string> meta, std::string source) {
    return TensorStore(std::move(source), {}, nullptr, std::move(meta));
  };
  REQUIRE(decide_mode(store({}, "x.pth"), "var", "config.json")->first == Mode::Var);
  REQUIRE(decide_mode(store({{"model", "var"}}, "mvar-d16.pth"), "", "")->first == Mode::Var);
  REQUIRE(decide_mode(store({{"format", "pth:mvar_wo_ddp"}}, "x.pth"), "", "")->first == Mode::Mvar);
  REQUIRE(decide_mode(store({{"source", "var_d20.pth"}}, "converted.safetensors"), "", "")->first == Mode::Var);
  REQUIRE(decide_mode(store({}, "/a/b/VAR_d30.pth"), "", "")->first == Mode::Var);
  REQUIRE_FALSE(decide_mode(store({}, "/a/b/weights.pth"), "", "").has_value());
  REQUIRE_FALSE(decide_mode(store({}, "/a/variant.pth"), "", "").has_value());  // "var" alone is not a name rule
}

TEST_CASE("PresetTable: recognised by shapes, extended by the user, named in errors", "[pipeline][preset]") {
  const auto w = load_checkpoint(kTransformer);
  PresetTable t = builtin_presets();
  REQUIRE(t.recognise(w).name == "tiny");
  // A user's own compile-time config joins the table without editing the library (here: the same
  // sizes under another name with other settings, replacing the built-in entry by name).
  PresetTable mine;
  mine.add(make_preset<presets::tiny>("my_tiny", VaeConfig::tiny(), {3.0f, 10, 0.5f}));
  REQUIRE(mine.recognise(w).name == "my_tiny");
  Pipeline p({.transformer = kTransformer, .vae = kVae, .mode = Mode::Mvar}, mine);
  REQUIRE(p.info().preset == "my_tiny");
  REQUIRE(p.info().recommended.top_k == 10);
  // VAR-d36's layout in miniature (shared AdaLN, 512-px schedule) is its own preset.
  REQUIRE(t.recognise(load_checkpoint(test::fixture_path("saln512_tiny.transformer.safetensors"))).name == "saln512_tiny");
  REQUIRE(t.find("d36")->image_side() == 512);
  PresetTable empty;
  REQUIRE_THROWS_WITH(empty.recognise(w), Catch::Contains("unknown architecture (depth 2, width 128"));
  REQUIRE_THROWS_WITH(t.recognise(load_checkpoint(kVae)), Catch::Contains("not a VAR/MVAR transformer checkpoint"));
  REQUIRE_THROWS_WITH(Pipeline({.transformer = kTransformer, .vae = kVae, .model = "d99", .mode = Mode::Mvar}),
                      Catch::Contains("unknown model 'd99'") && Catch::Contains("d16, d20"));
  // Per-file settings of the official MVAR checkpoints (SPEC §3.4).
  const Preset& d16 = *t.find("d16");
  REQUIRE(d16.recommended(Mode::Mvar, "mvar-d16").cfg == 2.7f);
  REQUIRE(d16.recommended(Mode::Mvar, "mvar-finetune-d16").cfg == 2.0f);
  REQUIRE(d16.recommended(Mode::Var, "var_d16").cfg == 1.5f);
}

TEST_CASE("ModelInfo: class names, numbers and null", "[pipeline]") {
  const std::string fm = std::string(MVAR_SOURCE_DIR) + "/models/fashion_mnist";
  Pipeline d({.transformer = fm + "/mvar.safetensors", .vae = fm + "/vae.safetensors"});
  const auto& info = d.info();
  REQUIRE(info.label_of("Sneaker") == 7);
  REQUIRE(info.label_of("ankle boot") == 9);
  REQUIRE(info.label_of("3") == 3);
  REQUIRE(info.label_of("null") == info.num_classes);
  REQUIRE(info.name_of(7) == "Sneaker");
  REQUIRE(info.name_of(info.num_classes) == "null");
  REQUIRE_THROWS_WITH(info.label_of("Sneakers"), Catch::Contains("unknown class 'Sneakers'"));
  REQUIRE_THROWS_WITH(info.label_of("11"), Catch::Contains("out of range"));
  REQUIRE_THROWS_WITH(info.label_of("-1"), Catch::Contains("out of range"));
  // The official presets carry the 1000 ImageNet names.
  const PresetTable table = builtin_presets();
  const Preset& d16 = *table.find("d16");
  REQUIRE(d16.class_names.size() == 1000);
  REQUIRE(d16.class_names[207] == "golden retriever");
}

TEST_CASE("random_labels: uniform over the classes, fixed by the seed and the image index", "[pipeline]") {
  const auto a = random_labels(2000, 10, 5);
  REQUIRE(a == random_labels(2000, 10, 5));
  REQUIRE(a != random_labels(2000, 10, 6));
  std::vector<int> count(10, 0);
  for (int l : a) {
    REQUIRE(l >= 0);
    REQUIRE(l < 10);
    ++count[std::size_t(l)];
  }
  for (int c : count) REQUIRE(c > 120);  // 200 expected per class; 120 is > 5 standard deviations below
  // Image i's label does not depend on how many are drawn together.
  REQUIRE(random_labels(1, 10, 5, 1234)[0] == a[1234]);
}

TEST_CASE("Pipeline: cancellation stops between scales and leaves the pipeline usable", "[pipeline]") {
  Pipeline p({.transformer = kTransformer, .vae = kVae, .mode = Mode::Mvar, .threads = 2});
  int scales_seen = 0;
  GenerateRequest r{.labels = {1}};
  r.on_progress = [&](const Progress& g) { scales_seen += g.phase == Progress::Phase::Sampling; };
  r.cancel = [&] { return scales_seen >= 3; };
  REQUIRE_THROWS_AS(p.generate(r), Cancelled);
  REQUIRE(scales_seen == 3);
  r.cancel = nullptr;
  REQUIRE(p.generate(r).count == 1);
}

TEST_CASE("ImageStream: any split into batches gives the images of one generate call", "[pipeline]") {
  Pipeline p({.transformer = kTransformer, .vae = kVae, .mode = Mode::Mvar, .threads = 2});
  const std::vector<int> labels = {5, 6, 7};
  const GenerateRequest settings{.labels = labels, .seed = 3, .first_index = 40};
  const Images whole = p.generate(settings);
  ImageStream stream = p.open_stream(2, settings);
  const std::size_t one = std::size_t(stream.side()) * stream.side() * 3;
  std::vector<std::uint8_t> rgb(3 * one);
  stream.draw(std::span<const int>(labels).subspan(0, 1), 40, std::span<std::uint8_t>(rgb).subspan(0, one));
  stream.draw(std::span<const int>(labels).subspan(1, 2), 41, std::span<std::uint8_t>(rgb).subspan(one, 2 * one));
  REQUIRE(rgb == whole.rgb);
  REQUIRE_THROWS_WITH(stream.draw(labels, 0, rgb), Catch::Contains("1 to 2 allowed"));
}

TEST_CASE("A user's trajectory runs through the unchanged sampler", "[pipeline][trajectory]") {
  // examples/two_scale_trajectory.hpp: attention over the previous scale and this one. Steps 0
  // and 1 see exactly VAR's prefix, so their tokens are VAR's; it holds less K/V than VAR.
  const auto w = load_checkpoint(kTransformer);
  const auto v = load_checkpoint(kVae);
  const Transformer<presets::tiny> model(w);
  const VectorQuantizer quant(v, {1, 2, 3, 4, 5, 6, 8, 10, 13, 16}, VaeConfig::tiny());
  static_assert(TrajectoryFor<example::TwoScaleTrajectory, Transformer<presets::tiny>>);
  const std::vector<int> labels = fixture_labels();
  SampleOptions o;
  o.seed = 9;
  o.top_k = 1;  // greedy: the first two scales are then equal token for token
  ThreadPool one(1), two(2);
  example::TwoScaleTrajectory ts(presets::tiny);
  FullPrefix fp(presets::tiny);
  const auto a = sample(two, model, quant, ts, labels, o);
  const auto b = sample(two, model, quant, fp, labels, o);
  for (int s = 0; s < 2; ++s) REQUIRE(a.tokens[std::size_t(s)] == b.tokens[std::size_t(s)]);
  REQUIRE(a.kv_bytes > 0);
  REQUIRE(a.kv_bytes < b.kv_bytes);
  // Deterministic across thread counts, like the shipped trajectories.
  example::TwoScaleTrajectory ts1(presets::tiny);
  const auto c = sample(one, model, quant, ts1, labels, o);
  REQUIRE(a.tokens == c.tokens);
  REQUIRE(std::equal(a.fhat.data(), a.fhat.data() + a.fhat.size(), c.fhat.data()));
}

TEST_CASE("PNG text chunks: written with the image, read back without decoding it", "[pipeline][png]") {
  const fs::path f = fs::temp_directory_path() / "mvar_test_text.png";
  const std::vector<std::uint8_t> rgb(4 * 3 * 3, 7);
  write_png(f.string(), rgb, 4, 3, std::vector<PngText>{{"parameters", "seed: 1, class: café ×"}, {"Software", "mvar"}});
  const auto t = read_png_text(f.string());
  REQUIRE(t.size() == 2);
  REQUIRE(t[0].key == "parameters");
  REQUIRE(t[0].value == "seed: 1, class: café ×");
  // A truncated file is an error naming it, not garbage.
  const auto bytes = fs::file_size(f);
  fs::resize_file(f, bytes - 20);
  REQUIRE_THROWS_WITH(read_png_text(f.string()), Catch::Contains("mvar_test_text.png") && Catch::Contains("truncated"));
  fs::remove(f);
}

TEST_CASE("Pipeline: more_smooth and the null class, same bytes for any thread count", "[pipeline]") {
  std::vector<std::uint8_t> first;
  for (const int threads : {1, 3}) {
    Pipeline p({.transformer = kTransformer, .vae = kVae, .mode = Mode::Var, .threads = threads});
    const Images im = p.generate({.labels = {p.info().num_classes, 1}, .seed = 2, .more_smooth = true});
    REQUIRE(im.settings.more_smooth);
    if (first.empty()) first = im.rgb;
    else REQUIRE(im.rgb == first);
  }
  Pipeline p({.transformer = kTransformer, .vae = kVae, .mode = Mode::Mvar});
  REQUIRE_THROWS_WITH(p.settings({.labels = {1}, .top_k = 1, .more_smooth = true}), Catch::Contains("more_smooth with top_k 1"));
}
