// libFuzzer harness for the safetensors reader (mvar::parse_safetensors_bytes).
//
// Contract checked on every input: the reader either throws mvar::Error (any other exception
// escapes and libFuzzer reports it as a crash) or returns tensors that all lie inside the input,
// whose byte counts equal shape × dtype size, and that can be read in full (ASan catches any
// read past the input, which libFuzzer holds in an exactly-sized heap block).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "fuzz_check.hpp"
#include "mvar/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto bytes = std::as_bytes(std::span<const std::uint8_t>(data, size));
  try {
    const mvar::TensorStore st = mvar::parse_safetensors_bytes(bytes, "fuzz.safetensors");
    const std::byte* begin = bytes.data();
    const std::byte* end = begin + size;
    for (const auto& t : st.tensors()) {
      MVAR_FUZZ_CHECK(st.find(t.name) == &t);
      MVAR_FUZZ_CHECK(mvar::dtype_size(t.dtype) != 0);
      // Extents are non-negative and their product is the byte count / dtype size.
      std::uint64_t numel = 1;
      std::uint64_t nonzero = 1;
      for (auto e : t.shape) {
        MVAR_FUZZ_CHECK(e >= 0 && std::uint64_t(e) <= mvar::kSafetensorsMaxExtent);
        numel *= std::uint64_t(e);  // cannot wrap: the reader bounds the running product
        if (e != 0) {
          MVAR_FUZZ_CHECK(nonzero <= (std::uint64_t(1) << 60) / std::uint64_t(e));  // even beside a 0 extent
          nonzero *= std::uint64_t(e);
        }
      }
      MVAR_FUZZ_CHECK(numel * mvar::dtype_size(t.dtype) == t.nbytes);
      MVAR_FUZZ_CHECK(t.nbytes == 0 || (t.data >= begin + 8 && t.data + t.nbytes <= end));
      (void)t.shape_string();
      // Touch every byte through the public conversion (bounded: inputs are small anyway).
      if (t.nbytes <= (std::size_t(1) << 16)) {
        volatile float sink = 0.f;
        for (float v : t.to_float()) sink = sink + v;
        // to_int() reads integer tensors (lvl_1L, labels) and refuses float ones with an
        // mvar::Error: their values may be NaN/Inf/huge (finding F1 in docs/reliability.md).
        bool refused = false;
        try {
          for (auto v : t.to_int()) sink = sink + float(v & 1);
        } catch (const mvar::Error&) {
          refused = true;
        }
        MVAR_FUZZ_CHECK(refused == !mvar::is_integer_dtype(t.dtype));
      }
    }
    (void)st.total_bytes();
    for (const auto& [k, v] : st.metadata()) (void)(k.size() + v.size());
  } catch (const mvar::Error&) {
    // Refusing a malformed file with a message is the expected outcome.
  }
  return 0;
}
