// mvar/pipeline/pipeline.hpp — the front door: open a transformer and a VAE checkpoint (.pth or
// safetensors), recognise the model (PresetTable + the optional config.json beside the weights),
// decide the trajectory, and draw images.
//
//   mvar::Pipeline p({.transformer = "mvar-finetune-d16.pth", .vae = "vae_ch160v4096z32.pth"});
//   const mvar::Images im = p.generate({.labels = {207, 88}, .seed = 1});   // RGB8, HWC per image
//
// Memory: the two phases of a generation never share memory. generate() draws every image's f̂
// with the transformer, frees it (packed weights, and the file pages it read in place), then builds
// the decoder and decodes; the peak is the larger phase, not the sum. For long runs of many
// batches (evaluation, pipeline/evaluation.hpp) open_stream() keeps both resident instead.
//
// The mode (MVAR or VAR) is not visible in the tensors — both share one key set — so it comes from
// what the files say (decide_mode below); when nothing says it, the pipeline refuses to guess.
#pragma once

#include <array>
#include <charconv>
#include <cmath>
#include <chrono>
#include <cctype>
#include <limits>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mvar/core/buffer.hpp"
#include "mvar/core/error.hpp"
#include "mvar/core/memory_limit.hpp"
#include "mvar/core/parallel.hpp"
#include "mvar/core/process_memory.hpp"
#include "mvar/core/workspace.hpp"
#include "mvar/io/checkpoint.hpp"
#include "mvar/io/image_read.hpp"
#include "mvar/io/rgb.hpp"
#include "mvar/io/tensor_store.hpp"
#include "mvar/kernels/cpu_dispatch.hpp"
#include "mvar/model/model_description.hpp"
#include "mvar/model/image_tokenizer.hpp"
#include "mvar/model/quantizer.hpp"
#include "mvar/model/vqvae.hpp"
#include "mvar/model/vqvae_encoder.hpp"
#include "mvar/pipeline/builtin_presets.hpp"
#include "mvar/pipeline/preset.hpp"
#include "mvar/sampling/edit.hpp"
#include "mvar/sampling/rng.hpp"
#include "mvar/sampling/sampler.hpp"

