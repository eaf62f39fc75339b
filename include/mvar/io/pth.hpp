// mvar/io/pth.hpp — reading PyTorch checkpoints (torch.save ≥ 1.6, zip container) without Python.
//
// Layout (SPEC §1.2): a zip of stored entries under one folder `<archive>/`: `data.pkl` (the
// pickled object, protocol 2), `data/<key>` (each storage's raw little-endian bytes), `version`,
// and from torch 1.13/2.x on `byteorder` and `.data/serialization_id`. A tensor in data.pkl is
//   REDUCE(torch._utils._rebuild_tensor_v2, (storage, offset, size, stride, requires_grad, hooks[, metadata]))
// where storage is BINPERSID(('storage', torch.<T>Storage, key, location, numel)).
//
// Only what a state dict needs is allowed (docs/pth.md has the list): GLOBAL collections.OrderedDict,
// torch._utils._rebuild_tensor_v2 / _rebuild_parameter, torch.{Float,Half,BFloat16,Long,Int}Storage;
// REDUCE only of those (OrderedDict with no arguments); BUILD only on a dict (its state, torch's
// `_metadata`, is ignored). Every storage is checked against its zip entry (size == numel × element
// size) and every tensor's offset/size/stride against its storage before a view is made.
// Contiguous tensors point into the memory map (zero copy); non-contiguous ones (transposed,
// stride-0 broadcast) are copied into a dense buffer the store owns, as are storages not aligned
// to their element size; all such copies together may not exceed the archive's size.
//
// The object: a dict. If it has the key "mvar_wo_ddp" (MVAR's training wrapper, SPEC §3.4) that
// entry is the state dict and every other top-level entry is ignored. In the state dict, tensors
// keep their key as name, nested dicts are flattened with '.', other plain values are ignored.
//
// Training metadata beside the state dict (the official demo saves and loads with full pickle
// execution, so released files may carry argparse.Namespace, pathlib paths, numpy scalars,
// optimizer state…): any other GLOBAL becomes an opaque placeholder (io/pickle.hpp) that is never
// called, constructed or built — REDUCE/NEWOBJ of it give another placeholder, BUILD on it is
// dropped. Placeholders may appear only outside the bound state dict; one anywhere inside it
// (as a value, or inside a list/tuple value) refuses the file, as before. Placeholders cannot
// become tensors, storages or dict keys of the state dict: every hook checks kinds first.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mvar/core/error.hpp"
#include "mvar/core/memory_limit.hpp"
#include "mvar/io/dtype.hpp"
#include "mvar/io/mapped_file.hpp"
#include "mvar/io/pickle.hpp"
#include "mvar/io/tensor_store.hpp"
#include "mvar/io/zip.hpp"

namespace mvar {

namespace detail {

/// The dtype of an allowed storage type name ("FloatStorage" …), or nullopt.
inline std::optional<DType> torch_storage_dtype(std::string_view name) {
  if (name == "FloatStorage") return DType::F32;
  if (name == "HalfStorage") return DType::F16;
  if (name == "BFloat16Storage") return DType::BF16;
  if (name == "LongStorage") return DType::I64;
  if (name == "IntStorage") return DType::I32;
  return std::nullopt;
}

inline constexpr int kPthMaxRank = 16;
inline constexpr int kPthMaxDictDepth = 16;

struct PthStorage {
  std::string key;
  DType dtype;
  std::uint64_t numel;
  std::span<const std::byte> bytes;
};

struct PthTensor {
  std::size_t storage;  // index into storages
  std::uint64_t offset; // in elements
  std::vector<std::int64_t> shape, stride;
  bool contiguous;
};

/// Whatever the store must keep alive: the mapping (if any) and the dense copies.
struct PthBacking {
  std::shared_ptr<const void> file;
  std::vector<std::unique_ptr<std::byte[]>> owned;
};

class PthReader {
 public:
  PthReader(std::span<const std::byte> bytes, std::string source)
      : zip_(bytes, source), source_(std::move(source)), zip_bytes_(bytes.size()) {}

