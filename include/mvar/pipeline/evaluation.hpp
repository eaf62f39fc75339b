// mvar/pipeline/evaluation.hpp — sampling at evaluation scale: tens of thousands of
// class-conditional images into one .npz (uint8 `arr_0` [N, H, W, 3], int64 labels `arr_1`, the
// run's settings as `settings.json`: the format the FID/IS evaluation suites read), split into
// shards for any scheduler, resumable after a crash, and merged back byte for byte.
//
// What makes any split give the same file: image i of a plan is (class c, sample j) and is drawn
// with RNG stream evaluation_stream(c, j) = c·2³² + j. mvar's sampler draws image b of a batch
// with the counter-based RNG at stream first_index + b (sampling/sampler.hpp, rng.hpp), so an
// image's pixels are a function of (weights, settings, seed, stream) alone — not of the batch it
// was drawn in, the thread count, the shard, the machine or the class range asked for. The same
// (c, j) is the same image in `--per-class 50` and `--per-class 100`, and in `--classes 3-5`.
// (c < 2¹⁶ keeps the RNG's counter word (stream >> 32) ^ (scale << 16) unique per scale.)
//
// The pieces:
//   EvaluationPlan      the labels in file order: per class × a class range, or a label list file;
//                       shard(i/n) = the contiguous index range [⌊i·N/n⌋, ⌊(i+1)·N/n⌋).
//   ImageSource         what draws images (the model); the runner only needs this function.
//   run_evaluation      draws a plan's range into an .npz through a journal: resumable, atomic.
//   merge_evaluation    shards → the .npz a single run writes, byte for byte.
//
// Files of a run writing OUT.npz: OUT.npz.partial (the .npz under construction: arr_0's zip and
// .npy headers, then the images finished so far) and OUT.npz.journal (JSON: the settings and how
// many images are durably in the partial). Each batch is written, fdatasync'ed, then recorded in
// the journal (atomic replace) — so the journal never counts an image that is not on disk. A
// restart with the same settings checks the partial's headers, re-reads its finished images for
// the CRC and continues; different settings are refused. At the end labels and settings are
// appended, the file is fsync'ed and renamed to OUT.npz, and the journal removed. Nothing named
// OUT.npz exists before it is complete.
#pragma once

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "mvar/core/error.hpp"
#include "mvar/io/atomic_write.hpp"
#include "mvar/io/npz.hpp"
#include "mvar/io/png.hpp"

namespace mvar {

/// Draws labels.size() images, image i with RNG stream first_index + i, into rgb_out: uint8,
/// image-major, each side × side × 3 (HWC). Must be deterministic in (labels[i], first_index + i).
using ImageSource =
    std::function<void(std::span<const int> labels, std::uint64_t first_index, std::span<std::uint8_t> rgb_out)>;

/// What the images depend on besides the plan, filled by the caller (model files and their
/// CRC-32s or sizes, mode, cfg, top-k, top-p, seed, weights layout, mvar version …). Recorded in
/// every output; a journal, shard or output with a different identity is refused. Never put
/// anything here that does not change the pixels (threads, batch size, host names).
using RunIdentity = std::map<std::string, std::string>;

inline constexpr int kEvaluationMaxClass = (1 << 16) - 1;
inline constexpr std::uint64_t kEvaluationMaxImages = 100'000'000;  // labels are held in memory, 8 B each

/// RNG stream of sample j of class c (see the file comment).
inline constexpr std::uint64_t evaluation_stream(int label, std::uint32_t sample) {
  return (std::uint64_t(std::uint32_t(label)) << 32) | sample;
}

struct Shard {
  int index = 0, count = 1;
};

/// Parses "i/n" (0 ≤ i < n ≤ 1,000,000); `option` names the source in errors.
inline Shard parse_shard(std::string_view s, std::string_view option = "--shard") {
  const auto slash = s.find('/');
  auto num = [&](std::string_view t, long long& v) {
    if (t.empty() || t.size() > 7) return false;
    v = 0;
    for (char ch : t) {
      if (ch < '0' || ch > '9') return false;
      v = v * 10 + (ch - '0');
    }
    return true;
  };
  long long i = 0, n = 0;
  if (slash == std::string_view::npos || !num(s.substr(0, slash), i) || !num(s.substr(slash + 1), n) || n < 1 ||
      n > 1'000'000 || i >= n)
    throw Error(concat(option, ": '", s, "' is not a shard i/n with 0 ≤ i < n ≤ 1000000 (e.g. 0/4)"));
  return Shard{int(i), int(n)};
}

/// Half-open range of image indices [begin, end).
struct IndexRange {
  std::uint64_t begin = 0, end = 0;
  std::uint64_t size() const { return end - begin; }
};

/// The labels of a run in file order and each image's sample number within its class.
class EvaluationPlan {
 public:
  /// `per_class` images of each class first..last (inclusive), class-major: (c, 0), (c, 1), …
  static EvaluationPlan per_class(std::uint64_t per_class, int first, int last) {
    if (per_class < 1 || per_class > 0xffffffffull) throw Error(concat("--per-class must be in [1, 2^32), got ", per_class));
    if (first < 0 || last < first || last > kEvaluationMaxClass)
      throw Error(concat("--classes: range ", first, "-", last, " is not A-B with 0 ≤ A ≤ B ≤ ", kEvaluationMaxClass));
    const std::uint64_t n = per_class * std::uint64_t(last - first + 1);
    if (n > kEvaluationMaxImages) throw Error(concat("a run of ", n, " images exceeds the limit of ", kEvaluationMaxImages));
    EvaluationPlan p;
    p.labels_.reserve(n);
    p.samples_.reserve(n);
    for (int c = first; c <= last; ++c)
      for (std::uint64_t j = 0; j < per_class; ++j) p.labels_.push_back(c), p.samples_.push_back(std::uint32_t(j));
    p.plan_ = {{"per_class", per_class}, {"classes", concat(first, "-", last)}};
    return p;
  }

