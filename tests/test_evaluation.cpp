// tests/test_evaluation.cpp — pipeline/evaluation.hpp with a fake deterministic ImageSource:
// the plan's indices and streams, batch/shard independence of the bytes, merge (byte-identical
// to one run; overlapping, missing and foreign shards refused), resume after a stop and after a
// full disk, an existing output of another run refused. The default model end to end is in
// test_evaluation_model.cpp; the CLI, numpy and MPI in tests/evaluation/*.sh.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/resource.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "mvar/pipeline/evaluation.hpp"

namespace fs = std::filesystem;
using namespace mvar;

namespace {

std::string scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / concat("mvar_test_evaluation_", ::getpid());
  fs::create_directories(dir);
  return (dir / name).string();
}

std::vector<char> file_bytes(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void clean(const std::string& npz) {
  for (const char* suffix : {"", ".partial", ".journal"}) std::remove((npz + suffix).c_str());
}

constexpr int kSide = 5;

// Pixel = a hash of (label, stream, byte): any mix-up of order, label or stream changes bytes.
std::uint8_t fake_pixel(int label, std::uint64_t stream, std::size_t byte) {
  std::uint64_t x = stream * 0x9E3779B97F4A7C15ull ^ (std::uint64_t(label) << 17) ^ (byte * 0xBF58476D1CE4E5B9ull);
  x ^= x >> 31, x *= 0x94D049BB133111EBull, x ^= x >> 29;
  return std::uint8_t(x);
}

struct FakeSource {
  std::vector<std::size_t>* batch_sizes = nullptr;
  void operator()(std::span<const int> labels, std::uint64_t first, std::span<std::uint8_t> out) const {
    const std::size_t img = std::size_t(kSide) * kSide * 3;
    REQUIRE(out.size() == labels.size() * img);
    if (batch_sizes) batch_sizes->push_back(labels.size());
    for (std::size_t i = 0; i < labels.size(); ++i)
      for (std::size_t b = 0; b < img; ++b) out[i * img + b] = fake_pixel(labels[i], first + i, b);
  }
};

const RunIdentity kIdentity = {{"transformer", "fake.safetensors"}, {"seed", "7"}, {"cfg", "3"}};

EvaluationResult run(const EvaluationPlan& plan, const std::string& npz, int batch = 4, Shard shard = {},
                     const RunIdentity& id = kIdentity, std::function<bool(const EvaluationProgress&)> progress = {}) {
  EvaluationOptions o;
  o.npz = npz, o.batch = batch, o.shard = shard, o.on_progress = std::move(progress);
  return run_evaluation(plan, id, kSide, FakeSource{}, o);
}

}  // namespace

TEST_CASE("evaluation plan: (class, sample) → the same stream whatever the range or count", "[evaluation]") {
  const auto a = EvaluationPlan::per_class(5, 0, 9), b = EvaluationPlan::per_class(8, 3, 5);
  REQUIRE(a.size() == 50);
  REQUIRE(b.size() == 24);
  for (std::uint64_t i = 0; i < a.size(); ++i) {
    CHECK(a.label(i) == int(i / 5));
    CHECK(a.sample(i) == i % 5);
    CHECK(a.stream(i) == (std::uint64_t(i / 5) << 32) + i % 5);
  }
  // Class 4, sample 2 is image 22 of a and image 10 of b — the same stream.
  CHECK(a.stream(22) == b.stream(10));
  const int list[] = {2, 0, 2, 2, 0};
  const auto l = EvaluationPlan::from_labels(list);
  CHECK(l.stream(3) == evaluation_stream(2, 2));
  CHECK(l.stream(4) == evaluation_stream(0, 1));
  CHECK(EvaluationPlan::parse_classes("3-7") == std::pair{3, 7});
  CHECK(EvaluationPlan::parse_classes("999") == std::pair{999, 999});
  CHECK_THROWS_WITH(EvaluationPlan::parse_classes("7-3"), Catch::Contains("not a class range"));
  CHECK_THROWS_WITH(EvaluationPlan::parse_classes("a-b"), Catch::Contains("not a class range"));
  CHECK_THROWS_WITH(EvaluationPlan::per_class(0, 0, 9), Catch::Contains("--per-class must be"));
  CHECK_THROWS_WITH(EvaluationPlan::per_class(1, 0, 70000), Catch::Contains("--classes"));
  CHECK_THROWS_WITH(a.check_classes(9), Catch::Contains("class label 9 (image 45) is out of range [0, 8]"));
}

