// mvar/core/process_memory.hpp — this process's resident memory, for reports and benchmarks.
//
// Linux exposes the resident set (VmRSS) and its high-water mark (VmHWM) in /proc/self/status,
// and lets a process restart that mark at the current RSS by writing "5" to /proc/self/clear_refs
// (Linux ≥ 4.0): a program with phases that never overlap (sampling, then decoding) can report
// each phase's own peak. Elsewhere the readers return −1 and the reset returns false.
#pragma once

#include <cstring>
#include <fstream>
#include <string>

namespace mvar {

/// A "Key:" field of /proc/self/status in KiB (e.g. "VmRSS", "VmHWM", "RssAnon"); −1 where unavailable.
inline long process_status_kib(const char* key) {
  std::ifstream f("/proc/self/status");
  const std::size_t n = std::strlen(key);
  for (std::string line; std::getline(f, line);)
    if (line.compare(0, n, key) == 0 && line.size() > n && line[n] == ':') return std::stol(line.substr(n + 1));
  return -1;
}

/// Restarts the resident-set high-water mark (VmHWM) at the current resident set; false where the
/// system cannot.
inline bool reset_peak_resident() {
  std::ofstream f("/proc/self/clear_refs");
  return bool(f << "5" << std::flush);
}

}  // namespace mvar
