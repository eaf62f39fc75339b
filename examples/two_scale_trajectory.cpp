// two_scale_trajectory — a user's own trajectory through the unchanged generic sampler: each step
// attends to its own scale and the previous one (examples/two_scale_trajectory.hpp). Compares its
// K/V memory with VAR's full prefix on the same weights and writes the image.
//   two_scale_trajectory transformer vae out.png      (compiled for the fixtures' tiny model)
#include <cstdio>
#include <vector>

#include "two_scale_trajectory.hpp"

int main(int argc, char** argv) try {
  if (argc != 4) return std::fprintf(stderr, "usage: %s transformer vae out.png\n", argv[0]), 2;
  constexpr mvar::ModelConfig cfg = mvar::presets::tiny;  // the model's sizes, fixed at compile time
  const auto weights = mvar::load_checkpoint(argv[1]);
  const auto vae = mvar::load_checkpoint(argv[2]);
  const mvar::Transformer<cfg> model(weights);
  const mvar::VectorQuantizer quant(vae, {1, 2, 3, 4, 5, 6, 8, 10, 13, 16}, mvar::VaeConfig::tiny());
  mvar::ThreadPool pool(2);
  const std::vector<int> labels = {207};
  mvar::SampleOptions opts;

  example::TwoScaleTrajectory two(cfg);
  const auto gen = mvar::sample(pool, model, quant, two, labels, opts);
  mvar::FullPrefix prefix(cfg);
  const auto var = mvar::sample(pool, model, quant, prefix, labels, opts);
  std::printf("K/V held: two-scale %.2f MiB, full prefix %.2f MiB\n", double(gen.kv_bytes) / 1048576.0, double(var.kv_bytes) / 1048576.0);

  const mvar::VqvaeDecoder decoder(vae, mvar::VaeConfig::tiny());
  const int side = decoder.image_side(cfg.patch_nums.last());
  mvar::Workspace ws(decoder.workspace_bytes(cfg.patch_nums.last()));
  std::vector<float> img(std::size_t(3) * side * side);
  std::vector<std::uint8_t> rgb(img.size());
  decoder.decode(pool, gen.image_fhat(0), mvar::TensorView<float, 3>(img.data(), {3, side, side}), ws);
  mvar::to_rgb8(mvar::TensorView<const float, 3>(img.data(), {3, side, side}), rgb);
  mvar::write_png(argv[3], rgb, side, side);
  std::printf("wrote %s (%d×%d)\n", argv[3], side, side);
} catch (const mvar::Error& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
