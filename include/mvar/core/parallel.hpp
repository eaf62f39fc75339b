// mvar/core/parallel.hpp — ThreadPool and parallel_for with deterministic partitioning.
//
// Work is split into chunks that depend only on the problem size and a grain, never on the
// number of threads; threads merely take chunks. As long as every output element is written by
// exactly one chunk (the rule all mvar kernels follow), results are bitwise identical for any
// thread count. The pool is explicit: nothing global, no OpenMP imposed on consumers.
// threads == 1 runs every chunk inline on the caller (debugging, determinism baseline).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "mvar/core/error.hpp"

namespace mvar {

/// A non-owning reference to a callable void(std::ptrdiff_t): no allocation, unlike
/// std::function with a capturing lambda (parallel_for runs once per kernel call).
class ChunkFn {
 public:
  ChunkFn() = default;
  template <class F>
  ChunkFn(const F& f) : obj_(&f), call_([](const void* o, std::ptrdiff_t c) { (*static_cast<const F*>(o))(c); }) {}  // NOLINT
  void operator()(std::ptrdiff_t c) const { call_(obj_, c); }

 private:
  const void* obj_ = nullptr;
  void (*call_)(const void*, std::ptrdiff_t) = nullptr;
};

class ThreadPool {
 public:
  /// How long an idle thread busy-waits for the next job before it sleeps. Kernels run back to
  /// back, so a thread that has just finished is usually needed again within microseconds, and
  /// waking a sleeping one costs a futex call per thread (tens of microseconds in a VM or under a
  /// sandboxing kernel). A busy-waiting core also takes clock headroom from the working ones, so
  /// the spin is short where threads share few cores (or outnumber them) and longer where many run
  /// (the measured choice is in docs/performance.md, "Measured design choices").
  static std::chrono::microseconds default_spin(int threads) {
    // More threads than hardware threads: a spinning one would hold a core a working one needs.
    const unsigned hw = std::thread::hardware_concurrency();
    const bool oversubscribed = hw > 0 && unsigned(threads) > hw;
    return std::chrono::microseconds(threads <= 4 || oversubscribed ? 20 : 1000);
  }

  /// threads ≥ 1: total threads including the caller (threads − 1 workers are started).
  explicit ThreadPool(int threads = 1) : ThreadPool(threads, default_spin(threads)) {}
  ThreadPool(int threads, std::chrono::microseconds spin) : spin_(spin) {
    if (threads < 1) throw Error(concat("mvar: thread count must be ≥ 1, got ", threads));
    if (spin.count() < 0) throw Error("mvar: the pool's spin must not be negative");
    threads_ = threads;
    for (int t = 1; t < threads; ++t) workers_.emplace_back([this] { worker_loop(); });
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool() {
    stop_.store(true, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
    for (auto& w : workers_) w.join();
  }

  int threads() const { return threads_; }
  std::chrono::microseconds spin() const { return spin_; }

  /// Calls fn(c) for every c in [0, chunks), spread over the pool; returns when all are done.
  /// Rethrows the first exception a chunk threw (kernels do not throw; this is a safety net).
  /// The hand-off is lock-free: the job is published by a release increment of the generation,
  /// which idle threads watch; each thread reports completion by one decrement of pending_.
  void run(std::ptrdiff_t chunks, ChunkFn fn) {
    if (chunks <= 0) return;
    if (threads_ == 1 || chunks == 1) {
      for (std::ptrdiff_t c = 0; c < chunks; ++c) fn(c);
      return;
    }
    std::lock_guard<std::mutex> run_lock(run_mu_);  // one job at a time per pool
    job_ = fn;
    chunks_ = chunks;
    error_ = nullptr;
    next_.store(0, std::memory_order_relaxed);
    pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);  // publishes everything above
    generation_.notify_all();                             // no system call when none sleeps
    drain();
    if (!spin_until([this] { return pending_.load(std::memory_order_acquire) == 0; })) {
      for (int left; (left = pending_.load(std::memory_order_acquire)) != 0;) pending_.wait(left);
    }
    if (error_) std::rethrow_exception(error_);
  }

 private:
  /// Spins (with a pause hint) until pred() or spin_ has passed; false: the caller blocks.
  template <class Pred>
  bool spin_until(Pred pred) const {
    const auto until = std::chrono::steady_clock::now() + spin_;
    for (;;) {
      for (int i = 0; i < 64; ++i) {
        if (pred()) return true;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      }
      if (std::chrono::steady_clock::now() >= until) return pred();
    }
  }

  void drain() {
    for (;;) {
      const std::ptrdiff_t c = next_.fetch_add(1, std::memory_order_relaxed);
      if (c >= chunks_) break;
      try {
        job_(c);
      } catch (...) {
        std::lock_guard<std::mutex> lk(error_mu_);
        if (!error_) error_ = std::current_exception();
      }
    }
  }
  void worker_loop() {
    std::uint32_t seen = 0;
    for (;;) {
      std::uint32_t now = seen;
      if (!spin_until([&] { return (now = generation_.load(std::memory_order_acquire)) != seen; })) {
        while ((now = generation_.load(std::memory_order_acquire)) == seen) generation_.wait(seen);
      }
      seen = now;
      if (stop_.load(std::memory_order_relaxed)) return;
      drain();
      // The last one out wakes the caller if it sleeps; the release orders this thread's
      // writes (outputs, error_) before the caller's acquire of pending_ == 0.
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
    }
  }

  // Each atomic that threads hammer has a cache line of its own: idle threads poll generation_
  // while working ones take chunks from next_ and report to pending_ (the alignment also rounds
  // the pool's size up to whole lines, so nothing after it shares pending_'s).
  int threads_ = 1;
  std::chrono::microseconds spin_;
  std::vector<std::thread> workers_;
  std::mutex run_mu_, error_mu_;
  ChunkFn job_;
  std::ptrdiff_t chunks_ = 0;
  std::exception_ptr error_;
  std::atomic<bool> stop_{false};
  alignas(64) std::atomic<std::uint32_t> generation_{0};
  alignas(64) std::atomic<std::ptrdiff_t> next_{0};
  alignas(64) std::atomic<int> pending_{0};
};

/// body(begin, end) over [0, n) in chunks of `grain` (the last may be shorter). The chunking is
/// a function of (n, grain) alone, so the result does not depend on pool.threads().
template <class F>
void parallel_for(ThreadPool& pool, std::ptrdiff_t n, std::ptrdiff_t grain, F&& body) {
  if (n <= 0) return;
  grain = std::max<std::ptrdiff_t>(grain, 1);
  const std::ptrdiff_t chunks = (n + grain - 1) / grain;
  pool.run(chunks, [&](std::ptrdiff_t c) { body(c * grain, std::min(n, (c + 1) * grain)); });
}

}  // namespace mvar
