// libFuzzer harness for checkpoint loading through mvar::load_checkpoint_bytes: format sniffing,
// then the zip reader (io/zip.hpp), the restricted unpickler (io/pickle.hpp) and the torch.save
// state-dict reader (io/pth.hpp) — or the safetensors reader for non-zip input.
//
// Contract checked on every input: the loader either throws mvar::Error (any other exception —
// std::bad_alloc, std::length_error, … — escapes and libFuzzer reports it) or returns tensors
// whose byte counts equal shape × dtype size and that can be read in full. Tensors point into the
// input (zero copy) or into dense copies the store owns; ASan checks both.
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz_check.hpp"
#include "mvar/io/checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto bytes = std::as_bytes(std::span<const std::uint8_t>(data, size));
  try {
    const mvar::TensorStore st = mvar::load_checkpoint_bytes(bytes, "fuzz.pth");
    for (const auto& t : st.tensors()) {
      MVAR_FUZZ_CHECK(st.find(t.name) == &t);
      std::uint64_t numel = 1;
      for (auto e : t.shape) {
        MVAR_FUZZ_CHECK(e >= 0 && e <= (std::int64_t(1) << 40));
        numel *= std::uint64_t(e);
      }
      MVAR_FUZZ_CHECK(numel * mvar::dtype_size(t.dtype) == t.nbytes);
      MVAR_FUZZ_CHECK(t.nbytes == 0 || t.data != nullptr);
      (void)t.shape_string();
      if (t.nbytes <= (std::size_t(1) << 16)) {
        volatile float sink = 0.f;
        for (float v : t.to_float()) sink = sink + v;
      }
    }
    for (const auto& [k, v] : st.metadata()) (void)(k.size() + v.size());
  } catch (const mvar::Error&) {
    // Refusing a malformed checkpoint with a message is the expected outcome.
  }
  return 0;
}