TEST_CASE("evaluation plan: shards are disjoint, contiguous and cover every index", "[evaluation]") {
  for (std::uint64_t per : {1, 3, 7}) {
    const auto plan = EvaluationPlan::per_class(per, 0, 4);
    for (int n : {1, 2, 3, 4, 6, 16, 40}) {
      CAPTURE(per, n);
      std::uint64_t next = 0;
      for (int i = 0; i < n; ++i) {
        const IndexRange r = plan.shard(Shard{i, n});
        CHECK(r.begin == next);
        CHECK(r.end >= r.begin);
        next = r.end;
      }
      CHECK(next == plan.size());
    }
  }
  CHECK(parse_shard("3/8").index == 3);
  CHECK(parse_shard("3/8").count == 8);
  for (const char* bad : {"8/8", "1", "-1/2", "1/0", "a/b", "1/2/3", ""})
    CHECK_THROWS_WITH(parse_shard(bad), Catch::Contains("is not a shard i/n"));
  CHECK(shard_output_path("out/s.npz", Shard{1, 4}) == "out/s.shard-00001-of-00004.npz");
}

TEST_CASE("evaluation plan: label list files", "[evaluation]") {
  const std::string p = scratch("labels.txt");
  std::ofstream(p) << "# three classes\n0, 1 2\n\n2   # trailing comment\n";
  const auto plan = EvaluationPlan::from_label_file(p);
  REQUIRE(plan.size() == 4);
  CHECK(plan.label(3) == 2);
  CHECK(plan.sample(3) == 1);
  std::ofstream(p) << "0 1\nx\n";
  CHECK_THROWS_WITH(EvaluationPlan::from_label_file(p), Catch::Contains("labels.txt:2: not a class label"));
  std::ofstream(p) << "70000\n";
  CHECK_THROWS_WITH(EvaluationPlan::from_label_file(p), Catch::Contains("not a class label"));
  std::ofstream(p) << "# nothing\n";
  CHECK_THROWS_WITH(EvaluationPlan::from_label_file(p), Catch::Contains("empty"));
}

TEST_CASE("evaluation: the batch size does not change the bytes; batches never mix classes", "[evaluation]") {
  const auto plan = EvaluationPlan::per_class(5, 2, 4);
  const std::string ref = scratch("b1.npz");
  clean(ref);
  REQUIRE(run(plan, ref, 1).status == EvaluationStatus::Complete);
  REQUIRE_FALSE(fs::exists(ref + ".partial"));
  REQUIRE_FALSE(fs::exists(ref + ".journal"));
  for (int batch : {2, 3, 4, 16}) {
    CAPTURE(batch);
    const std::string p = scratch(concat("b", batch, ".npz"));
    clean(p);
    std::vector<std::size_t> sizes;
    EvaluationOptions o;
    o.npz = p, o.batch = batch;
    run_evaluation(plan, kIdentity, kSide, FakeSource{&sizes}, o);
    CHECK(file_bytes(p) == file_bytes(ref));
    for (std::size_t s : sizes) CHECK(s <= std::size_t(std::min(batch, 5)));
    CHECK(sizes.size() == std::size_t(3 * ((5 + batch - 1) / batch)));  // per class: ⌈5 / batch⌉ calls
  }
  // What the file holds: image i is the fake image of (label(i), stream(i)); labels and settings.
  const NpzReader r(ref);
  const auto a0 = r.array("arr_0"), a1 = r.array("arr_1");
  REQUIRE(a0.header.shape == std::vector<std::uint64_t>{15, kSide, kSide, 3});
  const std::size_t img = kSide * kSide * 3;
  for (std::uint64_t i = 0; i < plan.size(); ++i) {
    CHECK(std::to_integer<int>(a1.data[i * 8]) == plan.label(i));
    for (std::size_t b = 0; b < img; b += 7)
      CHECK(std::to_integer<std::uint8_t>(a0.data[i * img + b]) == fake_pixel(plan.label(i), plan.stream(i), b));
  }
  const auto s = nlohmann::json::parse(std::string_view(reinterpret_cast<const char*>(r.file("settings.json").data()), r.file("settings.json").size()));
  CHECK(s["identity"]["seed"] == "7");
  CHECK(s["plan"]["classes"] == "2-4");
  CHECK(s["images"]["end"] == 15);
}

