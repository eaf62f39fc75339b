// mvar/core/tensor_view.hpp — TensorView<T, Rank>: a non-owning, strided, row-major-by-default
// view of a tensor, in the spirit of std::mdspan. Strides are in elements (bytes appear only in
// io/). T may be const; a mutable view converts to a const one, never the reverse.
//
// Template parameters:
//   T    — element type (float, const float, std::int32_t, ...)
//   Rank — number of axes (≥ 1)
#pragma once

#include <array>
#include <cstddef>
#include <type_traits>

#include "mvar/core/assert.hpp"

namespace mvar {

template <class T, int Rank>
class TensorView {
  static_assert(Rank >= 1, "TensorView: Rank must be at least 1");

 public:
  using index = std::ptrdiff_t;  // signed: loop arithmetic optimises better
  using element_type = T;
  using extents_type = std::array<index, Rank>;
  static constexpr int rank = Rank;

  TensorView() = default;

  /// Contiguous row-major view.
  TensorView(T* data, extents_type extents) : data_(data), extents_(extents) {
    index s = 1;
    for (int r = Rank - 1; r >= 0; --r) {
      strides_[r] = s;
      s *= extents_[r];
    }
  }

  /// Arbitrary strides (in elements).
  TensorView(T* data, extents_type extents, extents_type strides)
      : data_(data), extents_(extents), strides_(strides) {}

  /// Adds const: TensorView<float, R> → TensorView<const float, R>.
  template <class U>
    requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
  TensorView(const TensorView<U, Rank>& other)  // NOLINT: implicit by design
      : data_(other.data()), extents_(other.extents()), strides_(other.strides()) {}

  T* data() const { return data_; }
  index extent(int r) const { return extents_[r]; }
  index stride(int r) const { return strides_[r]; }
  const extents_type& extents() const { return extents_; }
  const extents_type& strides() const { return strides_; }

  index size() const {
    index n = 1;
    for (index e : extents_) n *= e;
    return n;
  }
  bool empty() const { return size() == 0; }

  /// True when the elements are laid out densely in row-major order.
  bool is_contiguous() const {
    index s = 1;
    for (int r = Rank - 1; r >= 0; --r) {
      if (extents_[r] != 1 && strides_[r] != s) return false;
      s *= extents_[r];
    }
    return true;
  }

  template <class... I>
    requires(sizeof...(I) == Rank)
  T& operator()(I... i) const {
    const std::array<index, Rank> idx{static_cast<index>(i)...};
    index off = 0;
    for (int r = 0; r < Rank; ++r) {
      MVAR_ASSERT(idx[r] >= 0 && idx[r] < extents_[r]);
      off += idx[r] * strides_[r];
    }
    return data_[off];
  }

  /// Pointer to element (i0, 0, ..., 0): the start of a "row" along axis 0.
  T* row(index i0) const {
    MVAR_ASSERT(i0 >= 0 && i0 < extents_[0]);
    return data_ + i0 * strides_[0];
  }

  /// Same rank, narrower along `axis`: elements [begin, end).
  TensorView slice(int axis, index begin, index end) const {
    MVAR_ASSERT(axis >= 0 && axis < Rank);
    MVAR_ASSERT(0 <= begin && begin <= end && end <= extents_[axis]);
    TensorView v = *this;
    v.data_ = data_ + begin * strides_[axis];
    v.extents_[axis] = end - begin;
    return v;
  }

  /// Drops axis 0 by fixing it at i0.
  TensorView<T, Rank - 1> operator[](index i0) const
    requires(Rank > 1)
  {
    MVAR_ASSERT(i0 >= 0 && i0 < extents_[0]);
    std::array<index, Rank - 1> e{}, s{};
    for (int r = 1; r < Rank; ++r) {
      e[r - 1] = extents_[r];
      s[r - 1] = strides_[r];
    }
    return TensorView<T, Rank - 1>(data_ + i0 * strides_[0], e, s);
  }

  /// Reinterprets a contiguous view with new extents of the same total size.
  template <int NewRank>
  TensorView<T, NewRank> reshape(std::array<index, NewRank> extents) const {
    MVAR_ASSERT(is_contiguous());
    index n = 1;
    for (index e : extents) n *= e;
    MVAR_ASSERT(n == size());
    return TensorView<T, NewRank>(data_, extents);
  }

 private:
  T* data_ = nullptr;
  extents_type extents_{};
  extents_type strides_{};
};

template <class T, int Rank>
TensorView(T*, std::array<std::ptrdiff_t, Rank>) -> TensorView<T, Rank>;

}  // namespace mvar
