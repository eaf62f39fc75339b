// mvar/core/buffer.hpp — Buffer<T>: an owning, move-only, 64-byte-aligned array of trivially
// copyable elements, zero-initialised. Buffers from 256 KiB on are their own anonymous mappings,
// given back to the system whole when released (freed malloc blocks in the middle of the heap
// stay resident); from 2 MiB on 2 MiB-aligned with transparent huge pages requested (madvise;
// THP is "madvise only" on many distributions), which keeps TLB misses of weight and activation
// streams low.
//
// Sizes are checked before allocating: n × sizeof(T) may not overflow, and a buffer of 64 MiB or
// more goes through check_allocation (core/memory_limit.hpp), so a size derived from a file or a
// user option (--batch) that exceeds the machine fails with a message instead of being zero-filled
// into an OOM kill. Smaller buffers cannot exceed any real machine's limits and skip the (cheap)
// system queries; a failed allocation of any size is an mvar::Error as well.
#pragma once

#include <atomic>
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
    data_ = allocate(bytes);
    if (!data_) throw Error(concat("mvar: out of memory allocating ", bytes, " bytes"));
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      release(data_, size_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ~Buffer() { release(data_, size_); }

  /// Makes room for at least n elements: a no-op when size() ≥ n, else the old storage is released
  /// first and a zeroed one of exactly n elements takes its place (contents are not kept), so the
  /// old and the new are never resident together. For scratch grown to its largest request.
  void grow(std::size_t n) {
    if (size_ >= n) return;
    *this = Buffer();
    *this = Buffer(n);
  }

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
  static constexpr std::size_t kHuge = std::size_t(2) << 20;
  static constexpr std::size_t kMapped = std::size_t(256) << 10;  // own mapping from this size on
  // Page multiples for mapped buffers (a 2 MiB multiple would make up to 2 MiB of huge page
  // resident past the end of each one), cache lines for the rest.
  static std::size_t round_up(std::size_t b) {
    const std::size_t a = b >= kMapped ? 4096 : kAlignment;
    return (b + a - 1) / a * a;
  }
  // Zeroed storage of `bytes` (round_up'd). Linux, ≥ 256 KiB: a private anonymous mapping — zero
  // pages from the kernel, populated at once (populate()), returned to the system on release;
  // from 2 MiB on aligned to 2 MiB with transparent huge pages requested. (Through malloc, freed
  // blocks in the middle of the heap stay resident: building the decoder, which replaces each
  // layer's direct weights by its Winograd form, left ~110 MiB of such holes.) Otherwise
  // aligned_alloc + memset.
  static T* allocate(std::size_t bytes) {
#if defined(__linux__)
    if (bytes >= kMapped) {
      // From 2 MiB on, map kHuge more and trim both ends to a 2 MiB-aligned start.
      const std::size_t slack = bytes >= kHuge ? kHuge : 0;
      void* p = ::mmap(nullptr, bytes + slack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) return nullptr;
      const auto a = reinterpret_cast<std::uintptr_t>(p);
      const auto start = slack ? (a + kHuge - 1) / kHuge * kHuge : a;
      if (start > a) ::munmap(p, start - a);
      if (a + slack > start) ::munmap(reinterpret_cast<void*>(start + bytes), a + slack - start);
#if defined(MADV_HUGEPAGE)
      if (slack) ::madvise(reinterpret_cast<void*>(start), bytes, MADV_HUGEPAGE);
#endif
      populate(reinterpret_cast<void*>(start), bytes);
      return reinterpret_cast<T*>(start);
    }
#endif
    void* p = std::aligned_alloc(kAlignment, bytes);
    if (p) std::memset(p, 0, bytes);
    return static_cast<T*>(p);
  }
  // Faults the mapping in now, in one call (MADV_POPULATE_WRITE, Linux ≥ 5.14; a write per page
  // elsewhere), as the memset of a malloc'd block would: faulting 4 KiB pages one by one while a
  // kernel runs is far slower (docs/performance.md, "Measured design choices").
  static void populate(void* p, std::size_t bytes) {
#if defined(MADV_POPULATE_WRITE)
    if (::madvise(p, bytes, MADV_POPULATE_WRITE) == 0) return;
#endif
    for (std::size_t i = 0; i < bytes; i += 4096) static_cast<volatile unsigned char*>(p)[i] = 0;
  }
  static void release(T* p, std::size_t n) {
    if (!p) return;
#if defined(__linux__)
    if (const std::size_t bytes = round_up(n * sizeof(T)); bytes >= kMapped) {
      ::munmap(static_cast<void*>(p), bytes);
      return;
    }
#endif
    std::free(p);
  }
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

namespace detail {
struct ScratchCounter {
  std::atomic<std::size_t> now{0}, high{0};
};
inline ScratchCounter& scratch_counter() {
  static ScratchCounter c;
  return c;
}
}  // namespace detail

/// Bytes of thread-local scratch alive now, over all threads, and their high-water mark since
/// the start (or the last reset_thread_scratch_high_water): the GEMM packing panels, Winograd
/// tiles and sampling rows that live per thread outside the Workspace. Reported beside the
/// workspace figures, so every scratch byte is counted.
inline std::size_t thread_scratch_bytes() { return detail::scratch_counter().now.load(); }
inline std::size_t thread_scratch_high_water() { return detail::scratch_counter().high.load(); }
inline void reset_thread_scratch_high_water() { detail::scratch_counter().high.store(thread_scratch_bytes()); }

/// Scratch owned by one thread (declare it thread_local), grown — never shrunk — to the largest
/// request (Buffer::grow: no slack, never old and new resident together), counted in
/// thread_scratch_bytes().
template <class T>
class ThreadScratch {
 public:
  ThreadScratch() = default;
  ThreadScratch(const ThreadScratch&) = delete;
  ThreadScratch& operator=(const ThreadScratch&) = delete;
  ~ThreadScratch() { detail::scratch_counter().now.fetch_sub(buf_.bytes()); }

  /// At least n elements (zero-initialised on growth), valid until the next larger request.
  T* grow(std::size_t n) {
    if (buf_.size() >= n) return buf_.data();
    auto& c = detail::scratch_counter();
    c.now.fetch_sub(buf_.bytes());
    buf_.grow(n);
    const std::size_t now = c.now.fetch_add(buf_.bytes()) + buf_.bytes();
    std::size_t high = c.high.load();
    while (now > high && !c.high.compare_exchange_weak(high, now)) {
    }
    return buf_.data();
  }
  std::span<T> span(std::size_t n) { return {grow(n), n}; }

 private:
  Buffer<T> buf_;
};

}  // namespace mvar
