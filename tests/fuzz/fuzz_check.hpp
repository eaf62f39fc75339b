// tests/fuzz/fuzz_check.hpp — MVAR_FUZZ_CHECK: a property a fuzz harness verifies on every input.
// Unlike MVAR_ASSERT it is never compiled out, and it aborts, which libFuzzer (and the replay
// driver) report with the input that triggered it.
#pragma once

#include <cstdio>
#include <cstdlib>

#define MVAR_FUZZ_CHECK(cond)                                                               \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      std::fprintf(stderr, "fuzz check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);   \
      std::abort();                                                                         \
    }                                                                                       \
  } while (0)
