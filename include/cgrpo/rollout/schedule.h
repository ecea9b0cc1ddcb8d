// Denoising schedule of spec §2.2: ts = linspace(1, eps, steps + 1) in float32, step i goes from t = ts[i] to
// s = ts[i+1] and commits the fraction 1 - s/t of the still-masked tokens (everything at the last step).
#pragma once

#include <cstdint>
#include <cstddef>
#include <vector>

namespace cgrpo {

class Schedule {
 public:
  Schedule(int64_t steps, float eps);

  int64_t steps() const { return steps_; }
  float t(int64_t i) const { return ts_[static_cast<size_t>(i)]; }  // i in [0, steps]
  // 1 - s/t in float32 for i < steps - 1, 1 at the last step: origin's per-position commit probability (§2.2).
  float fraction(int64_t i) const;
  // Tokens committed at step i from n masked: int(float(n) * (1 - s/t)) (int() truncates), n at the last step.
  int64_t count(int64_t i, int64_t n_masked) const;
  // The per-step counts of a top-k algorithm starting from n masked tokens (every row commits the same count).
  std::vector<int64_t> counts(int64_t n_masked) const;

 private:
  int64_t steps_;
  std::vector<float> ts_;
};

}  // namespace cgrpo
