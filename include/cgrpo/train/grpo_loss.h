// Coupled-GRPO loss of one micro-batch (spec/coupled_grpo.md §3.8) and its gradient with respect to the
// per-token coupled log-probs. Rows b = 0..B-1, completion tokens k = 0..K-1, arrays are [B, K] row-major.
//   ratio = exp(logp - old)
//   pg    = -min(ratio A_b, clamp(ratio, 1 - eps_low, 1 + eps_high) A_b)
//   kl    = exp(ref - logp) - (ref - logp) - 1                               (k3 estimator)
//   loss  = sum_{b,k} (pg + beta kl) c / max(1, sum c)                       (token mean over the micro-batch)
// With mu = 1 the caller passes old = logp (ratio = 1). With beta = 0, ref may be nullptr.
#pragma once

#include <cstdint>

namespace cgrpo {

struct GrpoLossStats {
  double loss = 0;
  double kl_mean = 0;           // mean kl over completion tokens
  double clip_low = 0;          // fraction of tokens with ratio < 1 - eps_low and A < 0 (TRL clip_ratio/low_mean)
  double clip_high = 0;         // ratio > 1 + eps_high and A > 0
  double clip_region = 0;       // either
  double tokens = 0;            // sum of the completion mask
};

// dlogp [B, K] receives d loss / d logp (overwritten). Returns the loss and metrics.
GrpoLossStats grpo_loss(int64_t B, int64_t K, const float* logp, const float* old, const float* ref,
                        const float* adv, const uint8_t* cmask, double eps_low, double eps_high, double beta,
                        float* dlogp);

}  // namespace cgrpo
