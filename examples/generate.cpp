// generate — class-conditional image generation with MVAR (or VAR) from the command line.
//
//   generate                                  # the default model shipped in models/
//   generate --transformer mvar-d16.pth --vae vae_ch160v4096z32.pth --class 207 --seed 1
//
// Prints a progress line per scale, then the total time, images/s and peak memory.
// Exit codes: 0 success, 1 runtime error (bad file, ...), 2 bad command line.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli_args.hpp"
#include "model_registry.hpp"

namespace fs = std::filesystem;
using namespace mvar;

namespace {

const char* kUsage =
    "usage: generate [options]\n"
    "Draws class-conditional images with MVAR (scale-Markov, no KV cache) or VAR (KV cache) on the CPU.\n"
    "With no weights given it uses the small default model shipped in the repository.";

cli::Args make_args() {
  return cli::Args({
      {"help", "", "show this help and exit", ""},
      {"transformer", "FILE", "transformer weights (.safetensors or official .pth)", "the default model"},
      {"vae", "FILE", "VQVAE weights (.safetensors or official .pth)", "the default model's"},
      {"model", "NAME", "architecture: auto, d16, d20, d24, d30, tiny, fashion_mnist", "auto (from the weights)"},
      {"mode", "mvar|var", "trajectory: mvar = scale-Markov + neighbourhood attention, var = full prefix + KV cache", "mvar"},
      {"class", "N[,N...]", "class label(s); one label is repeated over the batch", "one image per class (default model) or 0"},
      {"batch", "N", "images to generate", "number of labels"},
      {"seed", "N", "random seed (same seed + weights → same images, any thread count)", "0"},
      {"cfg", "X", "classifier-free guidance strength ≥ 0 (t = cfg·s/(S−1))", "model's recommendation"},
      {"top-k", "N", "keep the N most likely tokens (0 = off, 1 = greedy)", "model's recommendation"},
      {"top-p", "X", "nucleus sampling mass in (0, 1] (1 = off)", "model's recommendation"},
      {"weights", "LAYOUT", "transformer weights: inplace (fp32, zero copy), packed (fp32 GEMM panels, faster), bf16 (packed bf16, AVX512-BF16 dot products, fp32 accumulation; also the decoder's Winograd products)", "packed"},
      {"conv", "ALGO", "decoder 3×3 convolutions (at ≥ 32 px; every level with --weights bf16): winograd (F(4×4,3×3) on layers of ≤ 160 channels at ≥ 64 px, F(2×2,3×3) on the others: 2× faster decoder on AVX-512, 2.5× with --weights bf16, which keeps F(2×2)), winograd2 (F(2×2) everywhere: 24 MB less memory, 1.7× faster) or direct (exact fp32 order)", "winograd"},
      {"threads", "N", "worker threads (≥ 1)", "hardware threads"},
      {"output", "PATH", "output PNG: one grid of the batch, or PATH_000.png, PATH_001.png, ... with --separate", "mvar_out.png"},
      {"separate", "", "write one PNG per image instead of one grid", ""},
      {"columns", "N", "images per grid row (0 = square-ish)", "5 for the default model, else 0"},
      {"upscale", "N", "enlarge each image N× (nearest neighbour) when writing", "4 for images ≤ 64 px, else 1"},
      {"quiet", "", "no progress lines", ""},
  });
}

long peak_rss_bytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss * 1024L;
}

}  // namespace

int main(int argc, char** argv) {
  auto args = make_args();
  try {
    args.parse(argc, argv);
  } catch (const Error& e) {
    std::fprintf(stderr, "generate: %s\n", e.what());
    return 2;
  }
  if (args.has("help")) {
    std::printf("%s", args.help(kUsage).c_str());
    return 0;
  }
  try {
    RunRequest req;
    req.mode = args.choice("mode", "mvar", {"mvar", "var"});
    req.weights = args.choice("weights", "packed", {"inplace", "packed", "bf16"});
    const std::string conv = args.choice("conv", "winograd", {"winograd", "winograd2", "direct"});
    req.winograd = conv != "direct";
    req.large_tiles = conv == "winograd";
    req.transformer = args.str("transformer");
    req.vae = args.str("vae");
    req.model = args.str("model", "auto");
    if (args.has("class")) req.labels = args.int_list("class");
    req.batch = args.integer<int>("batch", 0);
    if (args.has("batch") && req.batch < 1) throw cli::UsageError(concat("--batch must be ≥ 1, got ", req.batch));
    req.seed = args.integer<std::uint64_t>("seed", 0);
    if (args.has("cfg")) req.cfg = float(args.number("cfg", 0));
    if (args.has("top-k")) req.top_k = args.integer<int>("top-k", 0);
    if (args.has("top-p")) req.top_p = float(args.number("top-p", 0));
    req.threads = args.integer<int>("threads", int(std::max(1u, std::thread::hardware_concurrency())));
    if (req.threads < 1) throw cli::UsageError(concat("--threads must be ≥ 1, got ", req.threads));
    req.output = args.str("output", "mvar_out.png");
    req.separate = args.has("separate");
    if (args.has("columns")) req.columns = args.integer<int>("columns", 0);
    if (args.has("upscale")) req.upscale = args.integer<int>("upscale", 1);
    if (req.columns && *req.columns < 0) throw cli::UsageError(concat("--columns must be ≥ 0, got ", *req.columns));
    if (req.upscale && (*req.upscale < 1 || *req.upscale > 16))
      throw cli::UsageError(concat("--upscale must be in [1, 16], got ", *req.upscale));
    req.quiet = args.has("quiet");

    const auto t0 = std::chrono::steady_clock::now();
    const RunResult r = run_generation(req);
    const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("[generate] %d image(s) in %.3f s (transformer %.3f s, decoder %.3f s): %.3f images/s\n", r.images, total,
                r.sample_seconds, r.decode_seconds, r.images / std::max(total, 1e-9));
    const double MiB = 1048576.0;
    if (r.sampling_peak_rss)  // the phases never overlap (model_registry.hpp): one peak each
      std::printf("[generate] peak RSS %.1f MiB: sampling %.1f MiB (weights %.1f MiB, workspace %.1f MiB high-water, K/V cache %.1f MiB), "
                  "decoding %.1f MiB (convolution weights %.1f MiB, workspace %.1f MiB)\n",
                  double(std::max(r.sampling_peak_rss, r.decoding_peak_rss)) / MiB, double(r.sampling_peak_rss) / MiB,
                  double(r.weight_bytes) / MiB, double(r.workspace_high_water) / MiB, double(r.kv_bytes) / MiB,
                  double(r.decoding_peak_rss) / MiB, double(r.decoder_weight_bytes) / MiB, double(r.decoder_workspace_bytes) / MiB);
    else
      std::printf("[generate] peak RSS %.1f MiB (weights %.1f MiB transformer, then %.1f MiB decoder convolutions; workspace %.1f + %.1f MiB high-water, K/V cache %.1f MiB)\n",
                  double(peak_rss_bytes()) / MiB, double(r.weight_bytes) / MiB, double(r.decoder_weight_bytes) / MiB,
                  double(r.workspace_high_water) / MiB, double(r.decoder_workspace_bytes) / MiB, double(r.kv_bytes) / MiB);
    for (const auto& f : r.files) std::printf("[generate] wrote %s\n", f.c_str());
    return 0;
  } catch (const cli::UsageError& e) {
    std::fprintf(stderr, "generate: %s (see --help)\n", e.what());
    return 2;
  } catch (const Error& e) {
    std::fprintf(stderr, "generate: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "generate: error: %s\n", e.what());
    return 1;
  }
}