namespace mvar {

/// The library's version (the CMake project version).
inline constexpr std::string_view kVersion = "0.2.0";

/// Thrown when a run is cancelled through GenerateRequest::cancel.
class Cancelled : public Error {
 public:
  using Error::Error;
};

/// How to open a model.
struct PipelineOptions {
  std::string transformer{}, vae{};   // checkpoint files (.pth or .safetensors)
  std::string description{};          // config.json; empty: "config.json" beside the transformer, if any
  std::string model = "auto";         // a preset name, or "auto" (from config.json / the tensors' shapes)
  std::optional<Mode> mode{};         // nullopt: from the checkpoint (decide_mode)
  WeightLayout layout = WeightLayout::PackedF32;
  bool winograd = true;               // decoder: Winograd form of the large 3×3 convolutions
  bool large_tiles = true;            // … with F(4×4, 3×3) where it pays (VqvaeDecoder::Options)
  int threads = 1;
};

/// What the pipeline decided when it opened the files.
struct ModelInfo {
  std::string preset;                 // the preset's name
  std::string description;            // one line
  Mode mode = Mode::Mvar;
  std::string mode_reason;            // why this mode ("--mode", "config.json", "file name var_d16.pth", …)
  Recommended recommended;            // for this mode and checkpoint
  int num_classes = 0, image_side = 0, latent_side = 0, scales = 0;
  std::vector<std::string> class_names;
  std::string transformer_file, vae_file;
  /// Label of `name`: a class name (exact, then case-insensitive), a number, "null" (the null class,
  /// unconditional generation); throws naming the name otherwise.
  int label_of(std::string_view name) const;
  /// The name of label l ("null" for num_classes), or its number as text.
  std::string name_of(int label) const;
};

/// A per-scale progress report of a generation (images i0 … i0 + count − 1).
struct Progress {
  enum class Phase { Sampling, Decoding } phase = Phase::Sampling;
  int scale = 0, scales = 0, side = 0;  // sampling
  int image = 0, images = 0;            // decoding: images decoded so far
  double seconds = 0;                   // of this scale / this image
};

/// One generation request. Unset sampling settings take the model's recommended ones.
struct GenerateRequest {
  std::vector<int> labels{};          // one per image; num_classes = the null class
  std::uint64_t seed = 0;
  std::uint64_t first_index = 0;      // image i uses RNG stream first_index + i
  std::optional<float> cfg{}, top_p{};
  std::optional<int> top_k{};
  bool more_smooth = false;           // official more_smooth: Gumbel-softmax embeddings (SampleOptions)
  bool keep_planes = false;           // also return the decoder's float output (before the clamp)
  std::function<void(const Progress&)> on_progress{};
  std::function<bool()> cancel{};     // polled between scales and images: true stops with Cancelled
};

/// Images in RGB8 (HWC, image after image) and, on request, the decoder's float planes.
struct Images {
  int count = 0, side = 0;
  std::vector<std::uint8_t> rgb;      // count · side · side · 3
  std::vector<float> planes;          // count · 3 · side · side (keep_planes)
  std::vector<int> labels;
  SampleOptions settings;             // the settings used (callbacks cleared)
  // Measurements of the run.
  double sample_seconds = 0, decode_seconds = 0;
  std::size_t weight_bytes = 0, decoder_weight_bytes = 0, workspace_bytes = 0, decoder_workspace_bytes = 0, kv_bytes = 0;
  /// Thread-local scratch (GEMM packing, Winograd tiles, sampling rows) at its high-water mark
  /// in each phase (core/buffer.hpp, ThreadScratch): the rest of the scratch, outside the workspaces.
  std::size_t sampling_thread_scratch = 0, decoding_thread_scratch = 0;
  WeightLayout layout = WeightLayout::PackedF32;
  const char* conv_form = "";
  /// Resident-set peaks in bytes where /proc tells (else 0): the whole run so far, and the
  /// sampling phase (read before the decoder exists; the high-water mark is never reset, so tools
  /// outside the process see the true peak too).
  std::size_t peak_rss = 0, sampling_peak_rss = 0;
  std::span<const std::uint8_t> image(int i) const {
    const std::size_t one = std::size_t(side) * side * 3;
    return {rgb.data() + one * std::size_t(i), one};
  }
};

/// A zero-shot edit (VAR's demo_zero_shot_edit.ipynb, SPEC §2.5): the image's own tokens are kept
/// inside the kept region at every scale, the rest is generated under GenerateRequest's labels
/// (the null class for plain in-painting). Either a box or a mask image.
struct EditRequest {
  std::string image{};                          // PNG or JPEG to edit
  std::optional<std::array<double, 4>> box{};   // y0, x0, y1, x1: fractions of the model's square
  std::string mask{};                           // or a mask image over the same square: white = regenerate
  bool outpaint = false;                        // keep the box's inside (the mask's white) instead
};

/// An image as the model sees it: its square input, its token pyramid and final f̂, and (when
/// asked for) the decoded reconstruction with its PSNR against the input.
struct EncodedImage {
  int side = 0;
  std::vector<float> input;                     // [3, side, side] in [−1, 1] (crop + resize of ImageFit)
  std::vector<std::int32_t> tokens;             // every scale, scale s at VectorQuantizer::token_offset(s)
  std::vector<float> fhat;                      // [cvae, P, P]
  std::vector<std::uint8_t> reconstruction;     // RGB8 [side, side, 3] (reconstruct only)
  double psnr_db = std::nan("");                // of the reconstruction (reconstruct only)
};

/// Where the mode of a transformer checkpoint comes from, in this order: config.json's "model"
/// ("var" / "mvar"), the file's metadata ("model", as mvar's converter and the default model
/// write it), MVAR's training wrapper key "mvar_wo_ddp" in a .pth, and the official file names
/// (`var_d16.pth` → VAR, `mvar-d16.pth`, `mvar-finetune-d16.pth` → MVAR; also the converter's
/// recorded source name). nullopt when none of them says.
inline std::optional<std::pair<Mode, std::string>> decide_mode(const TensorStore& st, const std::string& description_model,
                                                               const std::string& description_path) {
  auto parse = [](std::string v) -> std::optional<Mode> {
    for (auto& ch : v) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    if (v == "var") return Mode::Var;
    if (v == "mvar") return Mode::Mvar;
    return std::nullopt;
  };
  if (auto m = parse(description_model)) return std::pair{*m, concat(std::filesystem::path(description_path).filename().string(), " says \"model\": \"", description_model, "\"")};
  const auto& meta = st.metadata();
  if (auto it = meta.find("model"); it != meta.end())
    if (auto m = parse(it->second)) return std::pair{*m, concat("the file's metadata says model=", it->second)};
  if (auto it = meta.find("format"); it != meta.end() && it->second == "pth:mvar_wo_ddp")
    return std::pair{Mode::Mvar, std::string("the .pth wraps its weights in MVAR's 'mvar_wo_ddp'")};
  auto by_name = [](std::string name) -> std::optional<Mode> {
    name = std::filesystem::path(name).filename().string();
    for (auto& ch : name) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    if (name.rfind("mvar", 0) == 0) return Mode::Mvar;
    if (name.rfind("var_", 0) == 0 || name.rfind("var-", 0) == 0) return Mode::Var;
    return std::nullopt;
  };
  if (auto it = meta.find("source"); it != meta.end())
    if (auto m = by_name(it->second)) return std::pair{*m, concat("converted from ", it->second)};
  if (auto m = by_name(st.source())) return std::pair{*m, concat("file name ", std::filesystem::path(st.source()).filename().string())};
  return std::nullopt;
}

/// Labels of `count` images drawn uniformly over [0, num_classes) from `seed` (the official
/// `label_B=None`), on an RNG stream of their own: the same seed gives the same labels anywhere.
inline std::vector<int> random_labels(int count, int num_classes, std::uint64_t seed, std::uint64_t first_index = 0) {
  const CounterRng rng(seed ^ 0x6c6162656c73ULL);  // "labels": apart from the token streams of this seed
  std::vector<int> out;
  for (int i = 0; i < count; ++i) {
    const double u = rng.uniform(first_index + std::uint64_t(i), 0xFFFFFFFFu, 0);
    out.push_back(std::min(num_classes - 1, int(u * num_classes)));
  }
  return out;
}

class ImageStream;

class Pipeline {
 public:
  explicit Pipeline(PipelineOptions o, const PresetTable& table = builtin_presets())
      : opts_(std::move(o)), pool_(std::max(1, opts_.threads)) {
    if (opts_.transformer.empty() || opts_.vae.empty())
      throw Error("pipeline: give both a transformer and a VAE checkpoint");
    for (const auto& f : {opts_.transformer, opts_.vae})
      if (!std::filesystem::exists(f)) throw Error(concat(f, ": no such file"));
    std::optional<ModelDescription> desc;
    std::string desc_path = opts_.description;
    if (desc_path.empty()) {
      const auto beside = std::filesystem::path(opts_.transformer).parent_path() / "config.json";
      if (std::filesystem::exists(beside)) desc_path = beside.string();
    }
    if (!desc_path.empty()) desc = load_model_description(desc_path);
    transformer_ = load_checkpoint(opts_.transformer);
    vae_ = load_checkpoint(opts_.vae);

    // The preset: named, else from config.json's architecture, else from the tensors' shapes.
    const Preset* p = nullptr;
    if (opts_.model != "auto") {
      p = table.find(opts_.model);
      if (!p) throw Error(concat("unknown model '", opts_.model, "' (", table.names(), ")"));
      if (desc && !same_architecture(desc->arch, p->arch))
        throw Error(concat(desc_path, ": describes another architecture than the preset '", p->name, "'"));
    } else if (desc) {
      p = table.find_architecture(desc->arch);
      if (!p) throw Error(concat(desc_path, ": describes an architecture no preset has (", table.names(), ")"));
    } else {
      p = &table.recognise(transformer_);
    }
    preset_ = *p;
    if (desc) {  // sizes taken from the description are checked against the files first
      desc->check_against(transformer_);
      desc->check_vae_against(vae_);
    }
    if (desc) {  // the description's VAE sizes, settings and names win over the preset's
      preset_.vae = desc->vae;
      preset_.recommended_mvar = preset_.recommended_var = desc->rec;
      preset_.recommended_by_file.clear();
      if (!desc->class_names.empty()) preset_.class_names = desc->class_names;
    }

    info_.preset = preset_.name;
    info_.description = preset_.description;
    if (opts_.mode) {
      info_.mode = *opts_.mode;
      info_.mode_reason = "chosen by the caller";
    } else if (auto m = decide_mode(transformer_, desc ? desc->kind : std::string(), desc_path)) {
      info_.mode = m->first;
      info_.mode_reason = m->second;
    } else {
      throw Error(concat(opts_.transformer, ": cannot tell whether this checkpoint holds VAR or MVAR weights (they share one "
                         "key set; no config.json, metadata, wrapper key or official file name says): choose the mode "
                         "(--mode var or --mode mvar)"));
    }
    info_.recommended = preset_.recommended(info_.mode, std::filesystem::path(opts_.transformer).stem().string());
    info_.num_classes = preset_.arch.num_classes;
    info_.latent_side = preset_.arch.patch_nums.last();
    info_.image_side = preset_.vae.image_side(info_.latent_side);
    info_.scales = preset_.arch.num_scales();
    info_.class_names = preset_.class_names;
    info_.transformer_file = opts_.transformer;
    info_.vae_file = opts_.vae;
    // A VAE file the decoder cannot use is refused now, not after the sampling work.
    VqvaeDecoder::check_weights(vae_, preset_.vae);
  }

