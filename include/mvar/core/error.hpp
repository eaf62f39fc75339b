// mvar/core/error.hpp — the one exception type thrown at API boundaries (files, options,
// labels, user-supplied shapes), and `concat`, a tiny string builder (GCC 12 has no <format>).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace mvar {

/// Thrown for every failure a caller can cause: a bad file, option, label or shape.
/// The message says what was wrong, where, and what was expected.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

/// Streams every argument into one string: concat("tensor '", name, "' has ", n, " dims").
template <class... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

}  // namespace mvar
