// embed_minimal — the shortest complete use of mvar: open a model, draw one image, save it.
//   embed_minimal transformer.pth vae.pth out.png [mvar|var]
// Any official checkpoint (var_d16.pth … mvar-finetune-d24.pth with vae_ch160v4096z32.pth) or a
// model with a config.json; the mode argument is needed only where the files do not tell.
#include <mvar/mvar.hpp>

#include <cstdio>
#include <string>

int main(int argc, char** argv) try {
  if (argc != 4 && argc != 5) return std::fprintf(stderr, "usage: %s transformer vae out.png [mvar|var]\n", argv[0]), 2;
  mvar::PipelineOptions o{.transformer = argv[1], .vae = argv[2], .threads = 2};
  if (argc == 5) o.mode = std::string(argv[4]) == "var" ? mvar::Mode::Var : mvar::Mode::Mvar;
  mvar::Pipeline pipeline(o);
  const mvar::Images im = pipeline.generate({.labels = {207}, .seed = 0});  // recommended cfg, top-k, top-p
  mvar::write_png(argv[3], im.image(0), im.side, im.side);
  std::printf("wrote %s (%d×%d, %s)\n", argv[3], im.side, im.side, pipeline.info().preset.c_str());
} catch (const mvar::Error& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
