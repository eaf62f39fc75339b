// mvar/sampling/next_scale_model.hpp — NextScaleModel: what the generic sampler needs of a
// next-scale model. Transformer<Cfg> is one; a user's model (another architecture, or several
// models split across scales) satisfies it with the same members and runs through Sampler.
//
//   config                       a ModelConfig: scales (patch_nums), width C, vocab V, cvae, classes
//   Conditioning                 the per-generation conditioning the model computes once per image
//   conditioning_bytes(R)        scratch the conditioning of R rows takes from the Workspace
//   workspace_bytes(M)           scratch one forward over M = R·n token rows takes
//   condition(pool, labels, ws)  conditioning of R rows (label num_classes = the null class)
//   embed_first(cond, R, x)      step-0 input rows [R, C]
//   embed_scale(pool, s, z, x)   step-s input of one image from z = f̂ area-resized to pn_s: [n, cvae] → [n, C]
//   forward(pool, s, cond, R, x, attend, logits, ws)
//                                every block on x [R·n, C] (attention through attend(AttentionCall)),
//                                then the head into logits [R·n, V]
#pragma once

#include <concepts>
#include <cstddef>
#include <functional>
#include <span>

#include "mvar/core/parallel.hpp"
#include "mvar/core/tensor_view.hpp"
#include "mvar/core/workspace.hpp"
#include "mvar/model/config.hpp"
#include "mvar/model/transformer.hpp"

namespace mvar {

template <class M>
concept NextScaleModel = requires(const M& m, ThreadPool& pool, Workspace& ws, std::span<const int> labels,
                                  const typename M::Conditioning& cond, int scale, int rows, TensorView<float, 2> x,
                                  TensorView<const float, 2> z, std::function<void(const AttentionCall&)> attend) {
  { M::config } -> std::convertible_to<ModelConfig>;
  { M::conditioning_bytes(rows) } -> std::convertible_to<std::size_t>;
  { M::workspace_bytes(std::ptrdiff_t{}) } -> std::convertible_to<std::size_t>;
  { m.condition(pool, labels, ws) } -> std::same_as<typename M::Conditioning>;
  m.embed_first(cond, rows, x);
  m.embed_scale(pool, scale, z, x);
  m.forward(pool, scale, cond, rows, x, attend, x, ws);
};

}  // namespace mvar
