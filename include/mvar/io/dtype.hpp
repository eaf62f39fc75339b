// mvar/io/dtype.hpp — element types found in checkpoint files, their sizes and names, and the
// conversions of the 16-bit float formats to float32 (exact: every f16/bf16 is a float32).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

#include "mvar/core/error.hpp"

namespace mvar {

enum class DType : std::uint8_t { F32, F16, BF16, I32, I64, U8, F64 };

constexpr std::size_t dtype_size(DType d) {
  switch (d) {
    case DType::F32: return 4;
    case DType::F16: return 2;
    case DType::BF16: return 2;
    case DType::I32: return 4;
    case DType::I64: return 8;
    case DType::U8: return 1;
    case DType::F64: return 8;
  }
  return 0;
}

constexpr std::string_view dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    case DType::U8: return "U8";
    case DType::F64: return "F64";
  }
  return "?";
}

/// Parses a safetensors dtype string; nullopt for anything else.
inline std::optional<DType> parse_dtype(std::string_view s) {
  for (DType d : {DType::F32, DType::F16, DType::BF16, DType::I32, DType::I64, DType::U8, DType::F64})
    if (s == dtype_name(d)) return d;
  return std::nullopt;
}

inline float bf16_to_float(std::uint16_t h) { return std::bit_cast<float>(std::uint32_t(h) << 16); }

/// Round-to-nearest-even float32 → bfloat16 (NaN stays NaN).
inline std::uint16_t float_to_bf16(float f) {
  std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return std::uint16_t(u >> 16);
}

inline float f16_to_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t man = h & 0x3ffu;
  std::uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      do {
        ++e;
        man <<= 1;
      } while ((man & 0x400u) == 0);
      bits = sign | (std::uint32_t(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  return std::bit_cast<float>(bits);
}

/// Reads element i of a little-endian buffer of dtype d as float (integers are converted).
inline float load_as_float(const std::byte* base, DType d, std::size_t i) {
  switch (d) {
    case DType::F32: { float v; std::memcpy(&v, base + 4 * i, 4); return v; }
    case DType::F16: { std::uint16_t v; std::memcpy(&v, base + 2 * i, 2); return f16_to_float(v); }
    case DType::BF16: { std::uint16_t v; std::memcpy(&v, base + 2 * i, 2); return bf16_to_float(v); }
    case DType::I32: { std::int32_t v; std::memcpy(&v, base + 4 * i, 4); return float(v); }
    case DType::I64: { std::int64_t v; std::memcpy(&v, base + 8 * i, 8); return float(v); }
    case DType::U8: return float(std::uint8_t(base[i]));
    case DType::F64: { double v; std::memcpy(&v, base + 8 * i, 8); return float(v); }  // fixtures' scalars
  }
  return 0.f;
}

/// True for the dtypes that hold integers (I32, I64, U8).
constexpr bool is_integer_dtype(DType d) { return d == DType::I32 || d == DType::I64 || d == DType::U8; }

/// Reads element i of an integer buffer (I32, I64, U8) as int64. Float dtypes are refused with
/// mvar::Error: converting a float to int64 is undefined for NaN, ±Inf and |x| ≥ 2^63, values any
/// file may hold (docs/reliability.md, F1).
inline std::int64_t load_as_int(const std::byte* base, DType d, std::size_t i) {
  switch (d) {
    case DType::I32: { std::int32_t v; std::memcpy(&v, base + 4 * i, 4); return v; }
    case DType::I64: { std::int64_t v; std::memcpy(&v, base + 8 * i, 8); return v; }
    case DType::U8: return std::int64_t(std::uint8_t(base[i]));
    default: break;
  }
  throw Error(concat("load_as_int: dtype ", dtype_name(d), " is not an integer type (I32, I64, U8 are read as integers)"));
}

}  // namespace mvar
