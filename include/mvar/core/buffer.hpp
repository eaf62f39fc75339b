// mvar/core/buffer.hpp — Buffer<T>: an owning, move-only, 64-byte-aligned array of trivially
// copyable elements, zero-initialised. Large buffers ask the kernel for transparent huge pages
// (madvise; THP is "madvise only" on many distributions), which keeps TLB misses of weight and
// activation streams low.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <span>
#include <type_traits>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "mvar/core/error.hpp"

namespace mvar {

inline constexpr std::size_t kAlignment = 64;

template <class T>
class Buffer {
  static_assert(std::is_trivially_copyable_v<T>, "Buffer<T>: T must be trivially copyable");

 public:
  Buffer() = default;
  explicit Buffer(std::size_t n) : size_(n) {
    if (n == 0) return;
    const std::size_t bytes = round_up(n * sizeof(T));
    data_ = static_cast<T*>(std::aligned_alloc(bytes >= (2u << 20) ? (2u << 20) : kAlignment, bytes));
    if (!data_) throw Error(concat("mvar: out of memory allocating ", bytes, " bytes"));
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (bytes >= (2u << 20)) ::madvise(data_, bytes, MADV_HUGEPAGE);
#endif
    std::memset(static_cast<void*>(data_), 0, bytes);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      std::free(data_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ~Buffer() { std::free(data_); }

  T* data() { return data_; }
  const T* data() const { return data_; }
  std::size_t size() const { return size_; }
  std::size_t bytes() const { return size_ * sizeof(T); }
  bool empty() const { return size_ == 0; }
  T& operator[](std::size_t i) { return data_[i]; }
  const T& operator[](std::size_t i) const { return data_[i]; }
  std::span<T> span() { return {data_, size_}; }
  std::span<const T> span() const { return {data_, size_}; }
  T* begin() { return data_; }
  T* end() { return data_ + size_; }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + size_; }

 private:
  static std::size_t round_up(std::size_t b) {
    const std::size_t a = b >= (2u << 20) ? (2u << 20) : kAlignment;
    return (b + a - 1) / a * a;
  }
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace mvar