  /// Any label sequence: sample j of class c is the j-th occurrence of c in the list.
  static EvaluationPlan from_labels(std::span<const int> labels) {
    if (labels.empty()) throw Error("the label list is empty");
    if (labels.size() > kEvaluationMaxImages)
      throw Error(concat("a run of ", labels.size(), " images exceeds the limit of ", kEvaluationMaxImages));
    EvaluationPlan p;
    std::map<int, std::uint32_t> seen;
    for (int c : labels) {
      if (c < 0 || c > kEvaluationMaxClass) throw Error(concat("label ", c, " is outside [0, ", kEvaluationMaxClass, "]"));
      p.labels_.push_back(c);
      p.samples_.push_back(seen[c]++);
    }
    p.plan_ = {{"label_list", labels.size()}};
    return p;
  }

  /// Reads labels (decimal integers separated by whitespace or commas; '#' starts a comment).
  static EvaluationPlan from_label_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw Error(concat(path, ": cannot open the label list"));
    std::vector<int> labels;
    std::string line;
    for (std::size_t lineno = 1; std::getline(in, line); ++lineno) {
      if (const auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
      std::size_t p = 0;
      while (p < line.size()) {
        if (line[p] == ' ' || line[p] == '\t' || line[p] == ',' || line[p] == '\r') {
          ++p;
          continue;
        }
        long long v = 0;
        std::size_t digits = 0;
        while (p < line.size() && line[p] >= '0' && line[p] <= '9' && digits < 6) v = v * 10 + (line[p++] - '0'), ++digits;
        if (digits == 0 || v > kEvaluationMaxClass || (p < line.size() && line[p] != ' ' && line[p] != '\t' &&
                                                        line[p] != ',' && line[p] != '\r'))
          throw Error(concat(path, ":", lineno, ": not a class label in [0, ", kEvaluationMaxClass, "]: '", line, "'"));
        labels.push_back(int(v));
        if (labels.size() > kEvaluationMaxImages)
          throw Error(concat(path, ": more than ", kEvaluationMaxImages, " labels"));
      }
    }
    if (labels.empty()) throw Error(concat(path, ": the label list is empty"));
    return from_labels(labels);
  }

