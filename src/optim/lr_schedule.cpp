#include "cgrpo/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "cgrpo/core/error.h"

namespace cgrpo {

LrSchedule::LrSchedule(std::string kind, double peak_lr, int64_t total_steps, double warmup_ratio, double min_lr_rate)
    : kind_(std::move(kind)), peak_(peak_lr), min_rate_(min_lr_rate), total_(total_steps),
      warmup_(static_cast<int64_t>(std::ceil(warmup_ratio * double(total_steps)))) {
  CGRPO_CHECK(kind_ == "constant" || kind_ == "linear_warmup" || kind_ == "cosine_with_min_lr",
              "unknown lr schedule '", kind_, "'", hint("use constant, linear_warmup or cosine_with_min_lr"));
  CGRPO_CHECK(total_ >= 1, "lr schedule needs total_steps >= 1, got ", total_);
}

double LrSchedule::lr(int64_t s) const {
  if (kind_ == "constant") return peak_;
  if (s < warmup_) return peak_ * double(s) / double(std::max<int64_t>(1, warmup_));
  if (kind_ == "linear_warmup") return peak_;
  const double progress = double(s - warmup_) / double(std::max<int64_t>(1, total_ - warmup_));
  const double f = 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, progress)));
  return peak_ * (f * (1.0 - min_rate_) + min_rate_);
}

}  // namespace cgrpo
