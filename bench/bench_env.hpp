// bench/bench_env.hpp — settings the benchmarks read from the environment.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "mvar/core/parallel.hpp"

namespace mvar::bench {

/// Threads of the multi-threaded rows: MVAR_THREADS, else 2 (the project machine's cores).
inline int threads() {
  const char* e = std::getenv("MVAR_THREADS");
  return e && std::atoi(e) > 0 ? std::atoi(e) : 2;
}

/// The pool's spin: MVAR_POOL_SPIN_US, else ThreadPool::default_spin (for the A/B of
/// docs/performance.md's "Measured design choices").
inline std::chrono::microseconds pool_spin(int threads) {
  const char* e = std::getenv("MVAR_POOL_SPIN_US");
  return e ? std::chrono::microseconds(std::max(0, std::atoi(e))) : ThreadPool::default_spin(threads);
}

}  // namespace mvar::bench
