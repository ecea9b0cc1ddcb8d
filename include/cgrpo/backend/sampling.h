// The parameters of spec §2.3 sample_tokens, shared by the rollout (rollout/token_sampler.h) and the Backend op
// sample_rows (backend.h). Plain data only: the backend layer must not depend on the rollout.
#pragma once

#include <cstdint>

namespace cgrpo {

enum class Confidence {
  None,        // origin: not used
  Prob,        // maskgit_plus / confidence_threshold: p(sampled token)
  Margin,      // topk_margin: p_(1) - p_(2) of the filtered distribution
  NegEntropy,  // entropy: sum_v p_v log(p_v + 1e-10)
};

// temperature 0 = greedy (argmax, lowest id on ties); top_p in (0, 1], 1 = off; top_k 0 = off, >= V = off.
struct TokenSampling {
  float temperature = 0.0f;
  float top_p = 1.0f;
  int64_t top_k = 0;
};

}  // namespace cgrpo
