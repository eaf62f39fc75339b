// mvar/model/model_description.hpp — a model directory's config.json (the format of
// models/fashion_mnist/config.json and of the fixtures' *.config.json): the transformer's
// architecture as a ModelConfig (to compare with a compiled preset), the VQVAE's VaeConfig, the
// recommended sampling settings and optional class names.
//
// The file is untrusted (it is downloaded beside the weights), so the reader is as strict as the
// safetensors reader (docs/reliability.md has the table of fields and bounds):
//   * the path must be a regular file of at most kMaxDescriptionBytes, JSON nested at most
//     kMaxDescriptionDepth levels (checked on the raw bytes before the parser builds anything);
//   * every field the library reads has a type and a range; integers must be exactly integral
//     (16 or 16.0, never 16.5, 1e300 or 2^64) and are range-checked as doubles / 64-bit values
//     before any narrowing; floats must be finite;
//   * arrays (patch_nums, vae_ch_mult, class_names) are bounded by their length before one
//     element is read, so nothing is written past PatchNums::side or grown without limit;
//   * the assembled ModelConfig / VaeConfig must pass their own validate();
//   * every failure is one mvar::Error "config.json: <path>: field '<name>': <why>".
// Fields the library does not read (name, training, evaluation, the fixtures' trace settings…)
// are ignored. `check_against` compares the description with a transformer's tensors and
// `check_vae_against` with a VQVAE's, so sizes taken from the description are checked values.
#pragma once

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "mvar/core/error.hpp"
#include "mvar/io/tensor_store.hpp"
#include "mvar/model/config.hpp"
#include "mvar/model/vae_config.hpp"
#include "mvar/model/weights.hpp"

namespace mvar {

/// Sampling settings a model recommends (SPEC §1.9, §3.4 for the official ones).
struct Recommended {
  float cfg = 1.5f;
  int top_k = 900;
  float top_p = 0.96f;
};

/// Bounds of the reader. The file: a real config.json is < 64 KiB (1000 ImageNet class names
/// ≈ 30 KiB); 4 MiB leaves room and bounds the parser's memory (about 10–20× the text).
inline constexpr std::size_t kMaxDescriptionBytes = std::size_t{4} << 20;
inline constexpr int kMaxDescriptionDepth = 32;    // JSON nesting (the format uses 3)
inline constexpr std::size_t kMaxClassNameBytes = 256;

/// Ranges of the fields (inclusive). Wide enough for every official model (d36: depth 36, width
/// 2304; 512 px: patch side 32, L = 2240) and for user models, narrow enough that nothing sized
/// from them can overflow 32-bit products.
namespace description_limits {
inline constexpr std::int64_t depth = 256, width = 16384, heads = 256, mlp_ratio = 16, vocab = 1 << 20,
                              cvae = 1024, classes = 1 << 20, patch_side = 128, kernel = 63,
                              vae_ch = 1024, vae_ch_mult = 16, vae_levels = 8, res_blocks = 16, n_phi = 16;
inline constexpr double cfg = 1000.0;
}  // namespace description_limits

struct ModelDescription {
  std::string source;                    // the config.json path, for messages
  std::string kind;                      // "mvar", "var" or "" (field "model", optional)
  ModelConfig arch;
  VaeConfig vae;
  Recommended rec;
  std::vector<std::string> class_names;  // empty or exactly arch.num_classes names

  /// Throws one mvar::Error listing every size of the description that the transformer's
  /// tensors contradict (depth, width, heads, classes, vocabulary, Cvae, scale count, L, FFN).
  void check_against(const TensorStore& transformer) const;
  /// The same for a VQVAE checkpoint (codebook size and width, conv_in, decoder levels).
  void check_vae_against(const TensorStore& vae_store) const;
};

namespace detail {

/// Deepest nesting of [ / { outside strings; stops counting once past `limit`.
inline int json_nesting(std::string_view text, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') {
      if (++depth > deepest) deepest = depth;
      if (deepest > limit) return deepest;
    } else if (c == ']' || c == '}') --depth;
  }
  return deepest;
}

class DescriptionReader {
 public:
  using json = nlohmann::json;
  explicit DescriptionReader(const std::string& path) : path_(path) {}

