// generate — class-conditional image generation with MVAR (or VAR) from the command line: a thin
// client of mvar::Pipeline (include/mvar/pipeline/). It parses options into typed values, prints
// progress and results, and writes PNGs; everything else is the library's.
//
//   generate                                  # the default model shipped in models/
//   generate --transformer mvar-d16.pth --vae vae_ch160v4096z32.pth --class 207 --seed 1
//   generate --info mvar_out.png              # the settings an image was made with
//
// Exit codes: 0 success, 1 runtime error (bad file, ...), 2 bad command line.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cli_args.hpp"
#include "default_model.hpp"
#include "mvar/mvar.hpp"

namespace fs = std::filesystem;
using cli::UsageError;
using mvar::concat;

namespace {

constexpr int kMaxThreads = 1024;

const char* kUsage =
    "usage: generate [options]\n"
    "Draws class-conditional images with MVAR (scale-Markov, no KV cache) or VAR (KV cache) on the CPU.\n"
    "With no weights given it uses the small default model shipped with mvar.";

cli::Args make_args() {
  return cli::Args({
      {"help", "", "show this help and exit", ""},
      {"version", "", "print mvar's version and exit", ""},
      {"info", "PNG", "print the generation settings stored in an image made by generate, and exit", ""},
      {"transformer", "FILE", "transformer weights (.safetensors or official .pth)", "the default model"},
      {"vae", "FILE", "VQVAE weights (.safetensors or official .pth)", "the default model's"},
      {"config", "FILE", "the model's config.json (architecture, VAE sizes, settings, class names)", "config.json beside --transformer, if any"},
      {"model", "NAME", "architecture preset: auto, d16, d20, d24, d30, d36, tiny, saln512_tiny, fashion_mnist", "auto (from config.json or the weights)"},
      {"mode", "mvar|var", "trajectory: mvar = scale-Markov + neighbourhood attention, var = full prefix + KV cache", "from the checkpoint (config.json, metadata, official file name); refused when nothing says"},
      {"class", "C[,C...]", "class labels: numbers, class names (e.g. Sneaker, 'golden retriever'), null (unconditional) or random; one label is repeated over the batch", "one image per class (default model) or 0"},
      {"batch", "N", "images to generate", "number of labels"},
      {"seed", "N", "random seed (same seed + weights → same images, any thread count or batch)", "0"},
      {"cfg", "X", "classifier-free guidance strength ≥ 0 (t = cfg·s/(S−1))", "model's recommendation"},
      {"top-k", "N", "keep the N most likely tokens (0 = off, 1 = greedy)", "model's recommendation"},
      {"top-p", "X", "nucleus sampling mass in (0, 1] (1 = off)", "model's recommendation"},
      {"more-smooth", "", "official more_smooth: f̂ gets the Gumbel-softmax mix of codebook entries instead of the drawn token's (visual quality; not with --top-k 1)", "off"},
      {"weights", "LAYOUT", "transformer weights: inplace (fp32, zero copy), packed (fp32 GEMM panels, faster), bf16 (packed bf16: AMX or AVX512-BF16 dot products, fp32 accumulation; also the decoder's Winograd products where AMX is absent), int8 (per-output-channel scales, activations quantised per row: AMX-INT8, AVX512-VNNI or AVX2)", "packed"},
      {"isa", "LEVEL", "cap the run-time kernel choice: portable, avx2, avx512 or amx (also MVAR_ISA)", "the best this CPU has"},
      {"conv", "ALGO", "decoder 3×3 convolutions: winograd (F(4×4,3×3) on layers of ≤ 160 channels at ≥ 64 px, F(2×2,3×3) elsewhere), winograd2 (F(2×2) everywhere: less memory) or direct (exact fp32 order)", "winograd"},
      {"threads", "N", concat("worker threads (1 to ", kMaxThreads, ")"), "hardware threads"},
      {"output", "PATH", "output PNG: one grid of the batch, or PATH_000.png, PATH_001.png, ... with --separate", "mvar_out.png"},
      {"separate", "", "write one PNG per image instead of one grid", ""},
      {"columns", "N", "images per grid row (0 = square-ish)", "5 for the default model, else 0"},
      {"upscale", "N", "enlarge each image N× (nearest neighbour) when writing", "4 for images ≤ 64 px, else 1"},
      {"edit", "IMAGE", "zero-shot editing of a PNG or JPEG (needs a VAE with its encoder): keep the image's tokens outside --box (or --mask), generate the rest under --class", ""},
      {"box", "Y0,X0,Y1,X1", "the region to regenerate, as fractions of the image's square (0 ≤ y0 < y1 ≤ 1, 0 ≤ x0 < x1 ≤ 1)", ""},
      {"mask", "IMAGE", "instead of --box: a mask image over the same square, white = regenerate", ""},
      {"outpaint", "", "keep the box's inside (the mask's white) and regenerate the rest", "in-painting"},
      {"reconstruct", "IMAGE", "encode a PNG or JPEG into tokens and decode it back (writes --output, prints the PSNR)", ""},
      {"tokens", "FILE", "with --reconstruct: also write the image's token pyramid (safetensors idx.s0 … )", ""},
      {"quiet", "", "no progress lines", ""},
  });
}

/// Everything the command line asks for, as typed values.
struct Request {
  mvar::PipelineOptions pipeline;
  std::vector<std::string> classes;  // as typed: names, numbers, null, random
  int batch = 0;
  mvar::GenerateRequest gen;
  std::string output = "mvar_out.png";
  bool separate = false, quiet = false, default_model = false;
  std::optional<mvar::EditRequest> edit;
  std::string reconstruct, tokens;
  std::optional<int> columns, upscale;
};

Request parse_request(const cli::Args& args) {
  Request q;
  auto& p = q.pipeline;
  const std::string mode = args.choice("mode", "auto", {"auto", "mvar", "var"});
  if (mode != "auto") p.mode = mode == "var" ? mvar::Mode::Var : mvar::Mode::Mvar;
  const std::string weights = args.choice("weights", "packed", {"inplace", "packed", "bf16", "int8"});
  p.layout = weights == "bf16"      ? mvar::WeightLayout::PackedBF16
             : weights == "int8"    ? mvar::WeightLayout::PackedInt8
             : weights == "inplace" ? mvar::WeightLayout::InPlace
                                    : mvar::WeightLayout::PackedF32;
  if (args.has("isa")) {
    const auto isa = mvar::parse_isa(args.str("isa"));
    if (!isa) throw UsageError(concat("--isa must be 'portable', 'avx2', 'avx512' or 'amx', got '", args.str("isa"), "'"));
    mvar::set_isa_limit(*isa);
  }
  const std::string conv = args.choice("conv", "winograd", {"winograd", "winograd2", "direct"});
  p.winograd = conv != "direct";
  p.large_tiles = conv == "winograd";
  for (const char* f : {"transformer", "vae", "config", "output"})
    if (args.has(f) && args.str(f).empty()) throw UsageError(concat("--", f, " needs a file name, got an empty one"));
  if (args.has("transformer") != args.has("vae")) throw UsageError("give both --transformer and --vae, or neither (the default model)");
  q.default_model = !args.has("transformer");
  p.transformer = args.str("transformer");
  p.vae = args.str("vae");
  p.description = args.str("config");
  p.model = args.str("model", "auto");
  if (args.has("class")) q.classes = args.list("class");
  q.batch = args.integer<int>("batch", 0);
  if (args.has("batch") && q.batch < 1) throw UsageError(concat("--batch must be ≥ 1, got ", q.batch));
  q.gen.seed = args.integer<std::uint64_t>("seed", 0);
  if (args.has("cfg")) q.gen.cfg = float(args.number("cfg", 0));
  if (args.has("top-k")) q.gen.top_k = args.integer<int>("top-k", 0);
  if (args.has("top-p")) q.gen.top_p = float(args.number("top-p", 0));
  q.gen.more_smooth = args.has("more-smooth");
  p.threads = args.integer<int>("threads", int(std::clamp(std::thread::hardware_concurrency(), 1u, unsigned(kMaxThreads))));
  if (p.threads < 1 || p.threads > kMaxThreads) throw UsageError(concat("--threads must be in [1, ", kMaxThreads, "], got ", p.threads));
  q.output = args.str("output", "mvar_out.png");
  q.separate = args.has("separate");
  if (args.has("columns")) q.columns = args.integer<int>("columns", 0);
  if (args.has("upscale")) q.upscale = args.integer<int>("upscale", 1);
  if (q.columns && *q.columns < 0) throw UsageError(concat("--columns must be ≥ 0, got ", *q.columns));
  if (q.upscale && (*q.upscale < 1 || *q.upscale > 16)) throw UsageError(concat("--upscale must be in [1, 16], got ", *q.upscale));
  q.quiet = args.has("quiet");
  for (const char* f : {"edit", "mask", "reconstruct", "tokens"})
    if (args.has(f) && args.str(f).empty()) throw UsageError(concat("--", f, " needs a file name, got an empty one"));
  if (args.has("edit")) {
    mvar::EditRequest e;
    e.image = args.str("edit");
    e.mask = args.str("mask");
    e.outpaint = args.has("outpaint");
    if (args.has("box") == args.has("mask")) throw UsageError("--edit needs exactly one of --box and --mask");
    if (args.has("box")) {
      const auto parts = args.list("box");
      if (parts.size() != 4) throw UsageError(concat("--box takes four fractions y0,x0,y1,x1, got '", args.str("box"), "'"));
      std::array<double, 4> b{};
      for (std::size_t i = 0; i < 4; ++i) {
        std::size_t used = 0;
        try {
          b[i] = std::stod(parts[i], &used);
        } catch (...) {
          used = 0;
        }
        if (used == 0 || used != parts[i].size()) throw UsageError(concat("--box: '", parts[i], "' is not a number"));
      }
      e.box = b;
    }
    q.edit = e;
  } else {
    for (const char* f : {"box", "mask", "outpaint"})
      if (args.has(f)) throw UsageError(concat("--", f, " goes with --edit"));
  }
  q.reconstruct = args.str("reconstruct");
  q.tokens = args.str("tokens");
  if (!q.tokens.empty() && q.reconstruct.empty()) throw UsageError("--tokens goes with --reconstruct");
  if (q.edit && !q.reconstruct.empty()) throw UsageError("--edit and --reconstruct are separate runs: give one");
  return q;
}

/// The labels of the run from --class and --batch (names resolved by the model's class names).
std::vector<int> resolve_labels(const Request& q, const mvar::Pipeline& p) {
  const mvar::ModelInfo& info = p.info();
  std::vector<int> labels;
  int batch = q.batch;
  if (q.classes.empty() && q.edit) {  // an edit without a class: plain in-/out-painting (the null class)
    labels.assign(std::size_t(std::max(batch, 1)), info.num_classes);
    return labels;
  }
  if (q.classes.empty()) {
    if (batch == 0) batch = q.default_model ? info.num_classes : 1;  // one image per class of the default model
    p.check_batch(std::size_t(batch));  // before a label of it exists
    for (int i = 0; i < batch; ++i) labels.push_back(i % info.num_classes);
    return labels;
  }
  for (const auto& c : q.classes)
    if (c.empty()) {
      std::string given;
      for (std::size_t i = 0; i < q.classes.size(); ++i) given += (i ? "," : "") + q.classes[i];
      throw UsageError(concat("option '--class': an empty label in '", given, "'"));
    }
  const bool repeat = q.classes.size() == 1 && batch > 1;
  if (!repeat && batch != 0 && std::size_t(batch) != q.classes.size())
    throw UsageError(concat("--batch ", batch, " disagrees with the ", q.classes.size(), " labels given to --class"));
  const std::size_t n = repeat ? std::size_t(batch) : q.classes.size();
  p.check_batch(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::string& c = q.classes[repeat ? 0 : i];
    if (c == "random") {
      labels.push_back(mvar::random_labels(1, info.num_classes, q.gen.seed, i)[0]);
      continue;
    }
    try {
      labels.push_back(info.label_of(c));
    } catch (const mvar::Error& e) {
      throw UsageError(e.what());
    }
  }
  return labels;
}

/// The settings of image i (or of the grid, i = −1) as the PNG's "parameters" text.
std::vector<mvar::PngText> parameters_text(const Request& q, const mvar::Pipeline& p, const mvar::Images& im, int i) {
  const auto& s = im.settings;
  std::string classes, streams;
  if (i >= 0) {
    classes = p.info().name_of(im.labels[std::size_t(i)]);
    streams = std::to_string(s.first_index + std::uint64_t(i));
  } else {
    for (std::size_t b = 0; b < im.labels.size(); ++b) classes += (b ? "," : "") + p.info().name_of(im.labels[b]);
    streams = concat(s.first_index, "-", s.first_index + im.labels.size() - 1);
  }
  const std::string text = concat(
      "model: ", p.info().preset, ", transformer: ", fs::path(p.info().transformer_file).filename().string(),
      ", vae: ", fs::path(p.info().vae_file).filename().string(), ", mode: ", mvar::mode_name(p.info().mode),
      ", class: ", classes, ", seed: ", s.seed, ", stream: ", streams, ", cfg: ", s.cfg, ", top-k: ", s.top_k,
      ", top-p: ", s.top_p, s.more_smooth ? ", more_smooth" : "", ", weights: ", mvar::layout_name(im.layout), ", mvar: ", mvar::kVersion);
  std::string edit;
  if (q.edit) {
    edit = concat(", edit: ", fs::path(q.edit->image).filename().string(), q.edit->outpaint ? " (out-painting" : " (in-painting");
    if (q.edit->box) edit += concat(", box ", (*q.edit->box)[0], ",", (*q.edit->box)[1], ",", (*q.edit->box)[2], ",", (*q.edit->box)[3], ")");
    else edit += concat(", mask ", fs::path(q.edit->mask).filename().string(), ")");
  }
  return {{"parameters", text + edit}, {"Software", concat("mvar ", mvar::kVersion)}};
}

/// --reconstruct: the tokenizer's round trip of one image, written as --output, with its PSNR.
int reconstruct(const Request& q, mvar::Pipeline& p) {
  const mvar::EncodedImage e = p.encode_image(q.reconstruct, /*reconstruct=*/true);
  const int up = q.upscale.value_or(e.side <= 64 ? 4 : 1);
  const auto big = up == 1 ? e.reconstruction : mvar::upscale_nearest(e.reconstruction, 1, e.side, up);
  const std::string text = concat("reconstruction of ", fs::path(q.reconstruct).filename().string(), " by ",
                                  fs::path(p.info().vae_file).filename().string(), ", PSNR ", e.psnr_db, " dB, mvar ", mvar::kVersion);
  mvar::write_png(q.output, big, e.side * up, e.side * up, std::vector<mvar::PngText>{{"parameters", text}});
  if (!q.tokens.empty())
    mvar::save_token_pyramid(q.tokens, p.make_quantizer(), e.tokens,
                             {{"source", fs::path(q.reconstruct).filename().string()}, {"vae", fs::path(p.info().vae_file).filename().string()}});
  std::printf("[generate] reconstructed %s through the VQVAE (%d×%d, %zu tokens): PSNR %.2f dB\n", q.reconstruct.c_str(), e.side,
              e.side, e.tokens.size(), e.psnr_db);
  std::printf("[generate] wrote %s\n", q.output.c_str());
  if (!q.tokens.empty()) std::printf("[generate] wrote %s\n", q.tokens.c_str());
  return 0;
}

int run(const cli::Args& args) {
  Request q = parse_request(args);
  std::string default_dir;
  if (q.default_model) {
    if (q.pipeline.model != "auto" && q.pipeline.model != "fashion_mnist")
      throw UsageError(concat("--model ", q.pipeline.model, " does not describe the default model (fashion_mnist); give --transformer and --vae for another model"));
    const fs::path dir = examples::default_model_dir();
    q.pipeline.transformer = (dir / "mvar.safetensors").string();
    q.pipeline.vae = (dir / "vae.safetensors").string();
    default_dir = dir.string();
  }
  const auto t0 = std::chrono::steady_clock::now();
  mvar::Pipeline p(q.pipeline);
  const auto& info = p.info();
  if (!q.reconstruct.empty()) return reconstruct(q, p);
  q.gen.labels = resolve_labels(q, p);
  const mvar::SampleOptions s = [&] {
    try {
      return p.settings(q.gen);  // a bad cfg / top-k / top-p / label is a command-line error
    } catch (const mvar::Error& e) {
      throw UsageError(e.what());
    }
  }();
  const int side = info.image_side, up = q.upscale.value_or(side <= 64 ? 4 : 1);
  {  // Refuse what cannot be written before any sampling work.
    const std::string what = concat("the ", q.gen.labels.size(), " enlarged images of ", side * up, "² pixels");
    mvar::check_allocation(mvar::checked_bytes({q.gen.labels.size(), std::uint64_t(side * up), std::uint64_t(side * up)}, 3, what), what);
  }
  if (!q.quiet) {
    std::printf("[generate] %s, %s mode (%s), %zu image(s), cfg %.3g, top-k %d, top-p %.3g, seed %llu, %d thread(s)%s%s%s\n",
                info.preset.c_str(), mvar::mode_name(info.mode), q.pipeline.mode ? "--mode" : info.mode_reason.c_str(),
                q.gen.labels.size(), double(s.cfg), s.top_k, double(s.top_p), static_cast<unsigned long long>(s.seed),
                q.pipeline.threads, default_dir.empty() ? "" : "; the default model (", default_dir.c_str(), default_dir.empty() ? "" : ")");
    q.gen.on_progress = [](const mvar::Progress& g) {
      if (g.phase == mvar::Progress::Phase::Sampling)
        std::printf("[generate] scale %2d/%d  %3d×%-3d  %8.3f s\n", g.scale + 1, g.scales, g.side, g.side, g.seconds);
      else
        std::printf("[generate] decoded image %d/%d\n", g.image, g.images);
      std::fflush(stdout);
    };
  }
  if (q.edit) {
    try {
      (void)p.edit_mask(*q.edit);  // a bad box or mask is a command-line error, before any work
    } catch (const mvar::Error& e) {
      throw UsageError(e.what());
    }
  }
  const mvar::Images im = q.edit ? p.edit(*q.edit, q.gen) : p.generate(q.gen);
  const double MiB = 1048576.0;
  if (!q.quiet)
    std::printf("[generate] %s (%s); decoded with %s decoder convolutions (%.1f MiB)\n", info.description.c_str(),
                mvar::layout_name(im.layout), im.conv_form, double(im.decoder_weight_bytes) / MiB);
  const auto enlarged = up == 1 ? im.rgb : mvar::upscale_nearest(im.rgb, im.count, side, up);
  const int columns = q.columns.value_or(q.default_model && im.count == info.num_classes ? 5 : 0);
  const auto files = mvar::write_png_batch(q.output, enlarged, im.count, side * up, side * up,
                                           q.separate ? mvar::PngBatch::Numbered : mvar::PngBatch::Grid, columns, 2,
                                           [&](int i) { return parameters_text(q, p, im, i); });
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[generate] %d image(s) in %.3f s (transformer %.3f s, decoder %.3f s): %.3f images/s\n", im.count, total,
              im.sample_seconds, im.decode_seconds, im.count / std::max(total, 1e-9));
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double peak = double(std::max<std::size_t>(im.peak_rss, std::size_t(ru.ru_maxrss) * 1024)) / MiB;
  std::printf("[generate] peak RSS %.1f MiB; sampling phase %.1f MiB (weights %.1f MiB, workspace %.1f MiB high-water, "
              "thread scratch %.1f MiB, K/V cache %.1f MiB), then decoding (convolution weights %.1f MiB, workspace %.1f MiB, "
              "thread scratch %.1f MiB)\n",
              peak, double(im.sampling_peak_rss) / MiB, double(im.weight_bytes) / MiB, double(im.workspace_bytes) / MiB,
              double(im.sampling_thread_scratch) / MiB, double(im.kv_bytes) / MiB, double(im.decoder_weight_bytes) / MiB,
              double(im.decoder_workspace_bytes) / MiB, double(im.decoding_thread_scratch) / MiB);
  for (const auto& f : files) std::printf("[generate] wrote %s\n", f.c_str());
  return 0;
}

int print_info(const std::string& png) {
  const auto text = mvar::read_png_text(png);
  bool any = false;
  for (const auto& t : text)
    if (t.key == "parameters" || t.key == "Software") std::printf("%s: %s\n", t.key.c_str(), t.value.c_str()), any = true;
  if (!any) throw mvar::Error(concat(png, ": holds no generation settings (not written by generate)"));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  auto args = make_args();
  try {
    args.parse(argc, argv);
    if (args.has("help")) return std::printf("%s", args.help(kUsage).c_str()), 0;
    if (args.has("version")) return std::printf("mvar %.*s\n", int(mvar::kVersion.size()), mvar::kVersion.data()), 0;
    if (args.has("info")) return print_info(args.str("info"));
    return run(args);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "generate: %s (see --help)\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "generate: error: %s\n", e.what());
    return 1;
  }
}