  const ModelInfo& info() const { return info_; }
  const Preset& preset() const { return preset_; }
  const PipelineOptions& options() const { return opts_; }
  const TensorStore& transformer_store() const { return transformer_; }
  const TensorStore& vae_store() const { return vae_; }
  ThreadPool& pool() { return pool_; }

  /// The settings a request resolves to (recommended ones where it leaves them unset), checked.
  SampleOptions settings(const GenerateRequest& r) const {
    SampleOptions o;
    o.cfg = r.cfg.value_or(info_.recommended.cfg);
    o.top_k = r.top_k.value_or(info_.recommended.top_k);
    o.top_p = r.top_p.value_or(info_.recommended.top_p);
    o.seed = r.seed;
    o.first_index = r.first_index;
    o.more_smooth = r.more_smooth;
    validate_options(o, r.labels, info_.num_classes, int(r.labels.size()), preset_.arch.null_class);
    return o;
  }

  /// Refuses, before any work, a batch whose workspace or images cannot fit this machine.
  void check_batch(std::size_t images) const {
    if (images == 0) throw Error("pipeline: no images requested (give at least one label)");
    const int side = info_.image_side;
    const std::string what = concat("batch ", images, ": the decoded images of ", side, "×", side, " pixels");
    check_allocation(checked_bytes({images, std::uint64_t(side), std::uint64_t(side), 3}, 1, what), what);
    if (images > std::size_t(std::numeric_limits<int>::max() / 2)) throw Error(concat("pipeline: batch of ", images, " is too large"));
  }