  Error bad(std::string_view field, const std::string& why) const {
    return Error(concat("config.json: ", path_, ": field '", field, "': ", why));
  }
  static std::string show(const json& v) {
    std::string s = v.dump();
    if (s.size() > 40) s = s.substr(0, 37) + "...";
    return s;
  }
  static const char* type_of(const json& v) { return v.type_name(); }

  /// The field, or nullptr when it is absent or null.
  const json* optional(const json& obj, std::string_view field) const {
    const auto it = obj.find(field);
    if (it == obj.end() || it->is_null()) return nullptr;
    return &*it;
  }
  const json& required(const json& obj, std::string_view field) const {
    const json* v = optional(obj, field);
    if (!v) throw bad(field, obj.contains(field) ? "is null, a value is required" : "is missing");
    return *v;
  }

  /// An exactly integral number in [lo, hi]: a JSON integer, or a float with an integral value.
  std::int64_t integer(const json& v, std::string_view field, std::int64_t lo, std::int64_t hi) const {
    const auto range = [&] { return concat(" (allowed: an integer in [", lo, ", ", hi, "])"); };
    if (v.is_number_unsigned()) {
      const auto u = v.get<std::uint64_t>();
      if (u > std::uint64_t(hi) || std::int64_t(u) < lo) throw bad(field, concat(u, " is out of range", range()));
      return std::int64_t(u);
    }
    if (v.is_number_integer()) {
      const auto s = v.get<std::int64_t>();
      if (s < lo || s > hi) throw bad(field, concat(s, " is out of range", range()));
      return s;
    }
    if (v.is_number_float()) {
      const double d = v.get<double>();
      if (!std::isfinite(d) || d != std::floor(d)) throw bad(field, concat(show(v), " is not an integer", range()));
      if (d < double(lo) || d > double(hi)) throw bad(field, concat(show(v), " is out of range", range()));
      return std::int64_t(d);
    }
    throw bad(field, concat("is a ", type_of(v), ", expected a number", range()));
  }
  int int_field(const json& obj, std::string_view field, std::int64_t lo, std::int64_t hi) const {
    return int(integer(required(obj, field), field, lo, hi));
  }

  /// A finite number in [lo, hi] (or (lo, hi] when lo_open), exactly as float (narrowed after the check).
  float number(const json& v, std::string_view field, double lo, double hi, bool lo_open = false) const {
    if (!v.is_number()) throw bad(field, concat("is a ", type_of(v), ", expected a number"));
    const double d = v.get<double>();
    const bool below = lo_open ? !(d > lo) : !(d >= lo);
    if (!std::isfinite(d) || below || d > hi)
      throw bad(field, concat(show(v), " is out of range (allowed: a finite number in ", lo_open ? "(" : "[", lo, ", ", hi, "])"));
    return float(d);
  }
  bool boolean(const json& obj, std::string_view field, bool fallback) const {
    const json* v = optional(obj, field);
    if (!v) return fallback;
    if (!v->is_boolean()) throw bad(field, concat("is a ", type_of(*v), " (", show(*v), "), expected true or false"));
    return v->get<bool>();
  }
  /// An array of 1…max_len integers in [lo, hi]; its length is checked before any element is read.
  std::vector<int> int_array(const json& obj, std::string_view field, std::size_t max_len, std::int64_t lo, std::int64_t hi) const {
    const json& v = required(obj, field);
    if (!v.is_array()) throw bad(field, concat("is a ", type_of(v), ", expected an array of integers"));
    if (v.empty() || v.size() > max_len)
      throw bad(field, concat("has ", v.size(), " entries (allowed: 1 to ", max_len, ")"));
    std::vector<int> out;
    out.reserve(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) out.push_back(int(integer(v[i], concat(field, "[", i, "]"), lo, hi)));
    return out;
  }

 private:
  const std::string& path_;
};

}  // namespace detail

