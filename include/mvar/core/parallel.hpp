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
#include <condition_variable>
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
  /// threads ≥ 1: total threads including the caller (threads − 1 workers are started).
  explicit ThreadPool(int threads = 1) {
    if (threads < 1) throw Error(concat("mvar: thread count must be ≥ 1, got ", threads));
    threads_ = threads;
    for (int t = 1; t < threads; ++t) workers_.emplace_back([this] { worker_loop(); });
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
      generation_.fetch_add(1);
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
  }

  int threads() const { return threads_; }

  /// Calls fn(c) for every c in [0, chunks), spread over the pool; returns when all are done.
  /// Rethrows the first exception a chunk threw (kernels do not throw; this is a safety net).
  void run(std::ptrdiff_t chunks, ChunkFn fn) {
    if (chunks <= 0) return;
    if (threads_ == 1 || chunks == 1) {
      for (std::ptrdiff_t c = 0; c < chunks; ++c) fn(c);
      return;
    }
    std::lock_guard<std::mutex> run_lock(run_mu_);  // one job at a time per pool
    {
      std::lock_guard<std::mutex> lk(mu_);
      job_ = fn;
      chunks_ = chunks;
      next_.store(0);
      pending_.store(static_cast<int>(workers_.size()));
      error_ = nullptr;
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    drain();
    if (!spin_until([this] { return pending_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lk(mu_);
      done_cv_.wait(lk, [this] { return pending_.load() == 0; });
    }
    std::lock_guard<std::mutex> lk(mu_);  // pairs with the workers' error_ writes
    if (error_) std::rethrow_exception(error_);
  }

 private:
  /// Spins (with a pause hint) until pred() or about kSpinMicros have passed, then the caller
  /// blocks. Kernels run back to back, so a worker that has just finished is often needed again
  /// within microseconds, and waking a sleeping thread costs tens of microseconds in a VM. The
  /// spin is short on purpose: a busy-waiting core takes clock headroom from the working one, so a
  /// long spin slows generation (docs/performance.md, "Measured design choices").
  template <class Pred>
  static bool spin_until(Pred pred) {
    constexpr auto kSpinMicros = std::chrono::microseconds(20);
    const auto until = std::chrono::steady_clock::now() + kSpinMicros;
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
      const std::ptrdiff_t c = next_.fetch_add(1);
      if (c >= chunks_) break;
      try {
        job_(c);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu_);
        if (!error_) error_ = std::current_exception();
      }
    }
  }
  void worker_loop() {
    std::size_t seen = 0;
    for (;;) {
      if (!spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; })) {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return generation_.load() != seen; });
      }
      {
        std::lock_guard<std::mutex> lk(mu_);  // job_, chunks_ and stop_ are written under mu_
        seen = generation_.load();
        if (stop_) return;
      }
      drain();
      {
        std::lock_guard<std::mutex> lk(mu_);
        pending_.fetch_sub(1, std::memory_order_release);
      }
      done_cv_.notify_one();
    }
  }

  int threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex mu_, run_mu_;
  std::condition_variable cv_, done_cv_;
  std::atomic<std::size_t> generation_{0};
  bool stop_ = false;
  ChunkFn job_;
  std::ptrdiff_t chunks_ = 0;
  std::atomic<std::ptrdiff_t> next_{0};
  std::atomic<int> pending_{0};
  std::exception_ptr error_;
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