  TensorStore read(std::shared_ptr<const void> file) {
    locate();
    PickleHooks hooks;
    hooks.allow_global = [](std::string_view module, std::string_view name) {
      if (module == "collections") return name == "OrderedDict";
      if (module == "torch._utils") return name == "_rebuild_tensor_v2" || name == "_rebuild_parameter";
      if (module == "torch") return torch_storage_dtype(name).has_value();
      return false;
    };
    hooks.opaque_unknown_globals = true;
    hooks.persistent_load = [this](const PickleTree& t, std::uint32_t pid) { return persistent_load(t, pid); };
    hooks.reduce = [this](const PickleTree& t, std::uint32_t f, std::uint32_t args) { return reduce(t, f, args); };
    hooks.build = [](const PickleTree& t, std::uint32_t obj, std::uint32_t state) {
      if (t[obj].kind != PickleKind::Dict) throw Error(concat("BUILD on ", t.describe(obj), " is not allowed"));
      if (t[state].kind != PickleKind::Dict && t[state].kind != PickleKind::None)
        throw Error(concat("BUILD of a dict with state ", t.describe(state), " is not allowed (only a dict, e.g. _metadata)"));
    };
    const PickleTree tree = unpickle(zip_.data(*pkl_), concat(source_, ": ", pkl_->name), hooks);

    const PickleValue& root = tree[tree.root()];
    if (root.kind == PickleKind::Opaque)
      throw fail(concat("the checkpoint is an ", tree.describe(tree.root()), ": GLOBAL '", root.s.substr(0, 120),
                        "' is not allowed as the checkpoint or inside its state dict"));
    if (root.kind != PickleKind::Dict)
      throw fail(concat("the checkpoint holds a ", tree.describe(tree.root()), ", not a dict (state dict)"));
    const auto wrapped = tree.get(root, "mvar_wo_ddp");
    if (wrapped && tree[*wrapped].kind == PickleKind::Opaque)
      throw fail(concat("'mvar_wo_ddp' is an ", tree.describe(*wrapped), ": GLOBAL '", tree[*wrapped].s.substr(0, 120),
                        "' is not allowed as the state dict"));
    if (wrapped && tree[*wrapped].kind != PickleKind::Dict)
      throw fail(concat("'mvar_wo_ddp' is a ", tree.describe(*wrapped), ", not a dict (state dict)"));
    const std::uint32_t state_id = wrapped ? *wrapped : tree.root();
    metadata_["format"] = wrapped ? "pth:mvar_wo_ddp" : "pth";

    auto backing = std::make_shared<PthBacking>();
    backing->file = std::move(file);
    std::vector<TensorRef> out;
    std::set<std::string> names;
    std::set<std::uint32_t> visited;
    flatten(tree, state_id, "", 0, visited, names, out, *backing);
    return TensorStore(source_, std::move(out), std::shared_ptr<const void>(backing, backing.get()), std::move(metadata_));
  }

 private:
  Error fail(const std::string& what) const { return Error(concat("pth: ", source_, ": ", what)); }

