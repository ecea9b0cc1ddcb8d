#include "cpu_thread_pool.h"

#include <algorithm>

namespace cgrpo {

namespace {
void range_of(int64_t n, int parts, int t, int64_t& b, int64_t& e) {
  const int64_t q = n / parts, r = n % parts;
  b = t * q + std::min<int64_t>(t, r);
  e = b + q + (t < r ? 1 : 0);
}
}  // namespace

CpuThreadPool::CpuThreadPool(int threads) : n_(std::max(threads, 1)) {
  for (int t = 1; t < n_; ++t) workers_.emplace_back([this, t] { worker(t); });
}

CpuThreadPool::~CpuThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_start_.notify_all();
  for (auto& w : workers_) w.join();
}

void CpuThreadPool::run(int64_t n, const Fn& fn, int64_t grain) {
  if (n <= 0) return;
  const int parts = static_cast<int>(std::clamp<int64_t>(n / std::max<int64_t>(grain, 1), 1, n_));
  std::unique_lock<std::mutex> busy(run_mu_, std::defer_lock);
  if (parts == 1 || !busy.try_lock()) {
    fn(0, n, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    fn_ = &fn;
    items_ = n;
    active_ = parts;
    pending_ = parts - 1;
    ++gen_;
  }
  cv_start_.notify_all();
  int64_t b, e;
  range_of(n, parts, 0, b, e);
  fn(b, e, 0);
  std::unique_lock<std::mutex> lk(mu_);
  cv_done_.wait(lk, [this] { return pending_ == 0; });
  fn_ = nullptr;
}

void CpuThreadPool::worker(int tid) {
  uint64_t seen = 0;
  for (;;) {
    const Fn* fn;
    int64_t n;
    int parts;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_start_.wait(lk, [&] { return stop_ || gen_ != seen; });
      if (stop_) return;
      seen = gen_;
      fn = fn_;
      n = items_;
      parts = active_;
    }
    if (tid < parts) {
      int64_t b, e;
      range_of(n, parts, tid, b, e);
      (*fn)(b, e, tid);
      std::lock_guard<std::mutex> lk(mu_);
      if (--pending_ == 0) cv_done_.notify_one();
    }
  }
}

}  // namespace cgrpo