  /// "A-B" or "A" → (A, B).
  static std::pair<int, int> parse_classes(std::string_view s) {
    auto num = [&](std::string_view t, int& v) {
      if (t.empty() || t.size() > 5) return false;
      v = 0;
      for (char ch : t) {
        if (ch < '0' || ch > '9') return false;
        v = v * 10 + (ch - '0');
      }
      return v <= kEvaluationMaxClass;
    };
    int a = 0, b = 0;
    const auto dash = s.find('-');
    const bool ok = dash == std::string_view::npos ? (num(s, a) && num(s, b)) : (num(s.substr(0, dash), a) && num(s.substr(dash + 1), b));
    if (!ok || b < a) throw Error(concat("--classes: '", s, "' is not a class range A-B with 0 ≤ A ≤ B ≤ ", kEvaluationMaxClass));
    return {a, b};
  }

  std::uint64_t size() const { return labels_.size(); }
  std::span<const int> labels() const { return labels_; }
  int label(std::uint64_t i) const { return labels_[std::size_t(i)]; }
  std::uint32_t sample(std::uint64_t i) const { return samples_[std::size_t(i)]; }
  std::uint64_t stream(std::uint64_t i) const { return evaluation_stream(label(i), sample(i)); }

  /// Shard i of n: indices [⌊i·N/n⌋, ⌊(i+1)·N/n⌋) — disjoint, covering, the same on every machine.
  IndexRange shard(Shard s) const {
    const auto n = size(), k = std::uint64_t(s.count);
    // N < 2^27 and k ≤ 2^20: the products fit in 64 bits.
    return IndexRange{n * std::uint64_t(s.index) / k, n * std::uint64_t(s.index + 1) / k};
  }

  /// Throws naming the first label the model does not have.
  void check_classes(int num_classes) const {
    for (std::size_t i = 0; i < labels_.size(); ++i)
      if (labels_[i] >= num_classes)
        throw Error(concat("class label ", labels_[i], " (image ", i, ") is out of range [0, ", num_classes - 1, "]"));
  }

  /// How the plan was given (recorded in the settings).
  const nlohmann::json& description() const { return plan_; }

