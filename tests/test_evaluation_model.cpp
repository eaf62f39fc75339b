// tests/test_evaluation_model.cpp — evaluation sampling with the real default model (32×32
// Fashion-MNIST MVAR) through the ImageSource of examples/evaluation_source.hpp: batch size,
// thread count and sharding never change the bytes, and image (c, j) of the file is the image
// the sampler draws alone with stream c·2³² + j.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <vector>

#include "../examples/evaluation_source.hpp"

namespace fs = std::filesystem;
using namespace mvar;

namespace {

std::string scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / concat("mvar_test_evaluation_model_", ::getpid());
  fs::create_directories(dir);
  return (dir / name).string();
}

std::vector<char> file_bytes(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

evaluation_cli::OpenedSource open(int threads, int max_batch) {
  evaluation_cli::ModelRequest r;
  r.default_model_dir = std::string(MVAR_SOURCE_DIR) + "/models/fashion_mnist";
  r.threads = threads;
  r.max_batch = max_batch;
  r.seed = 5;
  return evaluation_cli::open_image_source(r);
}

}  // namespace

TEST_CASE("evaluation with the default model: batch, threads and shards give the same bytes", "[evaluation][model]") {
  const auto plan = EvaluationPlan::per_class(3, 4, 6);  // 9 images of classes 4..6
  const auto one = open(1, 1), four = open(2, 4);
  REQUIRE(one.side == 32);
  REQUIRE(one.identity == four.identity);  // threads and batch are not part of a run's identity
  const std::string a = scratch("m1.npz"), b = scratch("m4.npz");
  for (const auto& p : {a, b}) std::remove(p.c_str());
  EvaluationOptions o;
  o.npz = a, o.batch = 1;
  run_evaluation(plan, one.identity, one.side, one.source, o);
  o.npz = b, o.batch = 4;
  run_evaluation(plan, four.identity, four.side, four.source, o);
  CHECK(file_bytes(a) == file_bytes(b));

  std::vector<std::string> shards;
  for (int i = 0; i < 2; ++i) {
    EvaluationOptions so;
    so.npz = shard_output_path(scratch("ms.npz"), Shard{i, 2});
    so.shard = Shard{i, 2};
    so.batch = 4;
    std::remove(so.npz.c_str());
    run_evaluation(plan, four.identity, four.side, four.source, so);
    shards.push_back(so.npz);
  }
  const std::string merged = scratch("ms.npz");
  std::remove(merged.c_str());
  merge_evaluation(shards, merged);
  CHECK(file_bytes(merged) == file_bytes(a));

  // Image 7 of the file is (class 6, sample 1): drawn alone with that stream it is the same image.
  const NpzReader r(a);
  const auto a0 = r.array("arr_0");
  const std::size_t img = 32 * 32 * 3;
  std::vector<std::uint8_t> alone(img);
  const int label[] = {6};
  one.source(label, evaluation_stream(6, 1), alone);
  CHECK(std::memcmp(a0.data.data() + 7 * img, alone.data(), img) == 0);
  // … and not the image of another stream (the check above can fail).
  one.source(label, evaluation_stream(6, 2), alone);
  CHECK(std::memcmp(a0.data.data() + 7 * img, alone.data(), img) != 0);
}
