// mvar/io/safetensors.hpp — reading and writing the safetensors format.
//
// Layout: u64 little-endian header length N, N bytes of JSON, then the raw data buffer. The JSON
// maps tensor names to {"dtype", "shape", "data_offsets": [begin, end)} (offsets relative to the
// data buffer) plus an optional "__metadata__" object of string pairs.
//
// The reader memory-maps the file and trusts nothing: header length within the file and at most
// 100 MB, valid JSON object, no duplicate names, known dtype, shape extents in [0, 2^40] whose
// non-zero product cannot overflow (so no stride or partial product can either, even when another
// extent is 0), offsets in range, begin ≤ end, byte span == numel × dtype size, no two tensors
// overlapping. Every failure throws mvar::Error naming the file and, where there is one, the tensor.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mvar/core/error.hpp"
#include "mvar/io/atomic_write.hpp"
#include "mvar/io/dtype.hpp"
#include "mvar/io/mapped_file.hpp"
#include "mvar/io/tensor_store.hpp"

namespace mvar {

/// Largest JSON header the reader accepts, as in the reference implementation: nlohmann::json
/// builds a DOM several times the size of its text (docs/reliability.md, F10).
inline constexpr std::uint64_t kSafetensorsMaxHeader = 100'000'000;
/// Largest extent of one axis of a tensor: far beyond any real weight, small enough that products
/// of a few extents stay far from 2^64 (docs/reliability.md, F2).
inline constexpr std::uint64_t kSafetensorsMaxExtent = std::uint64_t(1) << 40;

namespace detail {

/// Parses and validates a safetensors image held in memory. `source` names it in messages.
inline std::vector<TensorRef> parse_safetensors(const std::byte* data, std::size_t size,
                                                const std::string& source,
                                                std::map<std::string, std::string>* metadata) {
  auto fail = [&](const std::string& what) -> Error { return Error(concat("safetensors: ", source, ": ", what)); };
  if (size < 8) throw fail(concat("file is ", size, " bytes, too short for the 8-byte header length"));
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | std::uint64_t(std::to_integer<std::uint8_t>(data[i]));
  // The cap first: it refuses a hostile length from the 8-byte field alone, whatever the file size.
  if (n > kSafetensorsMaxHeader) throw fail(concat("header length ", n, " exceeds the 100 MB limit (", kSafetensorsMaxHeader, " bytes)"));
  if (n > size - 8) throw fail(concat("header length ", n, " exceeds the ", size - 8, " bytes after it"));
  if (n < 2) throw fail(concat("header length ", n, " is too short for a JSON object"));
  const char* hdr = reinterpret_cast<const char*>(data + 8);
  const std::byte* buffer = data + 8 + n;
  const std::uint64_t buffer_size = size - 8 - n;

  // Duplicate keys are silently merged by JSON parsers; catch them with the parse callback.
  std::set<std::string> seen_keys;
  std::string duplicate;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(
        hdr, hdr + n,
        [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
          if (ev == nlohmann::json::parse_event_t::key && depth == 1) {
            const auto& k = parsed.get_ref<const std::string&>();
            if (!seen_keys.insert(k).second && duplicate.empty()) duplicate = k;
          }
          return true;
        },
        /*allow_exceptions=*/true);
  } catch (const nlohmann::json::exception& e) {
    throw fail(concat("header is not valid JSON: ", e.what()));
  }
  if (!duplicate.empty()) throw fail(concat("tensor '", duplicate, "' appears twice in the header"));
  if (!j.is_object()) throw fail("header is not a JSON object");