  /// Draws labels.size() images: sampling phase, then (transformer freed) decoding phase.
  Images generate(const GenerateRequest& r) { return generate_with(r, nullptr); }

  /// How the model's square input is made from an image (the preset's fit; grey models average
  /// the channels).
  ImageFit image_fit() const { return ImageFit{info_.image_side, preset_.input_inner, -1.0f}; }

  /// Reads a PNG or JPEG and encodes it into its token pyramid (official img_to_idxBl); with
  /// `reconstruct`, also decodes it back (the tokenizer's round trip) and measures the PSNR.
  /// The encoder (and decoder) live for this call only. Throws naming the file when the VAE has
  /// no encoder or the image cannot be read.
  EncodedImage encode_image(const std::string& image, bool reconstruct = false) {
    if (!VqvaeEncoder::has_encoder(vae_))
      throw Error(concat(opts_.vae, ": holds no encoder (encoder.*, quant_conv.*): encoding and editing need the full VQVAE "
                         "checkpoint (the official vae_ch160v4096z32.pth has it)"));
    const Rgb8Image img = read_image(image);
    EncodedImage e;
    e.side = info_.image_side;
    const std::size_t plane = std::size_t(e.side) * e.side;
    e.input.assign(3 * plane, 0.0f);
    const TensorView<float, 3> in(e.input.data(), {3, e.side, e.side});
    to_model_input(img, image_fit(), in);
    if (preset_.grayscale)
      for (std::size_t i = 0; i < plane; ++i) {
        const float g = (e.input[i] + e.input[plane + i] + e.input[2 * plane + i]) / 3.0f;
        e.input[i] = e.input[plane + i] = e.input[2 * plane + i] = g;
      }
    const VqvaeEncoder enc(vae_, preset_.vae, VqvaeEncoder::Options{opts_.winograd, opts_.large_tiles, info_.latent_side});
    const VectorQuantizer quant = make_quantizer();
    const ImageTokenizer tok(enc, quant);
    e.tokens.assign(tok.total_tokens(), 0);
    e.fhat.assign(tok.fhat_floats(), 0.0f);
    const TensorView<float, 3> fhat(e.fhat.data(), {preset_.arch.cvae, info_.latent_side, info_.latent_side});
    if (!reconstruct) {
      Workspace ws(tok.workspace_bytes());
      tok.encode(pool_, in, e.tokens, fhat, ws);
      return e;
    }
    const VqvaeDecoder dec = make_decoder();
    Workspace ws(tok.workspace_bytes(&dec));
    std::vector<float> rec(3 * plane);
    const TensorView<float, 3> rv(rec.data(), {3, e.side, e.side});
    e.psnr_db = tok.reconstruct(pool_, dec, in, e.tokens, fhat, rv, ws);
    e.reconstruction.assign(3 * plane, 0);
    to_rgb8(rv, e.reconstruction);
    return e;
  }

