#include "cgrpo/train/grpo_loss.h"

#include <algorithm>
#include <cmath>

#include "cgrpo/core/error.h"

namespace cgrpo {

GrpoLossStats grpo_loss(int64_t B, int64_t K, const float* logp, const float* old, const float* ref,
                        const float* adv, const uint8_t* cmask, double eps_low, double eps_high, double beta,
                        float* dlogp) {
  CGRPO_CHECK(beta == 0.0 || ref != nullptr, "grpo_loss: beta > 0 needs reference log-probs");
  GrpoLossStats s;
  for (int64_t i = 0; i < B * K; ++i) s.tokens += cmask[i];
  const double norm = 1.0 / std::max(1.0, s.tokens);
  double loss = 0, kl_sum = 0, low = 0, high = 0;
  for (int64_t b = 0; b < B; ++b) {
    const double A = adv[b];
    for (int64_t k = 0; k < K; ++k) {
      const int64_t i = b * K + k;
      if (!cmask[i]) {
        dlogp[i] = 0.0f;
        continue;
      }
      const double ratio = std::exp(double(logp[i]) - double(old[i]));
      const double clamped = std::clamp(ratio, 1.0 - eps_low, 1.0 + eps_high);
      const double u = ratio * A, v = clamped * A;
      const double pg = -std::min(u, v);
      // d(-min(u, v))/dlogp: the unclipped term, or the clipped one, which is flat outside the clip range
      const bool inside = ratio > 1.0 - eps_low && ratio < 1.0 + eps_high;
      const double dpg = u <= v ? -A * ratio : (inside ? -A * ratio : 0.0);
      double kl = 0, dkl = 0;
      if (beta != 0.0) {
        const double d = double(ref[i]) - double(logp[i]);
        kl = std::exp(d) - d - 1.0;
        dkl = -std::exp(d) + 1.0;
      }
      loss += (pg + beta * kl) * norm;
      dlogp[i] = static_cast<float>((dpg + beta * dkl) * norm);
      kl_sum += kl;
      low += ratio < 1.0 - eps_low && A < 0;
      high += ratio > 1.0 + eps_high && A > 0;
    }
  }
  s.loss = loss;
  s.kl_mean = kl_sum * norm;
  s.clip_low = low * norm;
  s.clip_high = high * norm;
  s.clip_region = (low + high) * norm;
  return s;
}

}  // namespace cgrpo
