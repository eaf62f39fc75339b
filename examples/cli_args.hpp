// examples/cli_args.hpp — a small, strict command-line parser for the examples: every option is
// declared with its help text; unknown options, missing values, malformed numbers and integers
// beyond the option's type are errors that name the option (never silently truncated).
#pragma once

#include <charconv>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "mvar/core/error.hpp"

namespace cli {

using mvar::concat;

/// A bad command line (exit code 2), as opposed to a runtime failure.
class UsageError : public mvar::Error {
 public:
  using mvar::Error::Error;
};

struct OptionSpec {
  std::string name;     // without the leading "--"
  std::string value;    // value placeholder, empty for a flag
  std::string help;
  std::string fallback;  // default shown in --help
};

class Args {
 public:
  explicit Args(std::vector<OptionSpec> specs) : specs_(std::move(specs)) {}

  void parse(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "-h") a = "--help";
      if (a.rfind("--", 0) != 0) throw UsageError(concat("unexpected argument '", a, "' (options start with --; see --help)"));
      std::string key = a.substr(2), val;
      const auto eq = key.find('=');
      const bool has_eq = eq != std::string::npos;
      if (has_eq) val = key.substr(eq + 1), key = key.substr(0, eq);
      const OptionSpec* spec = find(key);
      if (!spec) throw UsageError(concat("unknown option '--", key, "' (see --help)"));
      if (spec->value.empty()) {
        if (has_eq) throw UsageError(concat("option '--", key, "' takes no value"));
        values_[key] = "1";
        continue;
      }
      if (!has_eq) {
        if (i + 1 >= argc) throw UsageError(concat("option '--", key, "' needs a value (", spec->value, ")"));
        val = argv[++i];
      }
      values_[key] = val;
    }
  }

  bool has(const std::string& k) const { return values_.count(k) > 0; }
  std::string str(const std::string& k, const std::string& def = "") const {
    auto it = values_.find(k);
    return it == values_.end() ? def : it->second;
  }
  /// The value of option k (def when absent), which must be one of `allowed`: otherwise a
  /// UsageError "--k must be 'a', 'b' or 'c', got 'x'".
  std::string choice(const std::string& k, const std::string& def, std::initializer_list<const char*> allowed) const {
    const std::string v = str(k, def);
    std::string list;
    std::size_t i = 0;
    for (const char* a : allowed) {
      if (v == a) return v;
      list += concat(i == 0 ? "" : i + 1 == allowed.size() ? " or " : ", ", "'", a, "'");
      ++i;
    }
    throw UsageError(concat("--", k, " must be ", list, ", got '", v, "'"));
  }
  /// The value of option k as a T (def when absent). A value outside T's range is a UsageError
  /// naming the option and the range (`--threads 4294967297` is refused, not 1 thread).
  template <class T>
  T integer(const std::string& k, std::type_identity_t<T> def) const {
    return has(k) ? parse_integer<T>(k, str(k)) : def;
  }
  double number(const std::string& k, double def) const {
    if (!has(k)) return def;
    const std::string s = str(k);
    std::size_t used = 0;
    double v = 0;
    try {
      v = std::stod(s, &used);
    } catch (...) {
      used = 0;
    }
    if (used != s.size() || s.empty()) throw UsageError(concat("option '--", k, "': '", s, "' is not a number"));
    return v;
  }
  /// Comma-separated words ("Sneaker,Bag,3").
  std::vector<std::string> list(const std::string& k) const {
    std::vector<std::string> out;
    const std::string s = str(k);
    std::size_t b = 0;
    while (b <= s.size()) {
      const auto e = std::min(s.find(',', b), s.size());
      out.push_back(s.substr(b, e - b));
      b = e + 1;
    }
    return out;
  }
  /// Comma-separated integers ("3,17,980").
  std::vector<int> int_list(const std::string& k) const {
    std::vector<int> out;
    const std::string s = str(k);
    std::size_t b = 0;
    while (b <= s.size()) {
      const auto e = std::min(s.find(',', b), s.size());
      out.push_back(parse_integer<int>(k, s.substr(b, e - b)));
      b = e + 1;
    }
    return out;
  }

  std::string help(std::string_view usage) const {
    std::string h = std::string(usage) + "\n\nOptions:\n";
    for (const auto& s : specs_) {
      std::string left = "  --" + s.name + (s.value.empty() ? "" : " " + s.value);
      if (left.size() < 28) left.resize(28, ' ');
      else left += "\n" + std::string(28, ' ');
      h += left + s.help + (s.fallback.empty() ? "" : " [default: " + s.fallback + "]") + "\n";
    }
    return h;
  }

 private:
  /// Parses all of s as a T: "not an integer" for anything else, "out of range" (with T's range)
  /// for an integer T cannot hold, negative numbers for unsigned T included.
  template <class T>
  static T parse_integer(const std::string& k, const std::string& s) {
    static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
    auto out_of_range = [&] {
      return UsageError(concat("option '--", k, "': '", s, "' is out of range [", +std::numeric_limits<T>::min(), ", ",
                               +std::numeric_limits<T>::max(), "]"));
    };
    const char* b = s.data();
    const char* e = b + s.size();
    if constexpr (std::is_unsigned_v<T>) {
      if (s.size() > 1 && s[0] == '-') {  // from_chars rejects the sign: tell "negative" from "not a number"
        std::uintmax_t mag = 0;
        auto [p, ec] = std::from_chars(b + 1, e, mag);
        if (p == e && ec == std::errc() && mag == 0) return T(0);
        if (p == e && (ec == std::errc() || ec == std::errc::result_out_of_range)) throw out_of_range();
      }
    }
    T v{};
    auto [p, ec] = std::from_chars(b, e, v);
    if (!s.empty() && p == e && ec == std::errc::result_out_of_range) throw out_of_range();
    if (s.empty() || ec != std::errc() || p != e) throw UsageError(concat("option '--", k, "': '", s, "' is not an integer"));
    return v;
  }

  const OptionSpec* find(const std::string& k) const {
    for (const auto& s : specs_)
      if (s.name == k) return &s;
    return nullptr;
  }
  std::vector<OptionSpec> specs_;
  std::map<std::string, std::string> values_;
};

}  // namespace cli
