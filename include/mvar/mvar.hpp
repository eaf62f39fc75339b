// mvar/mvar.hpp — the umbrella header: includes the whole public API, nothing else.
#pragma once

#include "mvar/core/assert.hpp"
#include "mvar/core/buffer.hpp"
#include "mvar/core/error.hpp"
#include "mvar/core/parallel.hpp"
#include "mvar/core/tensor_view.hpp"
#include "mvar/core/workspace.hpp"
#include "mvar/io/dtype.hpp"
#include "mvar/io/safetensors.hpp"
#include "mvar/io/tensor_store.hpp"
#include "mvar/kernels/activations.hpp"
#include "mvar/kernels/attention.hpp"
#include "mvar/kernels/linear.hpp"
#include "mvar/kernels/neighborhood_attention.hpp"
#include "mvar/kernels/norm.hpp"