 private:
  std::vector<int> labels_;
  std::vector<std::uint32_t> samples_;
  nlohmann::json plan_;
};

/// Path of shard i of n's own file: "out.npz" → "out.shard-00001-of-00004.npz".
inline std::string shard_output_path(const std::string& npz, Shard s) {
  std::string stem = npz, ext;
  const auto slash = stem.find_last_of('/'), dot = stem.find_last_of('.');
  if (dot != std::string::npos && (slash == std::string::npos || dot > slash)) ext = stem.substr(dot), stem.resize(dot);
  char buf[48];
  std::snprintf(buf, sizeof buf, ".shard-%05d-of-%05d", s.index, s.count);
  return stem + buf + ext;
}

struct EvaluationProgress {
  std::uint64_t done = 0;         // images of this range finished (resumed ones included)
  std::uint64_t total = 0;        // images of this range
  std::uint64_t resumed_from = 0; // finished before this process started
  double seconds = 0;             // since this process started drawing
  double images_per_second = 0;   // of this process
  double eta_seconds = 0;         // at that rate
};

struct EvaluationOptions {
  std::string npz;      // the output (a shard writes exactly this path; see shard_output_path)
  std::string png_dir;  // also one PNG per image here when not empty (created if missing)
  int batch = 16;       // images per ImageSource call; never changes the bytes
  Shard shard;
  /// Called after every batch; returning false stops the run, resumable (journal kept).
  std::function<bool(const EvaluationProgress&)> on_progress;
  bool force_zip64 = false;  // tests: zip64 records everywhere
};

enum class EvaluationStatus { Complete, AlreadyComplete, Stopped };

struct EvaluationResult {
  EvaluationStatus status = EvaluationStatus::Complete;
  IndexRange range;
  std::uint64_t done = 0, resumed_from = 0;
  std::string output;
};

namespace detail {

inline bool path_exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

/// The first place where two settings differ, as `identity.seed: "1" in A, "2" in B`.
inline std::string settings_difference(const nlohmann::json& a, const nlohmann::json& b, const std::string& a_name,
                                       const std::string& b_name, const std::string& where = "") {
  if (a.is_object() && b.is_object()) {
    for (auto it = a.begin(); it != a.end(); ++it) {
      const std::string key = where.empty() ? it.key() : where + "." + it.key();
      if (!b.contains(it.key())) return concat(key, ": set in ", a_name, ", absent in ", b_name);
      if (auto d = settings_difference(it.value(), b.at(it.key()), a_name, b_name, key); !d.empty()) return d;
    }
    for (auto it = b.begin(); it != b.end(); ++it)
      if (!a.contains(it.key()))
        return concat(where.empty() ? it.key() : where + "." + it.key(), ": absent in ", a_name, ", set in ", b_name);
    return "";
  }
  if (a == b) return "";
  return concat(where.empty() ? "settings" : where, ": ", a.dump(), " in ", a_name, ", ", b.dump(), " in ", b_name);
}

/// Settings without the index range: what every shard of one run shares.
inline nlohmann::json run_part(nlohmann::json s) {
  if (s.is_object() && s.contains("images") && s["images"].is_object()) s["images"].erase("begin"), s["images"].erase("end");
  return s;
}

inline std::uint32_t labels_crc32(std::span<const int> labels) {
  std::uint32_t crc = 0;
  std::vector<std::byte> buf;
  for (std::size_t i = 0; i < labels.size(); i += 4096) {
    const std::size_t n = std::min<std::size_t>(4096, labels.size() - i);
    buf.assign(n * 8, std::byte{0});
    for (std::size_t k = 0; k < n; ++k)
      for (int b = 0; b < 8; ++b) buf[k * 8 + std::size_t(b)] = std::byte((std::uint64_t(std::int64_t(labels[i + k])) >> (8 * b)) & 0xffu);
    crc = crc32_update(crc, buf);
  }
  return crc;
}

inline std::vector<std::byte> int64_le(std::span<const int> v) {
  std::vector<std::byte> out(v.size() * 8);
  for (std::size_t k = 0; k < v.size(); ++k)
    for (int b = 0; b < 8; ++b) out[k * 8 + std::size_t(b)] = std::byte((std::uint64_t(std::int64_t(v[k])) >> (8 * b)) & 0xffu);
  return out;
}

inline nlohmann::json read_settings(const NpzReader& r) {
  if (!r.has("settings.json")) throw Error(concat(r.path(), ": not an mvar evaluation file (no settings.json member)"));
  const auto bytes = r.file("settings.json");
  try {
    auto j = nlohmann::json::parse(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    if (!j.is_object() || j.value("format", "") != "mvar-evaluation-1" || !j.contains("images") || !j["images"].is_object() ||
        !j["images"].contains("begin") || !j["images"].contains("end") || !j["images"].contains("total") ||
        !j.contains("image") || !j["image"].contains("side") || !j["image"]["side"].is_number_unsigned() ||
        !j.contains("plan") || !j["plan"].contains("label_crc32") || !j["plan"]["label_crc32"].is_number_unsigned() ||
        !j["images"]["begin"].is_number_unsigned() || !j["images"]["end"].is_number_unsigned() ||
        !j["images"]["total"].is_number_unsigned())
      throw Error("");
    return j;
  } catch (const std::exception&) {
    throw Error(concat(r.path(), ": settings.json is not the settings of an mvar evaluation run (format mvar-evaluation-1)"));
  }
}

/// Removes `path`.tmp.<pid> files that a process killed inside atomic_write() left behind.
inline void remove_stale_temporaries(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path p(path);
  const std::string prefix = p.filename().string() + ".tmp.";
  std::error_code ec;
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0 &&
        name.find_first_not_of("0123456789", prefix.size()) == std::string::npos)
      fs::remove(e.path(), ec);
  }
}

/// An existing output: the same run → true (nothing to do); anything else → Error, never replaced.
inline bool existing_output_matches(const std::string& path, const nlohmann::json& settings) {
  if (!path_exists(path)) return false;
  nlohmann::json theirs;
  try {
    const NpzReader r(path);
    theirs = read_settings(r);
  } catch (const Error& e) {
    throw Error(concat(path, ": exists and is not this run's output (", e.what(), "); refusing to overwrite it — choose another output or remove it"));
  }
  if (theirs != settings)
    throw Error(concat(path, ": exists and holds a different run (", settings_difference(settings, theirs, "this run", path),
                       "); refusing to overwrite it — choose another output or remove it"));
  return true;
}

}  // namespace detail

