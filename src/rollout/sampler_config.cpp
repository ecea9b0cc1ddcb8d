#include "cgrpo/rollout/sampler_config.h"

#include <cmath>

#include "cgrpo/config/config.h"
#include "cgrpo/core/error.h"

namespace cgrpo {

namespace {
constexpr const char* kAlgNames[] = {"origin", "maskgit_plus", "topk_margin", "entropy", "confidence_threshold"};
}

UnmaskAlg parse_unmask_alg(const std::string& name) {
  for (int a = 0; a < 5; ++a)
    if (name == kAlgNames[a]) return static_cast<UnmaskAlg>(a);
  CGRPO_FAIL("sampler: unknown alg '", name, "'",
             hint("use origin | maskgit_plus | topk_margin | entropy | confidence_threshold"));
}

const char* to_string(UnmaskAlg alg) { return kAlgNames[static_cast<int>(alg)]; }

SamplerConfig SamplerConfig::from_rollout(const RolloutSection& r, int32_t mask_id, int32_t pad_id, uint64_t seed) {
  SamplerConfig c;
  c.max_new_tokens = r.max_new_tokens;
  c.steps = r.steps;
  c.tokens_per_step = r.tokens_per_step;
  c.temperature = static_cast<float>(r.temperature);
  c.top_p = static_cast<float>(r.top_p);
  c.top_k = r.top_k;
  c.alg = parse_unmask_alg(r.alg);
  c.alg_temp = static_cast<float>(r.alg_temp);
  c.eps = static_cast<float>(r.eps);
  c.confidence_threshold = static_cast<float>(r.confidence_threshold);
  c.mask_id = mask_id;
  c.pad_id = pad_id;
  c.seed = seed;
  c.validate();
  return c;
}

SamplerConfig SamplerConfig::grpo_rollout(const RolloutSection& r, int32_t mask_id, int32_t pad_id, uint64_t seed) {
  SamplerConfig c = from_rollout(r, mask_id, pad_id, seed);
  if (c.temperature == 0.0f) c.top_p = 1.0f;
  return c;
}

int64_t SamplerConfig::resolved_steps() const {
  return tokens_per_step > 0 ? max_new_tokens / tokens_per_step : steps;
}

void SamplerConfig::validate() const {
  CGRPO_CHECK(max_new_tokens >= 1, "sampler: max_new_tokens = ", max_new_tokens, " must be >= 1",
              hint("set rollout.max_new_tokens, e.g. 256"));
  CGRPO_CHECK(tokens_per_step >= 0, "sampler: tokens_per_step = ", tokens_per_step, " must be >= 0",
              hint("0 disables it (steps is used)"));
  CGRPO_CHECK(tokens_per_step == 0 || max_new_tokens % tokens_per_step == 0, "sampler: tokens_per_step = ",
              tokens_per_step, " does not divide max_new_tokens = ", max_new_tokens,
              hint("pick a divisor of max_new_tokens (steps = max_new_tokens / tokens_per_step)"));
  if (tokens_per_step == 0) {
    CGRPO_CHECK(steps >= 1, "sampler: steps = ", steps, " must be >= 1", hint("e.g. steps = max_new_tokens"));
    // Every step commits at most n(1 - s/t) tokens, so steps > max_new_tokens only adds empty steps (spec §2.2).
    CGRPO_CHECK(steps <= max_new_tokens, "sampler: steps = ", steps, " exceeds max_new_tokens = ", max_new_tokens,
                hint("at most one step per token: set steps <= max_new_tokens"));
  }
  CGRPO_CHECK(std::isfinite(temperature) && temperature >= 0.0f, "sampler: temperature = ", temperature,
              " must be >= 0", hint("0 = greedy"));
  CGRPO_CHECK(top_p > 0.0f && top_p <= 1.0f, "sampler: top_p = ", top_p, " is outside (0, 1]",
              hint("1 disables the nucleus filter"));
  CGRPO_CHECK(top_k >= 0, "sampler: top_k = ", top_k, " must be >= 0", hint("0 disables the filter"));
  CGRPO_CHECK(static_cast<int>(alg) >= 0 && static_cast<int>(alg) < 5, "sampler: unknown alg value ",
              static_cast<int>(alg));
  CGRPO_CHECK(std::isfinite(alg_temp) && alg_temp >= 0.0f, "sampler: alg_temp = ", alg_temp, " must be >= 0",
              hint("0 = deterministic top-k positions"));
  CGRPO_CHECK(eps > 0.0f && eps < 1.0f, "sampler: eps = ", eps, " is outside (0, 1)",
              hint("the reference uses 1e-3"));
  CGRPO_CHECK(alg != UnmaskAlg::ConfidenceThreshold || (confidence_threshold > 0.0f && confidence_threshold <= 1.0f),
              "sampler: confidence_threshold = ", confidence_threshold, " is outside (0, 1]", hint("e.g. 0.9"));
  CGRPO_CHECK(mask_id >= 0 && pad_id >= 0 && mask_id != pad_id, "sampler: mask_id = ", mask_id, ", pad_id = ", pad_id,
              hint("both are vocabulary ids and must differ (DiffuCoder: 151666 and 151643)"));
}

}  // namespace cgrpo