  /// Finds `<archive>/data.pkl` and checks `version` and `byteorder`.
  void locate() {
    for (const auto& e : zip_.entries()) {
      const auto slash = e.name.find('/');
      if (slash != std::string::npos && e.name.compare(slash, std::string::npos, "/data.pkl") == 0) {
        if (pkl_) throw fail(concat("two pickles in one archive ('", pkl_->name, "', '", e.name, "')"));
        pkl_ = &e;
        prefix_ = e.name.substr(0, slash + 1);
      }
    }
    if (!pkl_) throw fail("no '<archive>/data.pkl' entry: a zip, but not a torch.save checkpoint");
    // torch ≥ 2.6 may be told not to compute CRCs and then records 0; data.pkl is small, check it.
    if (pkl_->crc32 != 0) zip_.verify_crc(*pkl_);
    if (const ZipEntry* v = zip_.find(prefix_ + "version")) {
      std::string s(reinterpret_cast<const char*>(zip_.data(*v).data()), v->size);
      while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
      if (s.empty() || s.size() > 3 || s.find_first_not_of("0123456789") != std::string::npos)
        throw fail(concat("'", v->name, "' does not hold a format version number"));
      metadata_["pth_version"] = s;
    }
    if (const ZipEntry* b = zip_.find(prefix_ + "byteorder")) {
      const std::string_view s(reinterpret_cast<const char*>(zip_.data(*b).data()), b->size);
      if (s != "little") throw fail(concat("byteorder is '", s.substr(0, 16), "'; only little-endian checkpoints are read"));
    }
  }

  // ('storage', torch.<T>Storage, key, location, numel) → an Object naming a checked storage.
  PickleValue persistent_load(const PickleTree& t, std::uint32_t pid) {
    const PickleValue& p = t[pid];
    if (p.kind != PickleKind::Tuple || p.items.size() != 5 || t[p.items[0]].kind != PickleKind::String ||
        t[p.items[0]].s != "storage")
      throw Error(concat("persistent id ", t.describe(pid), " is not ('storage', type, key, location, numel)"));
    const PickleValue& type = t[p.items[1]];
    const PickleValue& key = t[p.items[2]];
    const PickleValue& location = t[p.items[3]];
    const PickleValue& numel = t[p.items[4]];
    if (type.kind != PickleKind::Global || !type.s.starts_with("torch.") || !torch_storage_dtype(type.s.substr(6)))
      throw Error(concat("storage type ", t.describe(p.items[1]), " is not an allowed storage type"));
    if (key.kind != PickleKind::String || key.s.empty() || key.s.find('/') != std::string::npos)
      throw Error(concat("storage key ", t.describe(p.items[2]), " is not a plain name"));
    if (location.kind != PickleKind::String) throw Error(concat("storage location ", t.describe(p.items[3]), " is not a str"));
    if (numel.kind != PickleKind::Int || numel.i < 0) throw Error(concat("storage '", key.s, "' has element count ", t.describe(p.items[4])));
    const DType dt = *torch_storage_dtype(type.s.substr(6));

    auto it = storage_index_.find(key.s);
    if (it != storage_index_.end()) {
      const PthStorage& s = storages_[it->second];
      if (s.dtype != dt || s.numel != std::uint64_t(numel.i))
        throw Error(concat("storage '", key.s, "' is referenced as ", dtype_name(dt), " × ", numel.i, " and as ",
                           dtype_name(s.dtype), " × ", s.numel));
      return PickleValue::object(std::int64_t(it->second) * 2);
    }
    const ZipEntry* e = zip_.find(prefix_ + "data/" + key.s);
    if (!e) throw Error(concat("storage '", key.s, "' has no entry '", prefix_, "data/", key.s, "'"));
    const std::uint64_t n = std::uint64_t(numel.i);
    if (n > std::numeric_limits<std::uint64_t>::max() / 8 || n * dtype_size(dt) != e->size)
      throw Error(concat("storage '", key.s, "' declares ", n, " × ", dtype_name(dt), " but its entry holds ", e->size, " bytes"));
    storage_index_.emplace(key.s, storages_.size());
    storages_.push_back(PthStorage{key.s, dt, n, zip_.data(*e)});
    // Objects: even handles are storages, odd handles are tensors.
    return PickleValue::object(std::int64_t(storages_.size() - 1) * 2);
  }

