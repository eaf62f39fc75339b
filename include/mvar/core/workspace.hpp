// mvar/core/workspace.hpp — Workspace: a bump arena sized once (from the model configuration and
// the largest scale), reset between steps, never grown in a hot loop. Every scratch tensor of a
// forward pass is carved from it, so "MVAR needs no KV cache" becomes a printable number:
// capacity() and high_water() in bytes.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "mvar/core/buffer.hpp"
#include "mvar/core/error.hpp"

namespace mvar {

class Workspace {
 public:
  Workspace() = default;
  explicit Workspace(std::size_t bytes) : storage_(checked_round(bytes)) {}

  /// Carves n elements of T (64-byte aligned, uninitialised contents). Throws if the arena,
  /// sized at construction, is too small — a sizing bug, reported with the numbers.
  template <class T>
  T* take(std::size_t n) {
    const std::size_t bytes = round(n * sizeof(T));
    if (used_ + bytes > storage_.size())
      throw Error(concat("mvar: workspace exhausted: need ", used_ + bytes, " bytes, capacity ",
                         storage_.size()));
    T* p = reinterpret_cast<T*>(storage_.data() + used_);
    used_ += bytes;
    high_water_ = std::max(high_water_, used_);
    return p;
  }

  /// Position marker: take() after mark() can be undone with release(mark).
  std::size_t mark() const { return used_; }
  void release(std::size_t mark) { used_ = mark; }
  void reset() { used_ = 0; }

  std::size_t capacity() const { return storage_.size(); }
  std::size_t used() const { return used_; }
  std::size_t high_water() const { return high_water_; }

  static std::size_t round(std::size_t b) { return (b + kAlignment - 1) / kAlignment * kAlignment; }

 private:
  static std::size_t checked_round(std::size_t b) {
    if (b > SIZE_MAX - kAlignment) throw Error(concat("mvar: workspace of ", b, " bytes: size overflows"));
    return round(b);
  }

  Buffer<std::byte> storage_;
  std::size_t used_ = 0;
  std::size_t high_water_ = 0;
};

}  // namespace mvar
