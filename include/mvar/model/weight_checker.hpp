// mvar/model/weight_checker.hpp — the one weight-binding check every model binder uses (the
// transformer's, the VQVAE decoder's and encoder's, the quantizer's): each expected tensor by
// official name, exact shape and a float dtype; every problem of a file is collected, then
// reported in one mvar::Error naming the file.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "mvar/core/error.hpp"
#include "mvar/io/dtype.hpp"
#include "mvar/io/tensor_store.hpp"

namespace mvar {

namespace detail {

/// Collects every missing / mis-shaped / non-float tensor of a binding, then throws once.
class WeightChecker {
 public:
  WeightChecker(const TensorStore& store, std::string what) : store_(store), what_(std::move(what)) {}

  /// The tensor if present with this exact shape and a float dtype; otherwise notes the problem.
  const TensorRef* get(const std::string& name, const std::vector<std::int64_t>& shape) {
    const TensorRef* t = store_.find(name);
    const std::string want = TensorRef{"", DType::F32, shape}.shape_string();
    if (!t) {
      problems_.push_back(concat("missing '", name, "' (expected shape ", want, ")"));
      return nullptr;
    }
    if (t->shape != shape) {
      problems_.push_back(concat("'", name, "' has shape ", t->shape_string(), ", expected ", want));
      return nullptr;
    }
    if (t->dtype != DType::F32 && t->dtype != DType::F16 && t->dtype != DType::BF16) {
      problems_.push_back(concat("'", name, "' has dtype ", dtype_name(t->dtype), ", expected a float type (F32/F16/BF16)"));
      return nullptr;
    }
    return t;
  }
  /// Notes the first NaN/±Inf of a float tensor (VQVAE weights are read in full when bound, so
  /// the scan costs one pass; a non-finite weight would otherwise surface later as "non-finite
  /// logits" or an undefined float → byte conversion, without naming this file).
  void check_finite(const TensorRef& t) {
    const std::size_t n = static_cast<std::size_t>(t.numel());
    for (std::size_t i = 0; i < n; ++i) {
      const float v = load_as_float(t.data, t.dtype, i);
      if (!std::isfinite(v)) {
        problems_.push_back(concat("'", t.name, "' holds ", v, " at element ", i, " (NaN/Inf in the weights)"));
        return;
      }
    }
  }
  /// Notes a problem found by the caller (e.g. an unexpected tensor).
  void note(std::string problem) { problems_.push_back(std::move(problem)); }
  /// Checks a tensor the files may carry but the model never reads: its shape when present.
  void optional(const std::string& name, const std::vector<std::int64_t>& shape) {
    if (const TensorRef* t = store_.find(name); t && t->shape != shape)
      problems_.push_back(concat("'", name, "' has shape ", t->shape_string(), ", expected ",
                                 TensorRef{"", DType::F32, shape}.shape_string()));
  }
  const std::vector<std::string>& problems() const { return problems_; }
  /// Throws one mvar::Error listing all problems noted so far (nothing when there are none).
  void throw_if_any() const {
    if (problems_.empty()) return;
    std::string msg = concat(what_, ": ", store_.source(), ": ", problems_.size(), " problem(s) with the weights:");
    for (const auto& p : problems_) msg += "\n  " + p;
    throw Error(msg);
  }

 private:
  const TensorStore& store_;
  std::string what_;
  std::vector<std::string> problems_;
};

}  // namespace detail

}  // namespace mvar
