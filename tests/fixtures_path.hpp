// tests/fixtures_path.hpp — where the reference fixtures live (CMake cache variable
// MVAR_FIXTURE_DIR, default tests/fixtures) and a helper to open one of them.
#pragma once

#include <string>

#include "mvar/io/safetensors.hpp"

namespace mvar::test {

inline std::string fixture_path(const std::string& name) { return std::string(MVAR_FIXTURE_DIR) + "/" + name; }
inline TensorStore load_fixture(const std::string& name) { return load_safetensors(fixture_path(name)); }

}  // namespace mvar::test
