// A small persistent thread pool for the CpuBackend's row-wise loops and per-(batch, kv head) attention.
// run(n, fn) splits [0, n) into size() contiguous, statically assigned ranges (thread t always gets the
// t-th range) and blocks until all are done, so work placement never depends on timing. The caller runs
// range 0 itself. A run() that finds the pool busy (a second thread sharing the backend) runs the whole range
// inline as thread 0; fn must not call run() on the same pool.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace cgrpo {

class CpuThreadPool {
 public:
  using Fn = std::function<void(int64_t begin, int64_t end, int tid)>;
  explicit CpuThreadPool(int threads);
  ~CpuThreadPool();
  CpuThreadPool(const CpuThreadPool&) = delete;
  CpuThreadPool& operator=(const CpuThreadPool&) = delete;
  int size() const { return n_; }
  // Ranges of at least `grain` items (fewer threads when n is small).
  void run(int64_t n, const Fn& fn, int64_t grain = 1);

 private:
  void worker(int tid);
  int n_;
  std::vector<std::thread> workers_;
  std::mutex run_mu_;  // held for a whole run()
  std::mutex mu_;
  std::condition_variable cv_start_, cv_done_;
  const Fn* fn_ = nullptr;
  int64_t items_ = 0;
  int active_ = 0;   // threads taking part in the current run
  int pending_ = 0;  // workers of the current run not yet finished
  uint64_t gen_ = 0;
  bool stop_ = false;
};

}  // namespace cgrpo
