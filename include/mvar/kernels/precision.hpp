// mvar/kernels/precision.hpp — the storage precision a layer keeps its weights in (PackedLinear,
// the Winograd form of Conv2d). Accumulation is fp32 (int32 for Int8).
#pragma once

namespace mvar {

/// Storage precision of packed weights.
enum class Precision {
  F32,   ///< fp32 weights (4 bytes each)
  BF16,  ///< bf16 weights and bf16-rounded activations (2 bytes each): AVX512-BF16 `vdpbf16ps`
         ///< or AMX-BF16 tiles, chosen at run time; where the CPU has neither, the layer is F32
  Int8,  ///< int8 weights with per-output-channel scales, activations quantised per row at run
         ///< time, exact int32 sums (1 byte each; PackedLinear only): AMX-INT8, AVX512-VNNI,
         ///< AVX2 or portable code, all giving the same bits (kernels/gemm_int8.hpp)
};

}  // namespace mvar
