// libFuzzer harness for the .npz reader (mvar::NpzReader over ZipArchive, the .npy header parser)
// and the evaluation settings reader that --merge applies to every shard.
//
// Contract checked on every input: only mvar::Error escapes; every array returned lies inside the
// input and its data size equals shape × item size; every member can be CRC-checked.
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz_check.hpp"
#include "mvar/io/npz.hpp"
#include "mvar/pipeline/evaluation.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto bytes = std::as_bytes(std::span<const std::uint8_t>(data, size));
  try {
    const mvar::NpzReader r(bytes, "fuzz.npz");
    for (const auto& e : r.zip().entries()) {
      try {
        r.verify_crc(e.name);
      } catch (const mvar::Error&) {
      }
      if (e.name.size() > 4 && e.name.compare(e.name.size() - 4, 4, ".npy") == 0) {
        try {
          const mvar::NpyArray a = r.array(e.name.substr(0, e.name.size() - 4));
          MVAR_FUZZ_CHECK(mvar::detail::npy_data_bytes(a.header) == a.data.size());
          MVAR_FUZZ_CHECK(a.data.empty() || (a.data.data() >= bytes.data() && a.data.data() + a.data.size() <= bytes.data() + size));
          volatile unsigned sink = 0;
          for (std::size_t i = 0; i < a.data.size(); i += 61) sink = sink + std::to_integer<unsigned>(a.data[i]);
        } catch (const mvar::Error&) {
        }
      }
    }
    try {
      (void)mvar::detail::read_settings(r);
    } catch (const mvar::Error&) {
    }
  } catch (const mvar::Error&) {
  }
  return 0;
}
