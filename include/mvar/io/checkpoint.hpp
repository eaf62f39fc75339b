// mvar/io/checkpoint.hpp — load_checkpoint: one entry point for every weight file mvar reads.
// Dispatches on the first bytes: "PK\x03\x04" (a zip) → PyTorch checkpoint (io/pth.hpp, which
// unwraps MVAR's "mvar_wo_ddp"); a pickle opcode 0x80 → the legacy pre-1.6 torch.save format,
// refused with a hint; anything else → safetensors (io/safetensors.hpp). Tensor names are the
// official state-dict names either way.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <span>
#include <string>

#include "mvar/core/error.hpp"
#include "mvar/io/mapped_file.hpp"
#include "mvar/io/pth.hpp"
#include "mvar/io/safetensors.hpp"
#include "mvar/io/tensor_store.hpp"

namespace mvar {

enum class CheckpointFormat { Pth, LegacyPth, Safetensors };

/// The format the leading bytes announce.
inline CheckpointFormat sniff_checkpoint(std::span<const std::byte> bytes) {
  auto at = [&](std::size_t i) { return std::to_integer<unsigned char>(bytes[i]); };
  if (bytes.size() >= 4 && at(0) == 'P' && at(1) == 'K' && at(2) == 3 && at(3) == 4) return CheckpointFormat::Pth;
  // Legacy torch.save starts with a pickled magic number (protocol 2: 0x80 0x02 0x8a …).
  if (bytes.size() >= 2 && at(0) == 0x80 && at(1) <= 5) return CheckpointFormat::LegacyPth;
  return CheckpointFormat::Safetensors;
}

namespace detail {
[[noreturn]] inline void refuse_legacy_pth(const std::string& source) {
  throw Error(concat(source, ": a legacy (pre-1.6, non-zip) torch.save file; re-save it with torch >= 1.6 ",
                     "or convert it with tools/convert_checkpoint.py"));
}
}  // namespace detail

/// Reads a checkpoint held in memory (fuzzing, tests). The bytes must outlive the store.
inline TensorStore load_checkpoint_bytes(std::span<const std::byte> bytes, const std::string& source = "<memory>") {
  switch (sniff_checkpoint(bytes)) {
    case CheckpointFormat::Pth: return load_pth_bytes(bytes, source);
    case CheckpointFormat::LegacyPth: detail::refuse_legacy_pth(source);
    case CheckpointFormat::Safetensors: break;
  }
  return parse_safetensors_bytes(bytes, source);
}

/// Opens a checkpoint file: .pth (torch.save zip, plain state dict or {"mvar_wo_ddp": …}) or
/// safetensors, memory-mapped either way.
inline TensorStore load_checkpoint(const std::string& path) {
  auto map = std::make_shared<MappedFile>(path);
  const std::span<const std::byte> bytes(map->data(), map->size());
  switch (sniff_checkpoint(bytes)) {
    case CheckpointFormat::Pth: return detail::PthReader(bytes, path).read(map);
    case CheckpointFormat::LegacyPth: detail::refuse_legacy_pth(path);
    case CheckpointFormat::Safetensors: break;
  }
  std::map<std::string, std::string> meta;
  auto tensors = detail::parse_safetensors(map->data(), map->size(), path, &meta);
  return TensorStore(path, std::move(tensors), std::shared_ptr<const void>(map, map.get()), std::move(meta));
}

}  // namespace mvar