  static std::vector<std::int64_t> int_tuple(const PickleTree& t, std::uint32_t id, const char* what) {
    const PickleValue& v = t[id];
    if (v.kind != PickleKind::Tuple) throw Error(concat("tensor ", what, " is a ", t.describe(id), ", not a tuple"));
    if (v.items.size() > kPthMaxRank) throw Error(concat("tensor ", what, " has ", v.items.size(), " dimensions (at most ", kPthMaxRank, ")"));
    std::vector<std::int64_t> out;
    for (auto c : v.items) {
      if (t[c].kind != PickleKind::Int || t[c].i < 0) throw Error(concat("tensor ", what, " holds ", t.describe(c)));
      out.push_back(t[c].i);
    }
    return out;
  }

  PickleValue reduce(const PickleTree& t, std::uint32_t f, std::uint32_t args_id) {
    const std::string& fn = t[f].s;
    const PickleValue& args = t[args_id];
    if (fn == "collections.OrderedDict") {
      if (!args.items.empty()) throw Error("OrderedDict(...) with arguments is not allowed");
      return PickleValue::dict();
    }
    if (fn == "torch._utils._rebuild_parameter") {  // (tensor, requires_grad, hooks)
      if (args.items.size() != 3 || t[args.items[0]].kind != PickleKind::Object || t[args.items[0]].i % 2 != 1)
        throw Error("_rebuild_parameter needs (tensor, requires_grad, hooks)");
      return t[args.items[0]];
    }
    if (fn == "torch._utils._rebuild_tensor_v2") return rebuild_tensor(t, args);
    throw Error(concat("REDUCE of '", fn, "' is not allowed"));
  }

  // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
  PickleValue rebuild_tensor(const PickleTree& t, const PickleValue& args) {
    if (args.items.size() != 6 && args.items.size() != 7)
      throw Error(concat("_rebuild_tensor_v2 takes 6 or 7 arguments, got ", args.items.size()));
    const PickleValue& st = t[args.items[0]];
    if (st.kind != PickleKind::Object || st.i % 2 != 0) throw Error(concat("_rebuild_tensor_v2 of ", t.describe(args.items[0]), ", not a storage"));
    const PthStorage& s = storages_[std::size_t(st.i / 2)];
    const PickleValue& off = t[args.items[1]];
    if (off.kind != PickleKind::Int || off.i < 0) throw Error(concat("tensor on storage '", s.key, "' has offset ", t.describe(args.items[1])));
    PthTensor x{std::size_t(st.i / 2), std::uint64_t(off.i), int_tuple(t, args.items[2], "size"),
                int_tuple(t, args.items[3], "stride"), true};
    if (x.shape.size() != x.stride.size())
      throw Error(concat("tensor on storage '", s.key, "' has ", x.shape.size(), " sizes but ", x.stride.size(), " strides"));
    if (t[args.items[4]].kind != PickleKind::Bool) throw Error("tensor requires_grad is not a bool");
    if (t[args.items[5]].kind != PickleKind::Dict) throw Error("tensor backward_hooks is not a dict");
    // Highest element index touched: offset + Σ (size_i − 1)·stride_i, each step checked for overflow.
    const std::uint64_t cap = s.numel;
    std::uint64_t last = x.offset, dense = 1, nonzero = 1;
    bool empty = false;
    for (std::size_t i = x.shape.size(); i-- > 0;) {
      const auto n = std::uint64_t(x.shape[i]), st_i = std::uint64_t(x.stride[i]);
      // As for safetensors (docs/reliability.md F2): each size ≤ 2^40 and the product of the
      // non-zero sizes ≤ 2^60 (which bounds the element count and every partial product), so a
      // zero size cannot carry huge others ([0, 2^62, 2^62]) into code that forms strides.
      if (n > (std::uint64_t{1} << 40))
        throw Error(concat("tensor on storage '", s.key, "' has size ", n, " in one dimension, above the limit of 2^40"));
      if (n != 0 && nonzero > (std::uint64_t{1} << 60) / n)
        throw Error(concat("tensor on storage '", s.key, "' has a shape that overflows (the product of its non-zero sizes exceeds 2^60)"));
      if (n == 0) empty = true;
      else nonzero *= n;
      if (n > 1 && st_i != dense) x.contiguous = false;
      if (n > 1) {
        if (st_i != 0 && (n - 1) > (std::uint64_t{1} << 62) / st_i) throw Error(concat("tensor on storage '", s.key, "' has a stride that overflows"));
        last += (n - 1) * st_i;
        if (last > (std::uint64_t{1} << 62)) throw Error(concat("tensor on storage '", s.key, "' reaches past 2^62 elements"));
      }
      dense *= std::max<std::uint64_t>(n, 1);
    }
    if (!empty && last >= cap)
      throw Error(concat("tensor on storage '", s.key, "' (offset ", x.offset, ", size ", shape_text(x.shape), ", stride ",
                         shape_text(x.stride), ") reaches element ", last, " of a storage of ", cap));
    if (empty && x.offset > cap) throw Error(concat("tensor on storage '", s.key, "' has offset ", x.offset, " past its ", cap, " elements"));
    tensors_.push_back(std::move(x));
    return PickleValue::object(std::int64_t(tensors_.size() - 1) * 2 + 1);
  }

