// Diffusion sampling parameters (spec §2.1, §2.6), resolved from the [rollout] config section.
#pragma once

#include <cstdint>
#include <string>

namespace cgrpo {

struct RolloutSection;

// Which masked positions a step commits (spec §2.4) plus `confidence_threshold` (cgrpo extension).
enum class UnmaskAlg { Origin, MaskgitPlus, TopkMargin, Entropy, ConfidenceThreshold };
UnmaskAlg parse_unmask_alg(const std::string& name);  // fatal on an unknown name
const char* to_string(UnmaskAlg alg);

struct SamplerConfig {
  int64_t max_new_tokens = 256;  // N: the canvas gets N mask tokens after the prompt (§2.2)
  int64_t steps = 256;           // denoising steps
  int64_t tokens_per_step = 0;   // > 0: steps = max_new_tokens / tokens_per_step (README TOKEN_PER_STEP, §2.6)
  float temperature = 0.0f;      // 0 = greedy (§2.3)
  float top_p = 1.0f;            // (0, 1]; 1 = off
  int64_t top_k = 0;             // 0 = off
  UnmaskAlg alg = UnmaskAlg::Entropy;
  float alg_temp = 0.0f;         // 0: top-k positions by confidence; > 0: drawn from softmax(conf / alg_temp)
  float eps = 1e-3f;             // ts = linspace(1, eps, steps + 1)
  float confidence_threshold = 0.9f;  // alg = ConfidenceThreshold: commit every position with p(token) >= this
  int32_t mask_id = 151666;      // <|mask|> (§1.2)
  int32_t pad_id = 151643;       // left-pad filler (<|endoftext|>); never attended
  uint64_t seed = 42;
  // Every step runs the model's forward, also when this batch has nothing (left) to unmask: for a model whose
  // forward is collective (ZeRO-3 gathers each unit), so every rank runs the same number of forwards. Off, the
  // sampler skips such forwards and stops once nothing is masked (confidence_threshold finishes early).
  bool lockstep = false;

  static SamplerConfig from_rollout(const RolloutSection& r, int32_t mask_id, int32_t pad_id, uint64_t seed);
  // GRPO's rollouts: as from_rollout, but greedy (temperature 0) turns the nucleus filter off, as the reference's
  // trainer passes top_p = args.top_p if generation_temperature > 0 else 1.0 (spec §2.6): the entropy and
  // margin confidences then see the whole distribution. `cgrpo generate` keeps the configured top_p, as
  // diffusion_generate does.
  static SamplerConfig grpo_rollout(const RolloutSection& r, int32_t mask_id, int32_t pad_id, uint64_t seed);
  int64_t resolved_steps() const;  // tokens_per_step > 0 ? max_new_tokens / tokens_per_step : steps
  void validate() const;           // fatal with the offending value and a hint
};

}  // namespace cgrpo
