// mvar/core/memory_limit.hpp — refuse an allocation that cannot succeed, before making it.
//
// A checkpoint or a request declares sizes (shapes × dtype, batch × tokens × width); a hostile or
// corrupt file can declare terabytes. `check_allocation(bytes, what)` compares the request with
// what this process could ever get and throws mvar::Error naming the size when it cannot fit:
//   - physical memory: sysconf(_SC_PHYS_PAGES) × sysconf(_SC_PAGE_SIZE);
//   - the address-space limit RLIMIT_AS (`ulimit -v`), when one is set;
//   - the cgroup v2 memory limit (/sys/fs/cgroup/memory.max) when it is a number: inside a
//     container, sysconf still reports the host's memory.
// It is a sanity bound, not a reservation: passing it does not promise the memory is free now.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <limits>
#include <string>

#include <sys/resource.h>
#include <unistd.h>

#include "mvar/core/error.hpp"

namespace mvar {

/// The bounds a single allocation is checked against; 0 means "no such bound".
struct MemoryLimits {
  std::uint64_t physical = 0;       // bytes of RAM (sysconf)
  std::uint64_t address_space = 0;  // RLIMIT_AS soft limit, 0 when unlimited
  std::uint64_t cgroup = 0;         // cgroup v2 memory.max, 0 when "max" or absent
};

namespace detail {

inline std::uint64_t read_cgroup_memory_max(const char* path = "/sys/fs/cgroup/memory.max") {
  std::FILE* f = std::fopen(path, "r");
  if (!f) return 0;
  unsigned long long v = 0;
  const int got = std::fscanf(f, "%llu", &v);  // "max" does not parse as a number → no bound
  std::fclose(f);
  return got == 1 ? std::uint64_t(v) : 0;
}

inline std::string human_bytes(std::uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = double(b);
  int u = 0;
  while (v >= 1024.0 && u < 6) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

/// The check itself, separated from the system queries so that it can be tested with any limits.
inline void check_allocation_against(std::uint64_t bytes, const std::string& what, const MemoryLimits& lim) {
  auto refuse = [&](std::uint64_t limit, const char* which) {
    throw Error(concat("mvar: ", what, " needs ", bytes, " bytes (", human_bytes(bytes), "), more than ", which,
                       " of ", limit, " bytes (", human_bytes(limit), "); refusing before allocating"));
  };
  if (lim.physical && bytes > lim.physical) refuse(lim.physical, "this machine's physical memory");
  if (lim.address_space && bytes > lim.address_space) refuse(lim.address_space, "the address-space limit (RLIMIT_AS)");
  if (lim.cgroup && bytes > lim.cgroup) refuse(lim.cgroup, "the cgroup memory limit (memory.max)");
}

}  // namespace detail

/// Reads the current limits of this process (cheap: three system calls and one small file).
inline MemoryLimits memory_limits() {
  MemoryLimits lim;
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page = ::sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && page > 0) lim.physical = std::uint64_t(pages) * std::uint64_t(page);
  struct rlimit rl {};
  if (::getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) lim.address_space = std::uint64_t(rl.rlim_cur);
  lim.cgroup = detail::read_cgroup_memory_max();
  return lim;
}

/// Throws mvar::Error, with the size in bytes and what it was for, when `bytes` cannot fit in
/// this process's memory (see the header comment). Call it before allocating anything whose size
/// comes from a file or a user option: `check_allocation(numel * 4, "tensor 'head.weight'")`.
inline void check_allocation(std::size_t bytes, const std::string& what) {
  detail::check_allocation_against(bytes, what, memory_limits());
}

/// Multiplies sizes that come from untrusted input; throws instead of wrapping around.
/// `checked_bytes({B, L, C}, sizeof(float), "activations")` = B·L·C·4, or an Error naming `what`.
inline std::size_t checked_bytes(std::initializer_list<std::uint64_t> extents, std::size_t elem_size,
                                 const std::string& what) {
  std::uint64_t n = elem_size;
  for (std::uint64_t e : extents) {
    if (e != 0 && n > std::numeric_limits<std::size_t>::max() / e)
      throw Error(concat("mvar: ", what, ": size overflows (more than 2^64 bytes)"));
    n *= e;
  }
  return static_cast<std::size_t>(n);
}

}  // namespace mvar
