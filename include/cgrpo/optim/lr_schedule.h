// Learning-rate schedules (multiplier on the peak lr), as the HF transformers schedulers compute them.
//   constant:            1
//   linear_warmup:       s / Ws for s < Ws, then 1                     (get_constant_schedule_with_warmup)
//   cosine_with_min_lr:  s / max(1, Ws) for s < Ws, then
//                        f = 0.5 (1 + cos(pi * progress)), progress = (s - Ws) / max(1, total - Ws),
//                        mult = f (1 - min_lr_rate) + min_lr_rate          (spec/coupled_grpo.md §3.10)
// with Ws = ceil(warmup_ratio * total). s is the number of optimizer steps already taken (0-based).
#pragma once

#include <cstdint>
#include <string>

namespace cgrpo {

class LrSchedule {
 public:
  LrSchedule(std::string kind, double peak_lr, int64_t total_steps, double warmup_ratio, double min_lr_rate);
  double lr(int64_t step) const;  // lr for the optimizer step that follows `step` completed steps
  int64_t warmup_steps() const { return warmup_; }

 private:
  std::string kind_;
  double peak_, min_rate_;
  int64_t total_, warmup_;
};

}  // namespace cgrpo
