#include "cgrpo/optim/adamw.h"

#include <cmath>

#include "cgrpo/core/error.h"

namespace cgrpo {

void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, const std::vector<DecaySegment>& segments,
                double lr, int64_t step, const AdamWParams& hp, float grad_scale) {
  CGRPO_CHECK(step >= 1, "AdamW step count starts at 1, got ", step);
  const float b1 = static_cast<float>(hp.beta1), b2 = static_cast<float>(hp.beta2);
  const float bc1 = static_cast<float>(1.0 - std::pow(hp.beta1, double(step)));
  const float bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(hp.beta2, double(step))));
  const float step_size = static_cast<float>(lr) / bc1;
  const float eps = static_cast<float>(hp.eps);
  int64_t covered = 0;
  for (const DecaySegment& s : segments) {
    CGRPO_CHECK(s.offset == covered && s.offset + s.count <= n, "AdamW decay segments do not tile the shard");
    const float keep = s.decay ? static_cast<float>(1.0 - lr * hp.weight_decay) : 1.0f;
    for (int64_t i = s.offset; i < s.offset + s.count; ++i) {
      const float gi = g[i] * grad_scale;
      m[i] = b1 * m[i] + (1.0f - b1) * gi;
      v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
      const float denom = std::sqrt(v[i]) / bc2_sqrt + eps;
      p[i] = p[i] * keep - step_size * m[i] / denom;
    }
    covered += s.count;
  }
  CGRPO_CHECK(covered == n, "AdamW decay segments cover ", covered, " of ", n, " elements");
}

}  // namespace cgrpo
