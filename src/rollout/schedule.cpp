#include "cgrpo/rollout/schedule.h"

#include "cgrpo/core/error.h"

namespace cgrpo {

// torch.linspace(start, end, n) (CPU and CUDA kernels): step = (end - start) / (n - 1) in the output dtype;
// element i is start + step * i for i < n / 2 and end - step * (n - 1 - i) otherwise. The volatile stores keep
// the compiler from contracting a * b + c into an FMA, which would change the last bit.
Schedule::Schedule(int64_t steps, float eps) : steps_(steps), ts_(static_cast<size_t>(steps + 1)) {
  CGRPO_CHECK(steps >= 1, "schedule: steps = ", steps, " must be >= 1");
  const int64_t n = steps + 1, half = n / 2;
  const float start = 1.0f, end = eps;
  const float step = (end - start) / static_cast<float>(n - 1);
  for (int64_t i = 0; i < n; ++i) {
    volatile float prod = step * static_cast<float>(i < half ? i : n - 1 - i);
    ts_[static_cast<size_t>(i)] = i < half ? start + prod : end - prod;
  }
}

float Schedule::fraction(int64_t i) const {
  CGRPO_CHECK(i >= 0 && i < steps_, "schedule: step ", i, " outside [0, ", steps_, ")");
  if (i == steps_ - 1) return 1.0f;
  volatile float ratio = t(i + 1) / t(i);
  return 1.0f - ratio;
}

int64_t Schedule::count(int64_t i, int64_t n_masked) const {
  if (i == steps_ - 1) return n_masked;
  volatile float k = static_cast<float>(n_masked) * fraction(i);
  return static_cast<int64_t>(k);
}

std::vector<int64_t> Schedule::counts(int64_t n_masked) const {
  std::vector<int64_t> out(static_cast<size_t>(steps_));
  for (int64_t i = 0; i < steps_; ++i) {
    out[static_cast<size_t>(i)] = count(i, n_masked);
    n_masked -= out[static_cast<size_t>(i)];
  }
  return out;
}

}  // namespace cgrpo
