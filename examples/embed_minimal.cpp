// embed_minimal — the shortest complete use of mvar: load weights, generate one image, save it.
//   embed_minimal transformer.safetensors vae.safetensors out.png
// (compiled for the fixtures' tiny model; for MVAR-d16 use presets::d16 and VaeConfig::official()).
#include <mvar/mvar.hpp>

#include <cstdio>
#include <vector>

int main(int argc, char** argv) try {
  if (argc != 4) return std::fprintf(stderr, "usage: %s transformer vae out.png\n", argv[0]), 2;
  constexpr mvar::ModelConfig cfg = mvar::presets::tiny;
  const auto weights = mvar::load_checkpoint(argv[1]);  // .safetensors or official .pth
  const auto vae = mvar::load_checkpoint(argv[2]);
  const mvar::Transformer<cfg> model(weights);
  const mvar::VectorQuantizer quant(vae, {1, 2, 3, 4, 5, 6, 8, 10, 13, 16}, cfg.cvae, cfg.vocab);
  const mvar::VqvaeDecoder decoder(vae, mvar::VaeConfig::tiny());

  mvar::ThreadPool pool(2);
  mvar::ScaleMarkov trajectory(cfg);  // MVAR; mvar::FullPrefix gives VAR
  mvar::SampleOptions opts;           // cfg 1.5, top-k 900, top-p 0.96, seed 0
  const std::vector<int> labels = {207};
  const auto gen = mvar::sample(pool, model, quant, trajectory, labels, opts);

  const int side = decoder.config().image_side(cfg.patch_nums.last());
  mvar::Workspace ws(decoder.workspace_bytes(cfg.patch_nums.last()));
  std::vector<float> img(3 * side * side);
  std::vector<std::uint8_t> rgb(img.size());
  decoder.decode(pool, gen.image_fhat(0), mvar::TensorView<float, 3>(img.data(), {3, side, side}), ws);
  mvar::to_rgb8(mvar::TensorView<const float, 3>(img.data(), {3, side, side}), rgb);
  mvar::write_png(argv[3], rgb, side, side);
  std::printf("wrote %s (%d×%d)\n", argv[3], side, side);
} catch (const mvar::Error& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
