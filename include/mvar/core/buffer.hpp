// mvar/core/buffer.hpp — Buffer<T>: an owning, move-only, 64-byte-aligned array of trivially
// copyable elements, zero-initialised. Large buffers ask the kernel for transparent huge pages
// (madvise; THP is "madvise only" on many distributions), which keeps TLB misses of weight and
// activation streams low.
//
// Sizes are checked before allocating: n × sizeof(T) may not overflow, and a buffer of 64 MiB or
// more goes through check_allocation (core/memory_limit.hpp), so a size derived from a file or a
// user option (--batch) that exceeds the machine fails with a message instead of being zero-filled
// into an OOM kill. Smaller buffers cannot exceed any real machine's limits and skip the (cheap)
// system queries; a failed allocation of any size is an mvar::Error as well.
#pragma once

#include <cstddef>
#include <cstdint>
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
#include "mvar/core/memory_limit.hpp"

namespace mvar {

inline constexpr std::size_t kAlignment = 64;
/// Buffers of at least this many bytes are checked against the machine's memory before allocating.
inline constexpr std::size_t kCheckedAllocationBytes = std::size_t(64) << 20;

template <class T>
class Buffer {
  static_assert(std::is_trivially_copyable_v<T>, "Buffer<T>: T must be trivially copyable");

 public:
  Buffer() = default;
  explicit Buffer(std::size_t n) : size_(n) {
    if (n == 0) return;
    if (n > (SIZE_MAX - (2u << 20)) / sizeof(T))
      throw Error(concat("mvar: buffer of ", n, " × ", sizeof(T), " bytes: size overflows (more than 2^64 bytes)"));
    const std::size_t bytes = round_up(n * sizeof(T));
    if (bytes >= kCheckedAllocationBytes) check_allocation(bytes, concat("buffer of ", n, " × ", sizeof(T), " bytes"));
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
