// mvar/io/checkpoint.hpp — load_checkpoint: one entry point for every weight file mvar reads.
// Dispatches on the first bytes: "PK\x03\x04" (a zip) → PyTorch checkpoint (io/pth.hpp, which
// unwraps MVAR's "mvar_wo_ddp"); torch's legacy magic number → the pre-1.6 torch.save format,
// refused with a hint; anything else → safetensors (io/safetensors.hpp). Tensor names are the
// official state-dict names either way.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

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
  // Legacy torch.save starts with its pickled magic number 0x1950a86a20f9469cfc6c: PROTO 2,
  // LONG1 of 10 bytes. (Two bytes would not do: a safetensors header of 640 bytes starts 80 02.)
  static constexpr unsigned char legacy[14] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c,
                                               0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
  if (bytes.size() >= sizeof legacy) {
    bool match = true;
    for (std::size_t i = 0; i < sizeof legacy; ++i) match = match && at(i) == legacy[i];
    if (match) return CheckpointFormat::LegacyPth;
  }
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

/// The store would point into a temporary: keep the bytes in a variable.
TensorStore load_checkpoint_bytes(std::vector<std::byte>&&, const std::string& = "<memory>") = delete;

/// Opens a checkpoint file: .pth (torch.save zip, plain state dict or {"mvar_wo_ddp": …}) or
/// safetensors, memory-mapped either way.
inline TensorStore load_checkpoint(const std::string& path) {
  auto map = std::make_shared<const MappedFile>(path);
  switch (sniff_checkpoint({map->data(), map->size()})) {
    case CheckpointFormat::Pth: return detail::pth_from_map(map, path);
    case CheckpointFormat::LegacyPth: detail::refuse_legacy_pth(path);
    case CheckpointFormat::Safetensors: break;
  }
  return detail::safetensors_from_map(map, path);
}

}  // namespace mvar