/// The settings recorded in the output (settings.json) and checked on resume and merge.
inline nlohmann::json evaluation_settings(const EvaluationPlan& plan, const RunIdentity& identity, int side, IndexRange range) {
  nlohmann::json id = nlohmann::json::object();
  for (const auto& [k, v] : identity) id[k] = v;
  nlohmann::json p = plan.description();
  p["label_count"] = plan.size();
  p["label_crc32"] = detail::labels_crc32(plan.labels());  // of the labels as int64 little-endian (arr_1)
  return nlohmann::json{
      {"format", "mvar-evaluation-1"},
      {"identity", id},
      {"image", {{"side", side}, {"channels", 3}, {"layout", "arr_0: uint8 [N, side, side, 3] (HWC); arr_1: int64 labels [N]"}}},
      {"plan", p},
      {"streams", "image (class c, sample j) uses RNG stream c * 2^32 + j"},
      {"images", {{"begin", range.begin}, {"end", range.end}, {"total", plan.size()}}},
  };
}

/// Draws the plan's images of options.shard into options.npz (see the file comment).
inline EvaluationResult run_evaluation(const EvaluationPlan& plan, const RunIdentity& identity, int side,
                                       const ImageSource& source, const EvaluationOptions& o) {
  if (o.npz.empty()) throw Error("evaluation: no output file given (--npz)");
  if (o.batch < 1 || o.batch > 65536) throw Error(concat("--batch must be in [1, 65536], got ", o.batch));
  if (side < 1 || side > 8192) throw Error(concat("evaluation: image side ", side, " is outside [1, 8192]"));
  if (plan.size() == 0) throw Error("evaluation: the plan has no images");
  if (o.shard.count < 1 || o.shard.index < 0 || o.shard.index >= o.shard.count)
    throw Error(concat("--shard ", o.shard.index, "/", o.shard.count, " is not i/n with 0 ≤ i < n"));

  const IndexRange range = plan.shard(o.shard);
  const nlohmann::json settings = evaluation_settings(plan, identity, side, range);
  const std::string partial = o.npz + ".partial", journal = o.npz + ".journal";
  const std::uint64_t img = std::uint64_t(side) * side * 3;
  const NpyHeader arr0{"|u1", {range.size(), std::uint64_t(side), std::uint64_t(side), 3}};
  EvaluationResult res;
  res.range = range;
  res.output = o.npz;

  if (detail::existing_output_matches(o.npz, settings)) {
    if (detail::path_exists(journal)) std::remove(journal.c_str());  // stale: the rename happened, its removal not
    res.status = EvaluationStatus::AlreadyComplete;
    res.done = res.resumed_from = range.size();
    return res;
  }

  auto write_journal = [&](std::uint64_t done) {
    const std::string text = nlohmann::json{{"format", "mvar-evaluation-journal-1"}, {"settings", settings}, {"images_done", done}}.dump(1) + "\n";
    atomic_write(journal, [&](std::FILE* f) { return std::fwrite(text.data(), 1, text.size(), f) == text.size(); });
  };

  std::uint64_t done = 0;
  NpzWriter::Options wopts{o.force_zip64, /*remove_on_abort=*/false};
  std::optional<NpzWriter> writer;
  if (detail::path_exists(journal)) {
    nlohmann::json j;
    try {
      std::ifstream in(journal);
      in >> j;
      if (!j.is_object() || !j.contains("settings") || !j.contains("images_done") || !j["images_done"].is_number_unsigned())
        throw Error("");
    } catch (const std::exception&) {
      throw Error(concat(journal, ": not an mvar evaluation journal (or damaged); remove it and ", partial, " to start over"));
    }
    if (j["settings"] != settings)
      throw Error(concat(journal, ": an unfinished run with other settings (", detail::settings_difference(settings, j["settings"], "this run", journal),
                         ") — finish it with its own command, or remove ", journal, " and ", partial, " to start this one"));
    done = j["images_done"].get<std::uint64_t>();
    detail::remove_stale_temporaries(journal);
    if (done > range.size()) throw Error(concat(journal, ": records ", done, " finished images of a range of ", range.size()));
    try {
      writer.emplace(NpzWriter::resume(o.npz, partial, "arr_0.npy", arr0, NpzWriter::Progress{done * img}, wopts));
    } catch (const Error& e) {
      throw Error(concat(e.what(), " — the partial file does not hold what ", journal, " records; remove both to start over"));
    }
  } else {
    if (detail::path_exists(partial))
      throw Error(concat(partial, ": exists without its journal ", journal, " (not this run's, or damaged); remove it to start over"));
    write_journal(0);
    writer.emplace(o.npz, partial, wopts);
    writer->begin_array("arr_0", arr0);
    writer->sync();
  }
  res.resumed_from = done;
  if (!o.png_dir.empty() && !detail::path_exists(o.png_dir) && ::mkdir(o.png_dir.c_str(), 0755) != 0)
    throw Error(concat(o.png_dir, ": cannot create the PNG folder: ", std::strerror(errno)));

  std::vector<std::uint8_t> buf(std::size_t(o.batch) * img);
  std::vector<int> labels;
  const auto t0 = std::chrono::steady_clock::now();
  const std::uint64_t resumed = done;
  while (done < range.size()) {
    // One ImageSource call: up to `batch` images of one label with consecutive streams.
    const std::uint64_t first = range.begin + done;
    std::uint64_t n = 1;
    while (n < std::uint64_t(o.batch) && first + n < range.end && plan.label(first + n) == plan.label(first) &&
           plan.stream(first + n) == plan.stream(first) + n)
      ++n;
    labels.assign(std::size_t(n), plan.label(first));
    const std::span<std::uint8_t> out(buf.data(), std::size_t(n * img));
    source(labels, plan.stream(first), out);
    try {
      writer->write(std::as_bytes(out));
      writer->sync();
      for (std::uint64_t k = 0; k < n; ++k)
        if (!o.png_dir.empty()) {
          char name[96];
          std::snprintf(name, sizeof name, "/%06llu_class%d_%05u.png", static_cast<unsigned long long>(first + k),
                        plan.label(first + k), plan.sample(first + k));
          write_png(o.png_dir + name, out.subspan(std::size_t(k * img), std::size_t(img)), side, side);
        }
      write_journal(done + n);
    } catch (const Error& e) {
      throw Error(concat(e.what(), " — after ", done, " of ", range.size(), " images; those are kept in ", partial,
                         " (journal ", journal, "): free space or fix the cause and run the same command again to continue"));
    }
    done += n;
    if (o.on_progress) {
      EvaluationProgress p;
      p.done = done, p.total = range.size(), p.resumed_from = resumed;
      p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      p.images_per_second = double(done - resumed) / std::max(p.seconds, 1e-9);
      p.eta_seconds = double(range.size() - done) / std::max(p.images_per_second, 1e-12);
      if (!o.on_progress(p) && done < range.size()) {
        res.status = EvaluationStatus::Stopped;
        res.done = done;
        return res;  // the writer closes the partial and keeps it
      }
    }
  }
  try {
    writer->end_array();
    std::vector<int> shard_labels(plan.labels().begin() + std::ptrdiff_t(range.begin), plan.labels().begin() + std::ptrdiff_t(range.end));
    writer->add_array("arr_1", NpyHeader{"<i8", {range.size()}}, detail::int64_le(shard_labels));
    const std::string text = settings.dump();
    writer->add_file("settings.json", std::as_bytes(std::span(text.data(), text.size())));
    writer->commit();
  } catch (const Error& e) {
    throw Error(concat(e.what(), " — all ", range.size(), " images are kept in ", partial, " (journal ", journal,
                       "): fix the cause and run the same command again to finish the file"));
  }
  std::remove(journal.c_str());
  res.status = EvaluationStatus::Complete;
  res.done = range.size();
  return res;
}