  /// The per-scale keep mask of an edit on this model's schedule.
  EditMask edit_mask(const EditRequest& e) const {
    std::vector<int> pn;
    for (int s = 0; s < preset_.arch.num_scales(); ++s) pn.push_back(preset_.arch.patch_nums[s]);
    if (e.box.has_value() == !e.mask.empty())
      throw Error("edit: give either a box or a mask image (exactly one)");
    if (e.box) {
      const auto& b = *e.box;
      return EditMask::from_box(pn, b[0], b[1], b[2], b[3], /*inpainting=*/!e.outpaint);
    }
    const int S = info_.image_side;
    return EditMask::from_image(pn, to_grey_square(read_image(e.mask), S), S, S, /*invert=*/e.outpaint);
  }

  /// A zero-shot edit of e.image: encode (encoder freed), sample with the image's tokens forced
  /// inside the kept region (transformer freed), decode. r.labels gives one edited image per label.
  Images edit(const EditRequest& e, const GenerateRequest& r) {
    const EditMask mask = edit_mask(e);  // a bad box or mask is refused before the encoder runs
    check_batch(r.labels.size());
    (void)settings(r);
    const EncodedImage enc = encode_image(e.image);
    return generate_with(r, [&](SampleOptions& o) { apply_edit(o, mask, enc.tokens); });
  }