TEST_CASE("evaluation: shards merge to the bytes of one run, in any order", "[evaluation]") {
  const auto plan = EvaluationPlan::per_class(7, 0, 2);  // 21 images: uneven shards
  const std::string single = scratch("single.npz");
  clean(single);
  run(plan, single, 4);
  for (int n : {2, 3, 5}) {
    CAPTURE(n);
    std::vector<std::string> parts;
    for (int i = n - 1; i >= 0; --i) {  // listed backwards: merge orders them by index
      parts.push_back(shard_output_path(scratch(concat("sh", n, ".npz")), Shard{i, n}));
      clean(parts.back());
      run(plan, parts.back(), 3 + i, Shard{i, n});  // every shard with its own batch size
    }
    const std::string merged = scratch(concat("merged", n, ".npz"));
    clean(merged);
    CHECK(merge_evaluation(parts, merged));
    CHECK(file_bytes(merged) == file_bytes(single));
    CHECK_FALSE(merge_evaluation(parts, merged));  // already there, same run: nothing to do
  }
  // zip64 everywhere: the same content, and the merge of zip64 shards equals a zip64 run.
  const std::string z = scratch("single64.npz"), zm = scratch("merged64.npz");
  clean(z), clean(zm);
  EvaluationOptions o;
  o.npz = z, o.force_zip64 = true;
  run_evaluation(plan, kIdentity, kSide, FakeSource{}, o);
  const std::vector<std::string> parts = {shard_output_path(scratch("sh2.npz"), Shard{0, 2}), shard_output_path(scratch("sh2.npz"), Shard{1, 2})};
  merge_evaluation(parts, zm, true);
  CHECK(file_bytes(z) == file_bytes(zm));
  CHECK(file_bytes(z) != file_bytes(single));
}

