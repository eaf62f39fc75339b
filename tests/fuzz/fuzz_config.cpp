// libFuzzer harness for the config.json reader (model/model_description.hpp,
// parse_model_description: the same code load_model_description runs after its file checks).
//
// Contract checked on every input: the reader either throws mvar::Error (any other exception —
// nlohmann's own, std::bad_alloc, … — escapes and libFuzzer reports it) or returns a description
// whose every value lies inside the documented ranges: a valid ModelConfig with 1–16 scales, a
// VaeConfig that validates, class names empty or one per class, sampling settings in range.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_check.hpp"
#include "mvar/model/model_description.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const mvar::ModelDescription m = mvar::parse_model_description(text, "fuzz.json");
    namespace lim = mvar::description_limits;
    const mvar::ModelConfig& a = m.arch;
    MVAR_FUZZ_CHECK(a.valid());
    MVAR_FUZZ_CHECK(a.patch_nums.count >= 1 && a.patch_nums.count <= 16);
    MVAR_FUZZ_CHECK(a.depth <= lim::depth && a.width <= lim::width && a.vocab <= lim::vocab);
    MVAR_FUZZ_CHECK(a.num_classes <= lim::classes && a.cvae <= lim::cvae);
    for (int s = 0; s < a.patch_nums.count; ++s) MVAR_FUZZ_CHECK(a.patch_nums[s] >= 1 && a.patch_nums[s] <= lim::patch_side);
    m.vae.validate();  // throws mvar::Error (escaping = a harness failure below) if the reader let a bad size through
    MVAR_FUZZ_CHECK(m.vae.levels() >= 1 && m.vae.levels() <= lim::vae_levels);
    MVAR_FUZZ_CHECK(m.vae.cvae == a.cvae && m.vae.vocab == a.vocab);
    MVAR_FUZZ_CHECK(std::isfinite(m.vae.quant_resi));
    MVAR_FUZZ_CHECK(m.class_names.empty() || m.class_names.size() == std::size_t(a.num_classes));
    for (const auto& n : m.class_names) MVAR_FUZZ_CHECK(!n.empty() && n.size() <= mvar::kMaxClassNameBytes);
    MVAR_FUZZ_CHECK(std::isfinite(m.rec.cfg) && m.rec.cfg >= 0.f);
    MVAR_FUZZ_CHECK(m.rec.top_k >= 0 && m.rec.top_k <= a.vocab);
    MVAR_FUZZ_CHECK(m.rec.top_p > 0.f && m.rec.top_p <= 1.f);
    MVAR_FUZZ_CHECK(m.kind.empty() || m.kind == "mvar" || m.kind == "var");
    (void)a.seq_len();
    (void)a.parameters();
  } catch (const mvar::Error&) {
    // Refusing a malformed description with a message is the expected outcome.
  }
  return 0;
}
