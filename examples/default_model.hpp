// examples/default_model.hpp — where the example programs find the default model: the
// MVAR_MODEL_DIR environment variable, else share/mvar/models beside the program's own folder (the
// installed layout, <prefix>/bin + <prefix>/share/mvar/models; the build tree mirrors it with a
// link), else models/ beside the program. No path of the build machine is compiled in.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "mvar/core/error.hpp"

namespace examples {

namespace fs = std::filesystem;
using mvar::concat;

/// The default model: $MVAR_MODEL_DIR, else share/mvar/models beside the binary's folder (the
/// installed layout; the build tree mirrors it with a link), else models/ beside the binary.
inline fs::path default_model_dir() {
  std::vector<fs::path> tried;
  if (const char* env = std::getenv("MVAR_MODEL_DIR"); env && *env) tried.emplace_back(env);
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    tried.push_back(exe.parent_path().parent_path() / "share" / "mvar" / "models");
    tried.push_back(exe.parent_path() / "models");
  }
  for (const auto& d : tried)
    if (fs::exists(d / "fashion_mnist" / "config.json", ec)) return d / "fashion_mnist";
  std::string where;
  for (const auto& d : tried) where += "\n  " + d.string();
  throw mvar::Error(concat("the default model was not found; looked in:", where, "\n(set MVAR_MODEL_DIR, or give --transformer and --vae)"));
}

}  // namespace examples