TEST_CASE("evaluation: bad merges are refused, one message each, nothing written", "[evaluation][reliability]") {
  const auto plan = EvaluationPlan::per_class(4, 0, 2);  // 12 images
  auto shard = [&](const std::string& tag, int i, int n, const RunIdentity& id = kIdentity) {
    const std::string p = shard_output_path(scratch(tag + ".npz"), Shard{i, n});
    clean(p);
    run(plan, p, 4, Shard{i, n}, id);
    return p;
  };
  const std::string a0 = shard("m", 0, 2), a1 = shard("m", 1, 2), b0 = shard("t", 0, 3), b2 = shard("t", 2, 3);
  RunIdentity other = kIdentity;
  other["seed"] = "8";
  const std::string f1 = shard("foreign", 1, 2, other);
  const std::string out = scratch("bad_merge.npz");
  clean(out);
  auto merge = [&](std::vector<std::string> in) { return merge_evaluation(in, out); };
  CHECK_THROWS_WITH(merge({a0}), Catch::Contains("images [6, 12) of 12 are in none of the files (a shard is missing)"));
  CHECK_THROWS_WITH(merge({a1}), Catch::Contains("images [0, 6) of 12 are in none of the files"));
  CHECK_THROWS_WITH(merge({a0, b0, a1}), Catch::Contains("overlaps") && Catch::Contains("on images [0, 4)"));
  CHECK_THROWS_WITH(merge({a0, a1, a1}), Catch::Contains("overlaps") && Catch::Contains("on images [6, 12)"));
  CHECK_THROWS_WITH(merge({a0, b2}), Catch::Contains("images [6, 8) of 12 are in none"));
  CHECK_THROWS_WITH(merge({a0, f1}), Catch::Contains("a shard of another run") && Catch::Contains("identity.seed: \"7\" in ") && Catch::Contains(", \"8\" in "));
  const auto other_plan = EvaluationPlan::per_class(4, 1, 3);
  const std::string p1 = shard_output_path(scratch("op.npz"), Shard{1, 2});
  clean(p1);
  EvaluationOptions o;
  o.npz = p1, o.shard = Shard{1, 2};
  run_evaluation(other_plan, kIdentity, kSide, FakeSource{}, o);
  CHECK_THROWS_WITH(merge({a0, p1}), Catch::Contains("a shard of another run") && Catch::Contains("plan.classes"));
  CHECK_THROWS_WITH(merge({}), Catch::Contains("no shard files"));
  CHECK_THROWS_WITH(merge({scratch("nope.npz")}), Catch::Contains("nope.npz: cannot open"));
  CHECK_FALSE(fs::exists(out));
  // A damaged shard (one pixel flipped) is refused by its CRC before anything is written.
  auto bytes = file_bytes(a1);
  bytes[300] ^= 1;
  const std::string damaged = scratch("damaged.npz");
  std::ofstream(damaged, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
  CHECK_THROWS_WITH(merge({a0, damaged}), Catch::Contains("member 'arr_0.npy' is corrupt"));
  CHECK_FALSE(fs::exists(out));
  for (const auto& e : fs::directory_iterator(fs::path(out).parent_path()))
    CHECK(e.path().string().find("bad_merge.npz.tmp") == std::string::npos);
}

TEST_CASE("evaluation: a stopped run resumes to the bytes of an uninterrupted one", "[evaluation]") {
  const auto plan = EvaluationPlan::per_class(6, 0, 2);
  const std::string ref = scratch("r_ref.npz"), p = scratch("r.npz");
  clean(ref), clean(p);
  run(plan, ref, 4);
  // Batches never cross a class (6 per class, batch 4: 4 + 2). Stop after the 2nd batch (6 images), resume with another batch size, stop again, finish.
  int calls = 0;
  auto r1 = run(plan, p, 4, {}, kIdentity, [&](const EvaluationProgress& pr) {
    CHECK(pr.total == 18);
    CHECK(pr.images_per_second > 0);
    CHECK(pr.eta_seconds >= 0);
    return ++calls < 2;
  });
  CHECK(r1.status == EvaluationStatus::Stopped);
  CHECK(r1.done == 6);
  CHECK_FALSE(fs::exists(p));
  CHECK(fs::exists(p + ".partial"));
  CHECK(fs::exists(p + ".journal"));
  // Another run's settings never continue this partial.
  RunIdentity other = kIdentity;
  other["cfg"] = "4";
  CHECK_THROWS_WITH(run(plan, p, 4, {}, other),
                    Catch::Contains("r.npz.journal: an unfinished run with other settings") && Catch::Contains("identity.cfg"));
  CHECK_THROWS_WITH(run(EvaluationPlan::per_class(6, 1, 3), p, 4), Catch::Contains("plan.classes"));
  CHECK_THROWS_WITH(run(plan, p, 4, Shard{0, 2}), Catch::Contains("images.end"));
  calls = 0;
  auto r2 = run(plan, p, 5, {}, kIdentity, [&](const EvaluationProgress& pr) {
    CHECK(pr.resumed_from == 6);
    return ++calls < 1;
  });
  CHECK(r2.status == EvaluationStatus::Stopped);
  CHECK(r2.resumed_from == 6);
  auto r3 = run(plan, p, 3);
  CHECK(r3.status == EvaluationStatus::Complete);
  CHECK(r3.resumed_from == r2.done);
  CHECK(file_bytes(p) == file_bytes(ref));
  CHECK_FALSE(fs::exists(p + ".partial"));
  CHECK_FALSE(fs::exists(p + ".journal"));
  // Run again: nothing to do.
  CHECK(run(plan, p, 4).status == EvaluationStatus::AlreadyComplete);
}

TEST_CASE("evaluation: a damaged or orphaned partial is refused, not mixed in", "[evaluation][reliability]") {
  const auto plan = EvaluationPlan::per_class(6, 0, 1);
  const std::string p = scratch("orphan.npz");
  clean(p);
  run(plan, p, 4, {}, kIdentity, [](const EvaluationProgress&) { return false; });
  REQUIRE(fs::exists(p + ".partial"));
  // The journal says 4 images; cut the partial below that.
  fs::resize_file(p + ".partial", fs::file_size(p + ".partial") - 10);
  CHECK_THROWS_WITH(run(plan, p, 4), Catch::Contains("fewer than the") && Catch::Contains("remove both to start over"));
  std::remove((p + ".journal").c_str());
  CHECK_THROWS_WITH(run(plan, p, 4), Catch::Contains("orphan.npz.partial: exists without its journal"));
  clean(p);
}

TEST_CASE("evaluation: an output of another run is never overwritten", "[evaluation][reliability]") {
  const auto plan = EvaluationPlan::per_class(3, 0, 1);
  const std::string p = scratch("exists.npz");
  clean(p);
  run(plan, p);
  const auto before = file_bytes(p);
  RunIdentity other = kIdentity;
  other["transformer"] = "other.safetensors";
  CHECK_THROWS_WITH(run(plan, p, 4, {}, other), Catch::Contains("exists and holds a different run") &&
                                                     Catch::Contains("identity.transformer"));
  std::ofstream(scratch("not_npz.npz")) << "hello";
  CHECK_THROWS_WITH(run(plan, scratch("not_npz.npz")), Catch::Contains("exists and is not this run's output"));
  CHECK(file_bytes(p) == before);
}

TEST_CASE("evaluation: a full disk mid-run keeps the finished images; the rerun completes them", "[evaluation][reliability]") {
  // RLIMIT_FSIZE makes writes past the limit fail with EFBIG, as a full disk fails them with
  // ENOSPC: the same error path, without needing a small file system.
  const auto plan = EvaluationPlan::per_class(10, 0, 3);  // 40 images of 75 bytes
  const std::string ref = scratch("disk_ref.npz"), p = scratch("disk.npz");
  clean(ref), clean(p);
  run(plan, ref, 4);
  rlimit old{};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  rlimit small = old;
  // Zip + .npy headers take 39 + 128 bytes and each image 75: batches of 4, 4, 2 per class end at
  // 4, 8, 10, 14 images (1217 bytes); the next, up to 18 images, would need 1517.
  small.rlim_cur = 1500;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
  std::string message;
  try {
    run(plan, p, 4);
  } catch (const Error& e) {
    message = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, old_handler);
  CHECK_THAT(message, Catch::Contains("disk.npz.partial: cannot write: File too large") &&
                          Catch::Contains("after 14 of 40 images; those are kept in") && Catch::Contains("run the same command again"));
  CHECK_FALSE(fs::exists(p));
  CHECK(fs::exists(p + ".journal"));
  std::vector<std::size_t> sizes;
  EvaluationOptions o;
  o.npz = p, o.batch = 4;
  const auto r = run_evaluation(plan, kIdentity, kSide, FakeSource{&sizes}, o);
  CHECK(r.resumed_from == 14);
  CHECK(sizes.size() == 8);  // only the 26 missing images were drawn again: 4 + 2, then 4 + 4 + 2 twice
  CHECK(file_bytes(p) == file_bytes(ref));
}

TEST_CASE("evaluation: a PNG per image, named by index, class and sample", "[evaluation]") {
  const auto plan = EvaluationPlan::per_class(2, 3, 4);
  const std::string p = scratch("png.npz"), dir = scratch("pngs");
  clean(p);
  fs::remove_all(dir);
  EvaluationOptions o;
  o.npz = p, o.png_dir = dir;
  run_evaluation(plan, kIdentity, kSide, FakeSource{}, o);
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  CHECK(names == std::set<std::string>{"000000_class3_00000.png", "000001_class3_00001.png", "000002_class4_00000.png",
                                       "000003_class4_00001.png"});
}

TEST_CASE("evaluation: bad options name the option", "[evaluation]") {
  const auto plan = EvaluationPlan::per_class(2, 0, 1);
  EvaluationOptions o;
  CHECK_THROWS_WITH(run_evaluation(plan, kIdentity, kSide, FakeSource{}, o), Catch::Contains("--npz"));
  o.npz = scratch("opt.npz");
  o.batch = 0;
  CHECK_THROWS_WITH(run_evaluation(plan, kIdentity, kSide, FakeSource{}, o), Catch::Contains("--batch must be"));
  o.batch = 1;
  o.shard = Shard{2, 2};
  CHECK_THROWS_WITH(run_evaluation(plan, kIdentity, kSide, FakeSource{}, o), Catch::Contains("--shard 2/2"));
}
