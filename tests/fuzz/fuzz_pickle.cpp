// libFuzzer harness for the restricted unpickler alone (io/pickle.hpp), on raw pickle bytes (the
// data.pkl of a checkpoint, without the zip around it), with hooks shaped like io/pth.hpp's:
// a few allowed globals, persistent ids and REDUCE answered with hook objects, BUILD accepted on
// dicts, and every other GLOBAL turned into an opaque placeholder (issue #23 item 9).
//
// Contract checked on every input: unpickle either throws mvar::Error or returns a tree whose
// root and every child index lie inside the arena; placeholders are only ever made by the
// unpickler (never handed to a hook as a callable or as the object of BUILD); the tree's
// containers respect PickleLimits::max_depth; describe() works on every value.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "fuzz_check.hpp"
#include "mvar/io/pickle.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto bytes = std::as_bytes(std::span<const std::uint8_t>(data, size));
  mvar::PickleHooks hooks;
  hooks.opaque_unknown_globals = true;
  hooks.allow_global = [](std::string_view module, std::string_view name) {
    return (module == "collections" && name == "OrderedDict") || (module == "torch._utils" && name == "_rebuild_tensor_v2") ||
           (module == "torch" && name == "FloatStorage");
  };
  hooks.persistent_load = [](const mvar::PickleTree& t, std::uint32_t pid) {
    MVAR_FUZZ_CHECK(pid < t.size());
    if (t[pid].kind != mvar::PickleKind::Tuple) throw mvar::Error("persistent id is not a tuple");
    return mvar::PickleValue::object(0);
  };
  hooks.reduce = [](const mvar::PickleTree& t, std::uint32_t f, std::uint32_t args) {
    MVAR_FUZZ_CHECK(f < t.size() && args < t.size());
    MVAR_FUZZ_CHECK(t[f].kind == mvar::PickleKind::Global);  // placeholders are never called
    MVAR_FUZZ_CHECK(t[args].kind == mvar::PickleKind::Tuple);
    if (t[f].s == "collections.OrderedDict") {
      if (!t[args].items.empty()) throw mvar::Error("OrderedDict with arguments");
      return mvar::PickleValue::dict();
    }
    return mvar::PickleValue::object(1);
  };
  hooks.build = [](const mvar::PickleTree& t, std::uint32_t obj, std::uint32_t state) {
    MVAR_FUZZ_CHECK(obj < t.size() && state < t.size());
    MVAR_FUZZ_CHECK(t[obj].kind != mvar::PickleKind::Opaque);  // BUILD on a placeholder never reaches a hook
    if (t[obj].kind != mvar::PickleKind::Dict) throw mvar::Error("BUILD on a non-dict");
  };
  const mvar::PickleLimits limits;
  try {
    const mvar::PickleTree tree = mvar::unpickle(bytes, "fuzz.pkl", hooks, limits);
    MVAR_FUZZ_CHECK(tree.root() < tree.size());
    MVAR_FUZZ_CHECK(tree.size() <= limits.max_values);
    for (std::uint32_t id = 0; id < tree.size(); ++id) {
      const mvar::PickleValue& v = tree[id];
      MVAR_FUZZ_CHECK(v.depth >= 0 && v.depth <= limits.max_depth);
      for (auto c : v.items) MVAR_FUZZ_CHECK(c < tree.size());
      if (v.kind == mvar::PickleKind::Dict) MVAR_FUZZ_CHECK(v.items.size() % 2 == 0);
      if (v.kind == mvar::PickleKind::Opaque) MVAR_FUZZ_CHECK(v.items.empty() && v.i >= 0 && std::size_t(v.i) < size);
      (void)tree.describe(id);
    }
  } catch (const mvar::Error&) {
    // Refusing a malformed or disallowed pickle with a message is the expected outcome.
  }
  return 0;
}
