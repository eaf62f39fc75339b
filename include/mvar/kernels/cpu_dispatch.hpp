// mvar/kernels/cpu_dispatch.hpp — which instruction set the GEMM kernels use, decided at run time
// from the CPU (cpuid), the OS (XGETBV: which register state it saves; for AMX, Linux's
// arch_prctl permission for the tile data) and an optional ceiling set by the user.
//
// The dispatched kernels (gemm_dispatch.hpp, gemm_int8.hpp, gemm_amx.hpp) are compiled with
// `__attribute__((target(...)))` whatever the build's -march, so one binary carries an AVX2, an
// AVX-512 and an AMX form and picks one when a layer is packed. -march=native remains an option:
// it only changes the "portable" form (the xsimd kernels compiled for the build's own arch) and
// what the compiler may inline around the kernels.
//
// Levels (each implies the one below it):
//   Portable — the build's compile-time arch (xsimd::default_arch); no run-time requirement.
//   Avx2     — AVX2 + FMA (+ OS-saved YMM state).
//   Avx512   — AVX-512 F/BW/DQ/VL (+ OS-saved ZMM/opmask state). Per operation, bf16 dot products
//              also need AVX512-BF16 and int8 dot products AVX512-VNNI (checked separately).
//   Amx      — Avx512 with BF16 and VNNI, plus AMX-TILE/BF16/INT8, the OS saving tile state (XCR0 bits 17–18) and
//              the process holding the XTILEDATA permission (requested once, Linux ≥ 5.16).
// The ceiling: the environment variable MVAR_ISA (portable | avx2 | avx512 | amx), read once, or
// set_isa_limit() (tests, a CLI option). A ceiling above what the CPU offers changes nothing.
// A layer keeps the form it was packed for (its packed layout depends on it).
// Side effect: on an AMX CPU the first query asks Linux for the tile-data permission, which
// enlarges the process's signal frames (by the ~8 KiB of tile state).
// x86-64 only (GCC or Clang).
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string_view>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define MVAR_X86 1
#endif
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "mvar/core/error.hpp"

// The target sets of the dispatched kernels. GCC and Clang accept these on functions and function
// templates; intrinsics of the named sets are usable inside such functions whatever -march says.
#define MVAR_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define MVAR_TARGET_AVX512 \
  __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx512vnni")))
#define MVAR_TARGET_AMX                                                                            \
  __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx512vnni," \
                         "amx-tile,amx-int8,amx-bf16")))