/// Checks a config.json already in memory; `path` names it in messages. (The fuzz harness's entry.)
inline ModelDescription parse_model_description(std::string_view text, const std::string& path) {
  namespace lim = description_limits;
  const std::string where = concat("config.json: ", path, ": ");
  if (text.size() > kMaxDescriptionBytes)
    throw Error(concat(where, "file is ", text.size(), " bytes, more than the limit of ", kMaxDescriptionBytes));
  if (detail::json_nesting(text, kMaxDescriptionDepth) > kMaxDescriptionDepth)
    throw Error(concat(where, "JSON nested deeper than ", kMaxDescriptionDepth, " levels"));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.begin(), text.end());
  } catch (const std::exception& e) {
    throw Error(concat(where, "not valid JSON: ", e.what()));
  }
  if (!j.is_object()) throw Error(concat(where, "the top level is a ", j.type_name(), ", not a JSON object"));

  const detail::DescriptionReader r(path);
  ModelDescription m;
  m.source = path;
  if (const auto* k = r.optional(j, "model")) {
    if (!k->is_string() || (k->get<std::string>() != "mvar" && k->get<std::string>() != "var"))
      throw r.bad("model", concat(r.show(*k), " is not \"mvar\" or \"var\""));
    m.kind = k->get<std::string>();
  }
  ModelConfig& a = m.arch;
  a.depth = r.int_field(j, "depth", 1, lim::depth);
  a.heads = r.int_field(j, "num_heads", 1, lim::heads);
  a.width = r.int_field(j, "embed_dim", 1, lim::width);
  if (a.width % a.heads != 0) throw r.bad("embed_dim", concat(a.width, " is not a multiple of num_heads ", a.heads));
  if (const auto* hd = r.optional(j, "head_dim"); hd && r.integer(*hd, "head_dim", 1, lim::width) != a.width / a.heads)
    throw r.bad("head_dim", concat(r.show(*hd), " is not embed_dim / num_heads = ", a.width / a.heads));
  a.mlp_ratio = r.int_field(j, "mlp_ratio", 1, lim::mlp_ratio);
  if (const auto* fh = r.optional(j, "ffn_hidden");
      fh && r.integer(*fh, "ffn_hidden", 1, lim::width * lim::mlp_ratio) != std::int64_t(a.mlp_ratio) * a.width)
    throw r.bad("ffn_hidden", concat(r.show(*fh), " is not mlp_ratio × embed_dim = ", a.mlp_ratio * a.width));
  a.vocab = r.int_field(j, "vocab_size", 2, lim::vocab);
  a.cvae = r.int_field(j, "Cvae", 1, lim::cvae);
  a.num_classes = r.int_field(j, "num_classes", 1, lim::classes);
  if (const auto* nc = r.optional(j, "null_class"); nc && r.integer(*nc, "null_class", 0, lim::classes) != a.num_classes)
    throw r.bad("null_class", concat(r.show(*nc), " is not num_classes = ", a.num_classes));
  a.attn_l2_norm = r.boolean(j, "attn_l2_norm", true);
  if (!a.attn_l2_norm) throw r.bad("attn_l2_norm", "false is not supported (VAR/MVAR use L2-normalised attention)");
  a.shared_aln = r.boolean(j, "shared_aln", false);  // VAR-d36's layout (docs/zoo.md)

  const std::vector<int> pn = r.int_array(j, "patch_nums", a.patch_nums.side.size(), 1, lim::patch_side);
  a.patch_nums = PatchNums{};
  for (std::size_t s = 0; s < pn.size(); ++s) {
    if (s > 0 && pn[s] <= pn[s - 1])
      throw r.bad("patch_nums", concat("must be strictly increasing; entry ", s, " is ", pn[s], " after ", pn[s - 1]));
    a.patch_nums.side[s] = pn[s];
  }
  a.patch_nums.count = int(pn.size());
  if (const auto* k = r.optional(j, "kernel_size")) {
    a.kernel = int(r.integer(*k, "kernel_size", 1, lim::kernel));
    if (a.kernel % 2 == 0) throw r.bad("kernel_size", concat(a.kernel, " is even (a neighbourhood window is odd)"));
  }
  if (const auto* rs = r.optional(j, "refine_step")) a.refine_step = int(r.integer(*rs, "refine_step", 0, a.patch_nums.count));
  // A VAR description (kernel_size / refine_step null or absent) keeps ModelConfig's defaults
  // (refine_step 8, kernel 7), as the presets do, so same_architecture() matches them.
  if (const char* why = a.validate()) throw Error(concat("config.json: ", path, ": the architecture is not valid: ", why));

  VaeConfig& v = m.vae;
  v.cvae = a.cvae;
  v.vocab = a.vocab;
  v.ch = r.int_field(j, "vae_ch", 1, lim::vae_ch);
  v.ch_mult = r.int_array(j, "vae_ch_mult", lim::vae_levels, 1, lim::vae_ch_mult);
  v.num_res_blocks = r.int_field(j, "vae_num_res_blocks", 0, lim::res_blocks);
  v.using_sa = r.boolean(j, "vae_using_sa", true);
  v.using_mid_sa = r.boolean(j, "vae_using_mid_sa", true);
  if (const auto* q = r.optional(j, "share_quant_resi")) v.n_phi = int(r.integer(*q, "share_quant_resi", 1, lim::n_phi));
  if (const auto* q = r.optional(j, "quant_resi")) v.quant_resi = r.number(*q, "quant_resi", 0.0, 1.0);
  try {
    v.validate();
  } catch (const Error& e) {
    throw Error(concat("config.json: ", path, ": the VQVAE sizes are not valid: ", e.what()));
  }

  m.rec.top_k = std::min(m.rec.top_k, a.vocab);  // the default (900) never exceeds the vocabulary
  if (const auto* rec = r.optional(j, "recommended")) {
    if (!rec->is_object()) throw r.bad("recommended", concat("is a ", rec->type_name(), ", expected an object"));
    if (const auto* c = r.optional(*rec, "cfg")) m.rec.cfg = r.number(*c, "recommended.cfg", 0.0, lim::cfg);
    if (const auto* k = r.optional(*rec, "top_k")) m.rec.top_k = int(r.integer(*k, "recommended.top_k", 0, a.vocab));
    if (const auto* p = r.optional(*rec, "top_p")) m.rec.top_p = r.number(*p, "recommended.top_p", 0.0, 1.0, true);
  }
  if (const auto* names = r.optional(j, "class_names")) {
    if (!names->is_array()) throw r.bad("class_names", concat("is a ", names->type_name(), ", expected an array of strings"));
    if (names->size() != std::size_t(a.num_classes))
      throw r.bad("class_names", concat("has ", names->size(), " entries, num_classes is ", a.num_classes));
    m.class_names.reserve(names->size());
    for (std::size_t i = 0; i < names->size(); ++i) {
      const auto& n = (*names)[i];
      const std::string f = concat("class_names[", i, "]");
      if (!n.is_string()) throw r.bad(f, concat("is a ", n.type_name(), ", expected a string"));
      const auto& s = n.get_ref<const std::string&>();
      if (s.empty() || s.size() > kMaxClassNameBytes)
        throw r.bad(f, concat("is ", s.size(), " bytes long (allowed: 1 to ", kMaxClassNameBytes, ")"));
      m.class_names.push_back(s);
    }
  }
  return m;
}