  static std::string shape_text(const std::vector<std::int64_t>& v) {
    TensorRef r;
    r.shape = v;
    return r.shape_string();
  }

  /// The state dict's tensors, in file order, named by key (nested dicts joined with '.').
  void flatten(const PickleTree& t, std::uint32_t dict, const std::string& prefix, int depth, std::set<std::uint32_t>& visited,
               std::set<std::string>& names, std::vector<TensorRef>& out, PthBacking& backing) {
    if (depth > kPthMaxDictDepth) throw fail(concat("state dict nested deeper than ", kPthMaxDictDepth, " levels at '", prefix, "'"));
    if (!visited.insert(dict).second) throw fail(concat("state dict entry '", prefix, "' is a dict reached twice (shared or cyclic)"));
    const PickleValue& d = t[dict];
    for (std::size_t k = 0; k + 1 < d.items.size(); k += 2) {
      const PickleValue& key = t[d.items[k]];
      const PickleValue& val = t[d.items[k + 1]];
      if (key.kind != PickleKind::String)
        throw fail(concat("state dict key ", t.describe(d.items[k]), (prefix.empty() ? "" : " under '" + prefix + "'"), " is not a str"));
      const std::string name = prefix.empty() ? key.s : prefix + "." + key.s;
      if (val.kind == PickleKind::Dict) {
        flatten(t, d.items[k + 1], name, depth + 1, visited, names, out, backing);
      } else if (val.kind == PickleKind::Object && val.i % 2 == 1) {
        if (!names.insert(name).second) throw fail(concat("tensor name '", name, "' appears twice"));
        out.push_back(view(tensors_[std::size_t(val.i / 2)], name, backing));
      } else if (val.kind == PickleKind::Object) {
        throw fail(concat("state dict entry '", name, "' is a bare storage, not a tensor"));
      } else {
        refuse_opaque(t, d.items[k + 1], name);
      }
      // Other plain values (numbers, strings, lists, None) are not tensors: ignored.
    }
  }

  /// Inside the bound state dict no value may be (or hold) an opaque placeholder.
  void refuse_opaque(const PickleTree& t, std::uint32_t id, const std::string& name) {
    const PickleValue& v = t[id];
    if (v.kind == PickleKind::Opaque)
      throw fail(concat("state dict entry '", name, "' is an ", t.describe(id), ": GLOBAL '", v.s.substr(0, 120),
                        "' is not allowed inside the state dict (only tensors and plain values)"));
    if (v.kind != PickleKind::List && v.kind != PickleKind::Tuple && v.kind != PickleKind::Dict) return;
    if (!opaque_scanned_.insert(id).second) return;  // shared or cyclic containers: once each
    for (auto c : v.items) refuse_opaque(t, c, name);
  }