namespace mvar {

/// Instruction-set levels of the dispatched kernels, in increasing order.
enum class Isa { Portable = 0, Avx2 = 1, Avx512 = 2, Amx = 3 };

inline const char* isa_name(Isa i) {
  switch (i) {
    case Isa::Portable: return "portable";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Amx: return "amx";
  }
  return "?";
}

/// "portable", "avx2", "avx512", "amx" → the level; anything else → nullopt.
inline std::optional<Isa> parse_isa(std::string_view s) {
  for (Isa i : {Isa::Portable, Isa::Avx2, Isa::Avx512, Isa::Amx})
    if (s == isa_name(i)) return i;
  return std::nullopt;
}

/// What the CPU and the OS offer (each flag already includes the OS's consent where one is needed).
struct CpuFeatures {
  bool avx2 = false, fma = false;         // with YMM state saved
  bool avx512 = false;                    // F, BW, DQ, VL with ZMM/opmask state saved
  bool avx512_bf16 = false, avx512_vnni = false;
  bool amx = false;                       // TILE, BF16, INT8, tile state saved and permitted
  bool amx_cpu = false;                   // the CPU has AMX (whether or not the OS lets us use it)
};

namespace detail {

#if defined(MVAR_X86)
inline std::uint64_t xgetbv0() {
  std::uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (std::uint64_t(hi) << 32) | lo;
}
#endif

/// Linux: asks for the AMX tile-data permission (arch_prctl ARCH_REQ_XCOMP_PERM = 0x1023,
/// XFEATURE_XTILEDATA = 18). Process-wide; true when granted (or already held).
inline bool request_amx_permission() {
#if defined(__linux__) && defined(__x86_64__)
  constexpr long kReqXcompPerm = 0x1023, kXtileData = 18;
  return syscall(SYS_arch_prctl, kReqXcompPerm, kXtileData) == 0;
#else
  return false;
#endif
}

inline CpuFeatures detect_cpu() {
  CpuFeatures f;
#if defined(MVAR_X86)
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = (c >> 27) & 1, fma = (c >> 12) & 1;
  if (!osxsave) return f;
  const std::uint64_t xcr0 = xgetbv0();
  const bool ymm = (xcr0 & 0x6) == 0x6, zmm = (xcr0 & 0xe6) == 0xe6, tiles = (xcr0 & 0x60000) == 0x60000;
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  const unsigned b7 = b, c7 = c, d7 = d;
  __cpuid_count(7, 1, a, b, c, d);
  const unsigned a71 = a;
  f.avx2 = ymm && ((b7 >> 5) & 1);
  f.fma = ymm && fma;
  f.avx512 = zmm && ((b7 >> 16) & 1) && ((b7 >> 17) & 1) && ((b7 >> 30) & 1) && ((b7 >> 31) & 1);
  f.avx512_vnni = f.avx512 && ((c7 >> 11) & 1);
  f.avx512_bf16 = f.avx512 && ((a71 >> 5) & 1);
  f.amx_cpu = ((d7 >> 22) & 1) && ((d7 >> 24) & 1) && ((d7 >> 25) & 1);
  f.amx = f.amx_cpu && f.avx512_bf16 && f.avx512_vnni && tiles && request_amx_permission();
#endif
  return f;
}

inline std::atomic<int>& isa_limit_slot();

}  // namespace detail

/// The ceiling a value of MVAR_ISA names: null or empty → Amx (no ceiling); throws mvar::Error
/// naming MVAR_ISA for anything but portable, avx2, avx512, amx.
inline Isa isa_limit_from_env(const char* value) {
  if (!value || !*value) return Isa::Amx;
  if (const auto i = parse_isa(value)) return *i;
  throw Error(concat("MVAR_ISA='", value, "' is not one of portable, avx2, avx512, amx"));
}

namespace detail {
inline std::atomic<int>& isa_limit_slot() {
  static std::atomic<int> slot{[] {
    try {
      return int(isa_limit_from_env(std::getenv("MVAR_ISA")));
    } catch (const Error&) {
      return -1;  // reported by isa_limit()
    }
  }()};
  return slot;
}

}  // namespace detail

/// The CPU's features, detected once (the AMX permission is requested on the first call).
inline const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detail::detect_cpu();
  return f;
}

/// The highest level the CPU and OS support.
inline Isa cpu_isa() {
  const CpuFeatures& f = cpu_features();
  if (f.amx) return Isa::Amx;
  if (f.avx512 && f.fma) return Isa::Avx512;
  if (f.avx2 && f.fma) return Isa::Avx2;
  return Isa::Portable;
}

/// The user's ceiling (MVAR_ISA, or set_isa_limit). Throws mvar::Error for an unknown MVAR_ISA.
inline Isa isa_limit() {
  const int v = detail::isa_limit_slot().load(std::memory_order_relaxed);
  if (v < 0) return isa_limit_from_env(std::getenv("MVAR_ISA"));  // throws the message
  return Isa(v);
}

/// Sets the ceiling for layers packed from now on (layers already packed keep their form).
inline void set_isa_limit(Isa i) { detail::isa_limit_slot().store(int(i), std::memory_order_relaxed); }

/// The level new layers are packed for: min(cpu_isa(), isa_limit()).
inline Isa active_isa() {
  const Isa c = cpu_isa(), l = isa_limit();
  return int(c) < int(l) ? c : l;
}

/// The level's extras for one operation.
inline bool isa_has_bf16_dot(Isa i) { return (i == Isa::Avx512 && cpu_features().avx512_bf16) || i == Isa::Amx; }
inline bool isa_has_int8_dot(Isa i) { return (i == Isa::Avx512 && cpu_features().avx512_vnni) || i == Isa::Amx; }

}  // namespace mvar
