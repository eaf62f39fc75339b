// mvar/sampling/rng.hpp — a counter-based random generator (Philox-4×32, 10 rounds).
//
// Every random number is a pure function of (seed, image index, scale, token, draw): no stream
// state is shared between threads or images. Hence the same seed gives the same tokens whatever
// the thread count, and image i of a batch equals the same image generated alone with the same
// seed and index. (PyTorch's generator stream is deliberately not reproduced — SPEC §1.10, §6.)
#pragma once

#include <array>
#include <cstdint>

namespace mvar {

class CounterRng {
 public:
  explicit CounterRng(std::uint64_t seed) : key_{std::uint32_t(seed), std::uint32_t(seed >> 32)} {}

  /// Four 32-bit words for the 128-bit counter (a, b, c, d).
  std::array<std::uint32_t, 4> bits(std::uint32_t a, std::uint32_t b, std::uint32_t c, std::uint32_t d) const {
    std::array<std::uint32_t, 4> x{a, b, c, d};
    std::array<std::uint32_t, 2> k = key_;
    for (int round = 0; round < 10; ++round) {
      const std::uint64_t p0 = std::uint64_t(0xD2511F53u) * x[0];
      const std::uint64_t p1 = std::uint64_t(0xCD9E8D57u) * x[2];
      x = {std::uint32_t(p1 >> 32) ^ x[1] ^ k[0], std::uint32_t(p1), std::uint32_t(p0 >> 32) ^ x[3] ^ k[1], std::uint32_t(p0)};
      k[0] += 0x9E3779B9u;
      k[1] += 0xBB67AE85u;
    }
    return x;
  }

  /// A uniform double in [0, 1) with 53 random bits, for counter (image, scale, token, draw).
  double uniform(std::uint64_t image, std::uint32_t scale, std::uint32_t token, std::uint32_t draw = 0) const {
    const auto r = bits(std::uint32_t(image), std::uint32_t(image >> 32) ^ (scale << 16), token, draw);
    const std::uint64_t m = (std::uint64_t(r[0]) << 21) ^ std::uint64_t(r[1] >> 11);
    return double(m & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
  }

 private:
  std::array<std::uint32_t, 2> key_;
};

}  // namespace mvar
