// mvar/core/assert.hpp — MVAR_ASSERT: internal preconditions of kernels and views.
// On in debug builds (no NDEBUG) and whenever MVAR_ENABLE_ASSERTS is defined (the test build
// defines it even at -O2). Off otherwise: hot loops never pay for it in release builds.
// API-boundary failures are not asserts: they throw mvar::Error (error.hpp).
#pragma once

#include <cstdio>
#include <cstdlib>

#if !defined(NDEBUG) || defined(MVAR_ENABLE_ASSERTS)
#define MVAR_ASSERTS_ON 1
#define MVAR_ASSERT(cond)                                                                  \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      std::fprintf(stderr, "mvar: assertion failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                        \
    }                                                                                      \
  } while (0)
#else
#define MVAR_ASSERTS_ON 0
#define MVAR_ASSERT(cond) ((void)0)
#endif