/// Reads and checks a config.json. Throws mvar::Error naming the file and the field.
inline ModelDescription load_model_description(const std::string& path) {
  const std::string where = concat("config.json: ", path, ": ");
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw Error(concat(where, "cannot open: ", std::strerror(errno)));
  if (S_ISDIR(st.st_mode)) throw Error(concat(where, "is a directory, not a file"));
  if (!S_ISREG(st.st_mode)) throw Error(concat(where, "not a regular file"));
  if (std::uint64_t(st.st_size) > kMaxDescriptionBytes)
    throw Error(concat(where, "file is ", st.st_size, " bytes, more than the limit of ", kMaxDescriptionBytes));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(concat(where, "cannot open: ", std::strerror(errno)));
  std::string text;
  text.resize(std::size_t(st.st_size) + 1);  // one byte more shows a file that grew while read
  in.read(text.data(), std::streamsize(text.size()));
  if (in.bad()) throw Error(concat(where, "read failed"));
  text.resize(std::size_t(in.gcount()));
  return parse_model_description(text, path);
}

namespace detail {
inline std::string shape_or_missing(const TensorStore& st, const std::string& name) {
  const TensorRef* t = st.find(name);
  return t ? t->shape_string() : std::string("missing");
}
}  // namespace detail

inline void ModelDescription::check_against(const TensorStore& st) const {
  std::vector<std::string> problems;
  auto dim = [&](const std::string& name, std::size_t rank, std::size_t axis, std::int64_t want, const char* what) {
    const TensorRef* t = st.find(name);
    if (!t || t->shape.size() != rank) {
      problems.push_back(concat(what, " ", want, ": '", name, "' is ", detail::shape_or_missing(st, name), " (rank ", rank, " expected)"));
      return;
    }
    if (t->shape[axis] != want)
      problems.push_back(concat(what, " ", want, ", but '", name, "' has shape ", t->shape_string()));
  };
  const ModelConfig& a = arch;
  dim("class_emb.weight", 2, 0, std::int64_t(a.num_classes) + (a.null_class ? 1 : 0), a.null_class ? "num_classes + 1 =" : "num_classes");
  dim("class_emb.weight", 2, 1, a.width, "embed_dim");
  dim("word_embed.weight", 2, 1, a.cvae, "Cvae");
  dim("head.weight", 2, 0, a.vocab, "vocab_size");
  dim("lvl_embed.weight", 2, 0, a.num_scales(), "len(patch_nums) =");
  dim("pos_1LC", 3, 1, a.seq_len(), "L = Σ patch_nums² =");
  dim("blocks.0.attn.scale_mul_1H11", 4, 1, a.heads, "num_heads");
  dim("blocks.0.ffn.fc1.weight", 2, 0, std::int64_t(a.ffn_hidden()), "mlp_ratio × embed_dim =");
  int depth = 0;
  // Blocks counted by their attention (present with per-block and with shared AdaLN).
  while (depth <= description_limits::depth && st.find(concat("blocks.", depth, ".attn.mat_qkv.weight"))) ++depth;
  if (depth != a.depth) problems.push_back(concat("depth ", a.depth, ", but the file has ", depth, " blocks"));
  const bool file_shared = st.find("shared_ada_lin.1.weight") != nullptr;
  if (file_shared != a.shared_aln)
    problems.push_back(concat("shared_aln ", a.shared_aln ? "true" : "false", ", but the file ",
                              file_shared ? "holds 'shared_ada_lin.1.weight' (shared AdaLN)" : "has per-block AdaLN (no 'shared_ada_lin.1.weight')"));
  if (problems.empty()) return;
  std::string msg = concat("config.json: ", source, " does not describe ", st.source(), ":");
  for (const auto& p : problems) msg += "\n  " + p;
  throw Error(msg);
}

