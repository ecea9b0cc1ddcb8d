// AdamW on a flat fp32 shard, exactly torch.optim.AdamW (amsgrad=False), which the HF Trainer uses
// (spec/coupled_grpo.md §3.10: betas (0.9, 0.99), eps 1e-8, weight_decay 0.1):
//   p <- p * (1 - lr * wd)                       decoupled weight decay (skipped where decay = 0)
//   m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
//   p <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// g is scaled by grad_scale first (global-norm clipping coefficient).
#pragma once

#include <cstdint>
#include <vector>

namespace cgrpo {

struct AdamWParams {
  double beta1 = 0.9, beta2 = 0.99, eps = 1e-8, weight_decay = 0.1;
};

// A run of elements [offset, offset + count) of a shard that shares one weight-decay setting.
struct DecaySegment {
  int64_t offset, count;
  bool decay;
};

// One step on n elements. step counts from 1. Segments cover [0, n) in order.
void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, const std::vector<DecaySegment>& segments,
                double lr, int64_t step, const AdamWParams& hp, float grad_scale = 1.0f);

}  // namespace cgrpo
