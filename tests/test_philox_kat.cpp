// Philox-4×32-10 known answers (sampling/rng.hpp): CounterRng::bits must be the published
// generator of Salmon et al. (SC'11), not only a statistically fine one. Two references:
//   * the known-answer vectors published with Random123 (kat_vectors, "philox4x32 10" lines);
//   * Random123's own implementation (Debian librandom123-dev, header-only, a test-only
//     dependency installed by .ci/run), compared on 100,000 random counters and keys.
// Without the package the second case fails and says what to install (it never skips).
#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <random>

#include "mvar/sampling/rng.hpp"

#if __has_include(<Random123/philox.h>)
#include <Random123/philox.h>
#define MVAR_HAVE_RANDOM123 1
#endif

namespace {

std::array<std::uint32_t, 4> mvar_philox(const std::array<std::uint32_t, 4>& ctr, const std::array<std::uint32_t, 2>& key) {
  const mvar::CounterRng rng(std::uint64_t(key[0]) | (std::uint64_t(key[1]) << 32));
  return rng.bits(ctr[0], ctr[1], ctr[2], ctr[3]);
}

}  // namespace

TEST_CASE("Philox-4x32-10: Random123's published known-answer vectors", "[rng][philox]") {
  struct Kat {
    std::array<std::uint32_t, 4> ctr;
    std::array<std::uint32_t, 2> key;
    std::array<std::uint32_t, 4> out;
  };
  const Kat kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
      {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu},
       {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
      {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u},
       {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
  };
  for (const auto& k : kats) {
    CAPTURE(k.ctr[0], k.key[0]);
    CHECK(mvar_philox(k.ctr, k.key) == k.out);
  }
  // The test can fail: one flipped counter bit changes the answer.
  CHECK(mvar_philox({1, 0, 0, 0}, {0, 0}) != kats[0].out);
}

TEST_CASE("Philox-4x32-10: equal to Random123's implementation (librandom123-dev)", "[rng][philox]") {
#ifdef MVAR_HAVE_RANDOM123
  std::mt19937_64 gen(20261202);
  for (int i = 0; i < 100000; ++i) {
    const std::uint64_t a = gen(), b = gen(), c = gen();
    const std::array<std::uint32_t, 4> ctr{std::uint32_t(a), std::uint32_t(a >> 32), std::uint32_t(b), std::uint32_t(b >> 32)};
    const std::array<std::uint32_t, 2> key{std::uint32_t(c), std::uint32_t(c >> 32)};
    r123::Philox4x32_R<10> ref;
    const r123::Philox4x32_R<10>::ctr_type rc = {{ctr[0], ctr[1], ctr[2], ctr[3]}};
    const r123::Philox4x32_R<10>::key_type rk = {{key[0], key[1]}};
    const auto want = ref(rc, rk);
    const auto got = mvar_philox(ctr, key);
    if (got[0] != want.v[0] || got[1] != want.v[1] || got[2] != want.v[2] || got[3] != want.v[3]) {
      CAPTURE(i, ctr[0], ctr[1], ctr[2], ctr[3], key[0], key[1]);
      FAIL("CounterRng::bits differs from Random123's Philox4x32_R<10>");
    }
  }
  SUCCEED("100,000 random counters and keys agree");
#else
  FAIL("Random123 headers not found: install Debian's librandom123-dev (test-only dependency; .ci/run installs it)");
#endif
}
