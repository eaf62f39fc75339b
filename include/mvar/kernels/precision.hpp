// mvar/kernels/precision.hpp — the storage precision a layer keeps its weights in (PackedLinear,
// the Winograd form of Conv2d). Accumulation is fp32 in both.
#pragma once

namespace mvar {

/// Storage precision of packed weights.
enum class Precision {
  F32,   ///< fp32 weights (4 bytes each)
  BF16,  ///< bf16 weights and bf16-rounded activations, `vdpbf16ps` (2 bytes each); needs
         ///< AVX512-BF16 at compile time, otherwise the layer is packed as F32
};

}  // namespace mvar