 private:
  Images generate_with(const GenerateRequest& r, const std::function<void(SampleOptions&)>& prepare) {
    check_batch(r.labels.size());
    SampleOptions o = settings(r);
    if (prepare) prepare(o);
    Images out;
    out.count = int(r.labels.size());
    out.side = info_.image_side;
    out.labels = r.labels;
    out.settings = o;
    out.settings.force_tokens = nullptr;  // the settings as values, without the edit's callbacks
    out.settings.forced_positions = nullptr;
    o.on_scale = [&](const ScaleReport& s) {
      if (r.cancel && r.cancel()) throw Cancelled("generation cancelled");
      if (r.on_progress) r.on_progress({Progress::Phase::Sampling, s.scale, s.scales, s.side, 0, 0, s.seconds});
    };
    if (r.cancel && r.cancel()) throw Cancelled("generation cancelled");
    reset_thread_scratch_high_water();
    Generation g;
    {
      const VectorQuantizer quant = make_quantizer();
      auto engine = preset_.make_engine({transformer_, quant, info_.mode, opts_.layout, pool_, out.count});
      out.weight_bytes = engine->weight_bytes();
      out.layout = engine->layout();
      g = engine->generate(r.labels, o);
    }
    // The transformer is gone; drop the file pages it read in place or that are still cached in us.
    for (const auto& t : transformer_.tensors()) transformer_.release_pages(t);
    out.sample_seconds = g.seconds;
    out.workspace_bytes = g.workspace_high_water;
    out.kv_bytes = g.kv_bytes;
    out.sampling_peak_rss = std::size_t(std::max(0L, process_status_kib("VmHWM"))) * 1024;
    out.sampling_thread_scratch = thread_scratch_high_water();
    reset_thread_scratch_high_water();

    const VqvaeDecoder decoder = make_decoder();
    decode_all(decoder, g, r, out);
    out.decoding_thread_scratch = thread_scratch_high_water();
    out.peak_rss = std::size_t(std::max(0L, process_status_kib("VmHWM"))) * 1024;
    return out;
  }

 public:
  /// Both phases resident, for many batches of at most max_batch images (evaluation runs).
  ImageStream open_stream(int max_batch, const GenerateRequest& settings);

  VectorQuantizer make_quantizer() const {
    std::vector<int> pn;
    for (int s = 0; s < preset_.arch.num_scales(); ++s) pn.push_back(preset_.arch.patch_nums[s]);
    return VectorQuantizer(vae_, pn, preset_.arch.cvae, preset_.arch.vocab, preset_.vae.n_phi, preset_.vae.quant_resi);
  }
  /// bf16 weights also give the decoder's Winograd layers bf16 products — except on AMX CPUs,
  /// where those (AVX512-BF16) products are slower than fp32 (docs/performance.md).
  VqvaeDecoder make_decoder() const {
    const bool bf16 = opts_.layout == WeightLayout::PackedBF16 && !cpu_features().amx;
    return VqvaeDecoder(vae_, preset_.vae,
                        VqvaeDecoder::Options{opts_.winograd, bf16 ? Precision::BF16 : Precision::F32,
                                              opts_.large_tiles, info_.latent_side});
  }

  /// Decodes every image of g into out (RGB8, and float planes on request).
  void decode_all(const VqvaeDecoder& decoder, const Generation& g, const GenerateRequest& r, Images& out) {
    const int side = out.side, n = out.count;
    const std::size_t plane = std::size_t(3) * side * side;
    out.decoder_weight_bytes = decoder.conv_bytes();
    out.conv_form = decoder.conv_form();
    const auto t0 = std::chrono::steady_clock::now();
    Workspace ws(decoder.workspace_bytes(info_.latent_side));
    Buffer<float> img(plane);
    out.rgb.assign(std::size_t(n) * side * side * 3, 0);
    if (r.keep_planes) out.planes.assign(std::size_t(n) * plane, 0.0f);
    for (int b = 0; b < n; ++b) {
      if (r.cancel && r.cancel()) throw Cancelled("generation cancelled");
      const auto ti = std::chrono::steady_clock::now();
      decoder.decode(pool_, g.image_fhat(b), TensorView<float, 3>(img.data(), {3, side, side}), ws);
      to_rgb8(TensorView<const float, 3>(img.data(), {3, side, side}), std::span<std::uint8_t>(out.rgb).subspan(std::size_t(b) * side * side * 3, std::size_t(side) * side * 3));
      if (r.keep_planes) std::copy(img.data(), img.data() + plane, out.planes.begin() + std::ptrdiff_t(std::size_t(b) * plane));
      if (r.on_progress)
        r.on_progress({Progress::Phase::Decoding, 0, 0, 0, b + 1, n, std::chrono::duration<double>(std::chrono::steady_clock::now() - ti).count()});
    }
    out.decode_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    out.decoder_workspace_bytes = ws.high_water();
  }