  TensorRef view(const PthTensor& x, const std::string& name, PthBacking& backing) {
    const PthStorage& s = storages_[x.storage];
    const std::size_t es = dtype_size(s.dtype);
    TensorRef r;
    r.name = name;
    r.dtype = s.dtype;
    r.shape = x.shape;
    // numel ≤ 2^62 (checked at REDUCE). A contiguous view lies inside its storage, so numel × es
    // does too; a non-contiguous one (stride 0 may make it far larger) is bounded below first.
    const auto numel = std::size_t(r.numel());
    const std::byte* base = s.bytes.data() + x.offset * es;
    const bool aligned = reinterpret_cast<std::uintptr_t>(base) % es == 0;
    if (numel == 0) {
      r.data = s.bytes.data();
    } else if (x.contiguous && aligned) {
      r.nbytes = numel * es;
      r.data = base;
    } else {  // dense copy, row-major; all copies together stay below the archive's size
      if (numel > (zip_bytes_ - copied_) / es)
        throw fail(concat("tensor '", name, "' ", shape_text(x.shape), ": dense copies of non-contiguous tensors would ",
                          "exceed the file's ", zip_bytes_, " bytes (stride-0 or overlapping views?)"));
      r.nbytes = numel * es;
      copied_ += r.nbytes;
      check_allocation(r.nbytes, concat("pth: ", source_, ": dense copy of tensor '", name, "'"));
      auto buf = std::make_unique<std::byte[]>(r.nbytes);
      std::vector<std::int64_t> idx(x.shape.size(), 0);
      for (std::size_t i = 0; i < numel; ++i) {
        std::uint64_t src = x.offset;
        for (std::size_t d = 0; d < idx.size(); ++d) src += std::uint64_t(idx[d]) * std::uint64_t(x.stride[d]);
        std::memcpy(buf.get() + i * es, s.bytes.data() + src * es, es);
        for (std::size_t d = idx.size(); d-- > 0;) {
          if (++idx[d] < x.shape[d]) break;
          idx[d] = 0;
        }
      }
      r.data = buf.get();
      backing.owned.push_back(std::move(buf));
    }
    return r;
  }

  ZipArchive zip_;
  std::string source_;
  const ZipEntry* pkl_ = nullptr;
  std::string prefix_;
  std::map<std::string, std::string> metadata_;
  std::vector<PthStorage> storages_;
  std::map<std::string, std::size_t> storage_index_;
  std::vector<PthTensor> tensors_;
  std::set<std::uint32_t> opaque_scanned_;
  std::size_t zip_bytes_ = 0, copied_ = 0;
};

}  // namespace detail

/// Reads a torch.save checkpoint held in memory. The bytes must outlive the store (dense copies
/// of non-contiguous tensors are owned by the store). For fuzzing and tests.
inline TensorStore load_pth_bytes(std::span<const std::byte> bytes, const std::string& source = "<memory>") {
  return detail::PthReader(bytes, source).read(nullptr);
}

/// The store would point into a temporary: keep the bytes in a variable.
TensorStore load_pth_bytes(std::vector<std::byte>&&, const std::string& = "<memory>") = delete;

namespace detail {
/// The store of a mapped torch.save file: contiguous tensors point into the map, which the store
/// keeps alive and records as its mapped range (non-contiguous tensors' dense copies live outside it).
inline TensorStore pth_from_map(std::shared_ptr<const MappedFile> map, const std::string& path) {
  TensorStore st = PthReader(std::span(map->data(), map->size()), path).read(map);
  st.set_mapped_range({map->data(), map->size()});
  return st;
}
}  // namespace detail

/// Opens a torch.save checkpoint (memory-mapped; contiguous tensors point into the map).
inline TensorStore load_pth(const std::string& path) {
  return detail::pth_from_map(std::make_shared<MappedFile>(path), path);
}

}  // namespace mvar