/// Merges shard files of one run into `output`: the bytes a single run writes. Refuses shards
/// of another run, overlapping shards and missing index ranges, each with one message; on failure
/// nothing is written. Returns false when `output` already holds exactly this run.
inline bool merge_evaluation(std::span<const std::string> inputs, const std::string& output, bool force_zip64 = false) {
  if (inputs.empty()) throw Error("--merge: no shard files given");
  struct In {
    std::unique_ptr<NpzReader> r;
    nlohmann::json settings;
    IndexRange range;
  };
  std::vector<In> ins;
  for (const auto& path : inputs) {
    In in;
    in.r = std::make_unique<NpzReader>(path);
    in.settings = detail::read_settings(*in.r);
    try {
      in.range = IndexRange{in.settings["images"]["begin"].get<std::uint64_t>(), in.settings["images"]["end"].get<std::uint64_t>()};
    } catch (const std::exception&) {
      throw Error(concat(path, ": settings.json: images.begin/end are not indices"));
    }
    if (!ins.empty()) {
      const std::string d = detail::settings_difference(detail::run_part(ins.front().settings), detail::run_part(in.settings), inputs.front(), path);
      if (!d.empty()) throw Error(concat(path, ": a shard of another run than ", inputs.front(), " (", d, ")"));
    }
    ins.push_back(std::move(in));
  }
  const nlohmann::json& ref = ins.front().settings;
  const std::uint64_t total = ref["images"]["total"].get<std::uint64_t>();
  const int side = ref["image"]["side"].get<int>();
  if (side < 1 || side > 8192) throw Error(concat(inputs.front(), ": settings.json: image side ", side, " is outside [1, 8192]"));
  for (const In& in : ins) {
    if (in.range.begin > in.range.end || in.range.end > total)
      throw Error(concat(in.r->path(), ": index range [", in.range.begin, ", ", in.range.end, ") is not inside [0, ", total, ")"));
    const NpyArray a0 = in.r->array("arr_0"), a1 = in.r->array("arr_1");
    const std::vector<std::uint64_t> want0{in.range.size(), std::uint64_t(side), std::uint64_t(side), 3}, want1{in.range.size()};
    if (a0.header.descr != "|u1" || a0.header.shape != want0 || a1.header.descr != "<i8" || a1.header.shape != want1)
      throw Error(concat(in.r->path(), ": arr_0/arr_1 do not have the shapes its settings give (", in.range.size(), " images of ", side, "²)"));
  }
  std::vector<std::size_t> order(ins.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return ins[a].range.begin < ins[b].range.begin; });
  std::uint64_t covered = 0;
  for (std::size_t k = 0; k < order.size(); ++k) {
    const In& in = ins[order[k]];
    if (in.range.begin < covered)
      throw Error(concat("--merge: ", in.r->path(), " (images [", in.range.begin, ", ", in.range.end, ")) overlaps ",
                         ins[order[k - 1]].r->path(), " on images [", in.range.begin, ", ", std::min(covered, in.range.end), ")"));
    if (in.range.begin > covered)
      throw Error(concat("--merge: images [", covered, ", ", in.range.begin, ") of ", total, " are in none of the files (a shard is missing)"));
    covered = in.range.end;
  }
  if (covered != total)
    throw Error(concat("--merge: images [", covered, ", ", total, ") of ", total, " are in none of the files (a shard is missing)"));

  nlohmann::json settings = ref;
  settings["images"]["begin"] = 0;
  settings["images"]["end"] = total;
  if (detail::existing_output_matches(output, settings)) return false;

  // Every member's CRC first: a damaged shard is refused before anything is written.
  std::uint32_t labels_crc = 0;
  for (std::size_t i : order) {
    ins[i].r->verify_crc("arr_0.npy");
    ins[i].r->verify_crc("arr_1.npy");
    labels_crc = crc32_update(labels_crc, ins[i].r->array("arr_1").data);
  }
  if (labels_crc != ref["plan"]["label_crc32"].get<std::uint32_t>())
    throw Error(concat("--merge: the shards' labels are not the labels of the run their settings describe"));

  NpzWriter w(output, concat(output, ".tmp.", ::getpid()), NpzWriter::Options{force_zip64, true});
  auto copy = [&](const char* name, const NpyHeader& h) {
    w.begin_array(name, h);
    for (std::size_t i : order) {
      const auto data = ins[i].r->array(name).data;
      for (std::size_t off = 0; off < data.size(); off += std::size_t(1) << 26)
        w.write(data.subspan(off, std::min(data.size() - off, std::size_t(1) << 26)));
    }
    w.end_array();
  };
  copy("arr_0", NpyHeader{"|u1", {total, std::uint64_t(side), std::uint64_t(side), 3}});
  copy("arr_1", NpyHeader{"<i8", {total}});
  const std::string text = settings.dump();
  w.add_file("settings.json", std::as_bytes(std::span(text.data(), text.size())));
  w.commit();
  return true;
}

}  // namespace mvar