  std::vector<TensorRef> out;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> spans;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) throw fail("__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) throw fail(concat("__metadata__ entry '", m.key(), "' is not a string"));
        if (metadata) (*metadata)[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto bad = [&](const std::string& what) { return fail(concat("tensor '", name, "': ", what)); };
    if (!v.is_object()) throw bad("entry is not an object");
    if (!v.contains("dtype") || !v["dtype"].is_string()) throw bad("missing or non-string 'dtype'");
    const auto dt = parse_dtype(v["dtype"].get<std::string>());
    if (!dt) throw bad(concat("unsupported dtype '", v["dtype"].get<std::string>(), "' (F32, F16, BF16, I32, I64, U8 are read)"));
    if (!v.contains("shape") || !v["shape"].is_array()) throw bad("missing or non-array 'shape'");
    TensorRef t;
    t.name = name;
    t.dtype = *dt;
    // The product of the non-zero extents bounds every partial product (strides included), so it
    // is bounded even when a zero extent makes the element count 0: [0, 2^40, 2^40] is refused.
    std::uint64_t nonzero = 1;
    bool empty = false;
    for (const auto& e : v["shape"]) {
      if (!e.is_number_integer() || e.get<std::int64_t>() < 0) throw bad("shape has a negative or non-integer extent");
      const auto x = e.get<std::uint64_t>();
      if (x > kSafetensorsMaxExtent) throw bad(concat("shape extent ", x, " exceeds the limit of 2^40 (", kSafetensorsMaxExtent, ")"));
      if (x == 0) {
        empty = true;
      } else {
        if (nonzero > std::numeric_limits<std::uint64_t>::max() / 16 / x)
          throw bad("shape overflows (the product of its non-zero extents exceeds 2^60)");
        nonzero *= x;
      }
      t.shape.push_back(static_cast<std::int64_t>(x));
    }
    const std::uint64_t numel = empty ? 0 : nonzero;
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2 ||
        !v["data_offsets"][0].is_number_unsigned() || !v["data_offsets"][1].is_number_unsigned())
      throw bad("'data_offsets' must be two non-negative integers");
    const auto b = v["data_offsets"][0].get<std::uint64_t>();
    const auto e = v["data_offsets"][1].get<std::uint64_t>();
    if (b > e) throw bad(concat("data_offsets [", b, ", ", e, ") has begin after end"));
    if (e > buffer_size) throw bad(concat("data_offsets [", b, ", ", e, ") run past the data buffer of ", buffer_size, " bytes"));
    const std::uint64_t need = numel * dtype_size(*dt);
    if (e - b != need)
      throw bad(concat("spans ", e - b, " bytes, but its shape ", TensorRef{name, *dt, t.shape}.shape_string(),
                       " × ", dtype_name(*dt), " needs ", need));
    t.data = buffer + b;
    t.nbytes = static_cast<std::size_t>(need);
    out.push_back(std::move(t));
    spans.emplace_back(b, e);
  }
  // Overlap check: sort spans by begin; empty tensors overlap nothing.
  std::vector<std::size_t> order(out.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](auto a, auto b) { return spans[a] < spans[b]; });
  std::uint64_t last_end = 0;
  std::size_t last = SIZE_MAX;
  for (std::size_t i : order) {
    if (spans[i].first == spans[i].second) continue;
    if (last != SIZE_MAX && spans[i].first < last_end)
      throw fail(concat("tensors '", out[last].name, "' and '", out[i].name, "' overlap in the data buffer"));
    last_end = spans[i].second;
    last = i;
  }
  return out;
}

}  // namespace detail

namespace detail {
/// The store of a mapped safetensors file: tensors point into the map, which the store keeps
/// alive and records as its mapped range (so packed layers can release the pages they copied).
inline TensorStore safetensors_from_map(std::shared_ptr<const MappedFile> map, const std::string& path) {
  std::map<std::string, std::string> meta;
  auto tensors = parse_safetensors(map->data(), map->size(), path, &meta);
  TensorStore st(path, std::move(tensors), std::shared_ptr<const void>(map, map.get()), std::move(meta));
  st.set_mapped_range({map->data(), map->size()});
  return st;
}
}  // namespace detail

/// Opens and validates a safetensors file (memory-mapped; tensors point into the map).
inline TensorStore load_safetensors(const std::string& path) {
  return detail::safetensors_from_map(std::make_shared<MappedFile>(path), path);
}

/// Validates a safetensors image held in memory (tests, fuzzing). The bytes must outlive the store.
inline TensorStore parse_safetensors_bytes(std::span<const std::byte> bytes, const std::string& source = "<memory>") {
  std::map<std::string, std::string> meta;
  auto tensors = detail::parse_safetensors(bytes.data(), bytes.size(), source, &meta);
  return TensorStore(source, std::move(tensors), nullptr, std::move(meta));
}

/// One tensor to write: raw little-endian bytes of `shape` × dtype.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  std::span<const std::byte> bytes;
};

template <class T>
TensorToWrite tensor_to_write(std::string name, DType dtype, std::vector<std::int64_t> shape, std::span<const T> v) {
  return {std::move(name), dtype, std::move(shape), std::as_bytes(v)};
}

/// Serialises tensors (in the given order) to a safetensors image.
inline std::vector<std::byte> serialize_safetensors(const std::vector<TensorToWrite>& tensors,
                                                    const std::map<std::string, std::string>& metadata = {}) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  if (!metadata.empty()) j["__metadata__"] = metadata;
  std::uint64_t off = 0;
  std::set<std::string> names;
  for (const auto& t : tensors) {
    if (!names.insert(t.name).second) throw Error(concat("safetensors: duplicate tensor name '", t.name, "'"));
    std::uint64_t numel = 1;
    for (auto e : t.shape) numel *= static_cast<std::uint64_t>(e);
    if (numel * dtype_size(t.dtype) != t.bytes.size())
      throw Error(concat("safetensors: tensor '", t.name, "' has ", t.bytes.size(), " bytes, shape × dtype needs ",
                         numel * dtype_size(t.dtype)));
    j[t.name] = {{"dtype", std::string(dtype_name(t.dtype))}, {"shape", t.shape}, {"data_offsets", {off, off + t.bytes.size()}}};
    off += t.bytes.size();
  }
  std::string header = j.dump();
  header.resize((header.size() + 7) / 8 * 8, ' ');
  std::vector<std::byte> out(8 + header.size() + off);
  std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = std::byte((n >> (8 * i)) & 0xff);
  std::memcpy(out.data() + 8, header.data(), header.size());
  std::byte* p = out.data() + 8 + header.size();
  for (const auto& t : tensors) {
    if (!t.bytes.empty()) std::memcpy(p, t.bytes.data(), t.bytes.size());
    p += t.bytes.size();
  }
  return out;
}

/// Writes a safetensors file atomically (temporary file + rename).
inline void save_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
  const auto bytes = serialize_safetensors(tensors, metadata);
  atomic_write(path, [&](std::FILE* f) { return std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size(); });
}

}  // namespace mvar