 private:
  PipelineOptions opts_;
  ThreadPool pool_;
  TensorStore transformer_, vae_;
  Preset preset_;
  ModelInfo info_;
};

/// Both phases resident: draw batches of images one after another (pipeline/evaluation.hpp's
/// image source). Image i of a call uses RNG stream first_index + i, so any split of a run into
/// batches, shards or processes gives the same images.
class ImageStream {
 public:
  ImageStream(Pipeline& p, int max_batch, const GenerateRequest& settings)
      : p_(p), max_batch_(max_batch), quant_(p.make_quantizer()), decoder_(p.make_decoder()) {
    p.check_batch(std::size_t(std::max(1, max_batch)));
    GenerateRequest probe = settings;
    probe.labels.assign(1, 0);
    opts_ = p.settings(probe);
    engine_ = p.preset().make_engine({p.transformer_store(), quant_, p.info().mode, p.options().layout, p.pool(), max_batch});
  }
  int side() const { return p_.info().image_side; }
  /// Fills rgb (labels.size() · side² · 3 bytes) with the images of `labels`, streams first_index, … .
  void draw(std::span<const int> labels, std::uint64_t first_index, std::span<std::uint8_t> rgb) {
    if (labels.empty() || int(labels.size()) > max_batch_)
      throw Error(concat("image stream: a batch of ", labels.size(), " images (1 to ", max_batch_, " allowed)"));
    const std::size_t one = std::size_t(side()) * side() * 3;
    if (rgb.size() != one * labels.size()) throw Error("image stream: output buffer size does not match the batch");
    SampleOptions o = opts_;
    o.first_index = first_index;
    const Generation g = engine_->generate(labels, o);
    GenerateRequest r;
    Images out;
    out.count = int(labels.size());
    out.side = side();
    p_.decode_all(decoder_, g, r, out);
    std::copy(out.rgb.begin(), out.rgb.end(), rgb.begin());
  }
  const SampleOptions& settings() const { return opts_; }

 private:
  Pipeline& p_;
  int max_batch_;
  VectorQuantizer quant_;
  VqvaeDecoder decoder_;
  SampleOptions opts_;
  std::unique_ptr<SamplingEngine> engine_;
};

inline ImageStream Pipeline::open_stream(int max_batch, const GenerateRequest& settings) { return ImageStream(*this, max_batch, settings); }

inline int ModelInfo::label_of(std::string_view name) const {
  if (name == "null") return num_classes;
  for (std::size_t i = 0; i < class_names.size(); ++i)
    if (class_names[i] == name) return int(i);
  auto lower = [](std::string_view v) {
    std::string s(v);
    for (auto& ch : s) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    return s;
  };
  for (std::size_t i = 0; i < class_names.size(); ++i)
    if (lower(class_names[i]) == lower(name)) return int(i);
  long long v = 0;
  const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), v);
  if (ec == std::errc::result_out_of_range)
    throw Error(concat("class label ", name, " is out of range [0, ", num_classes - 1, "] (", num_classes, " = null)"));
  if (ec == std::errc() && end == name.data() + name.size() && !name.empty()) {
    if (v < 0 || v > num_classes)
      throw Error(concat("class label ", v, " is out of range [0, ", num_classes - 1, "] (", num_classes, " = null)"));
    return int(v);
  }
  throw Error(concat("unknown class '", name, "'", class_names.empty() ? " (this model's classes are numbers 0 to " + std::to_string(num_classes - 1) + ")"
                                                                        : " (a class name of this model, a number, or null)"));
}

inline std::string ModelInfo::name_of(int label) const {
  if (label == num_classes) return "null";
  if (label >= 0 && std::size_t(label) < class_names.size()) return class_names[std::size_t(label)];
  return std::to_string(label);
}

}  // namespace mvar