inline void ModelDescription::check_vae_against(const TensorStore& st) const {
  std::vector<std::string> problems;
  auto shape = [&](const std::string& name, std::vector<std::int64_t> want, const char* what) {
    const TensorRef* t = st.find(name);
    if (!t || t->shape != want)
      problems.push_back(concat(what, ": '", name, "' should be ", TensorRef{"", DType::F32, want}.shape_string(), ", is ",
                                detail::shape_or_missing(st, name)));
  };
  shape("quantize.embedding.weight", {vae.vocab, vae.cvae}, "vocab_size × Cvae");
  shape("decoder.conv_in.weight", {std::int64_t(vae.ch) * vae.ch_mult.back(), vae.cvae, 3, 3}, "vae_ch × vae_ch_mult[-1]");
  int levels = 0;
  while (levels <= description_limits::vae_levels && st.find(concat("decoder.up.", levels, ".block.0.conv1.weight"))) ++levels;
  if (levels != vae.levels())
    problems.push_back(concat("len(vae_ch_mult) ", vae.levels(), ", but the file has ", levels, " decoder levels"));
  if (problems.empty()) return;
  std::string msg = concat("config.json: ", source, " does not describe ", st.source(), ":");
  for (const auto& p : problems) msg += "\n  " + p;
  throw Error(msg);
}

/// True when two configurations describe the same transformer.
constexpr bool same_architecture(const ModelConfig& a, const ModelConfig& b) {
  if (a.patch_nums.count != b.patch_nums.count) return false;
  for (int s = 0; s < a.patch_nums.count; ++s)
    if (a.patch_nums[s] != b.patch_nums[s]) return false;
  return a.depth == b.depth && a.width == b.width && a.heads == b.heads && a.mlp_ratio == b.mlp_ratio &&
         a.vocab == b.vocab && a.cvae == b.cvae && a.num_classes == b.num_classes && a.kernel == b.kernel &&
         a.refine_step == b.refine_step && a.shared_aln == b.shared_aln && a.null_class == b.null_class;
}

}  // namespace mvar
