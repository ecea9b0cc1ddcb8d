// Which masked positions a denoising step commits: the seed API's custom unmask_fn. The sampler calls
// select() once per row and step; the built-in algorithms of spec §2.4 (plus confidence_threshold) implement it.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "cgrpo/core/philox.h"
#include "cgrpo/rollout/sampler_config.h"
#include "cgrpo/rollout/token_sampler.h"

namespace cgrpo {

// One row at one step. Candidates are the row's still-masked completion positions, in ascending order.
struct UnmaskRow {
  int64_t step = 0, steps = 0;  // i in [0, steps)
  float t = 1, s = 0;           // ts[i], ts[i+1] (spec §2.2)
  float fraction = 0;           // 1 - s/t, 1 at the last step
  int64_t k = 0;                // schedule count int(n (1 - s/t)), n at the last step
  int64_t n = 0;                // candidates
  const int32_t* offsets = nullptr;     // [n] completion offsets (column - prompt_len)
  const int32_t* tokens = nullptr;      // [n] sampled tokens; nullptr when preselect()
  const float* confidence = nullptr;    // [n] per confidence(); nullptr when preselect()
  const RngStream* rng = nullptr;       // (seed, Sampler, step, global sample id)
  uint64_t rng_word = 0;                // words rng_word + offset are reserved for the policy (one per position)
  // The policy's uniform for candidate j, keyed by its completion offset (independent of batch and padding).
  float uniform(int64_t j) const { return rng->uniform(rng_word + static_cast<uint64_t>(offsets[j])); }
};

class UnmaskPolicy {
 public:
  virtual ~UnmaskPolicy() = default;
  virtual Confidence confidence() const = 0;  // what the sampler computes per candidate
  // true: select() runs BEFORE the forward with tokens/confidence = nullptr, and only the chosen positions are
  // sampled (origin: the choice does not depend on the logits, §2.2).
  virtual bool preselect() const { return false; }
  // Write the chosen candidate indices (distinct, in [0, n)) to chosen[0..); return how many.
  virtual int64_t select(const UnmaskRow& row, int32_t* chosen) = 0;
};

// origin: each candidate independently with probability 1 - s/t (all at the last step).
class OriginPolicy final : public UnmaskPolicy {
 public:
  Confidence confidence() const override { return Confidence::None; }
  bool preselect() const override { return true; }
  int64_t select(const UnmaskRow& row, int32_t* chosen) override;
};

// maskgit_plus / topk_margin / entropy: the k most confident (ties: lower offset) when alg_temp = 0; with
// alg_temp > 0, k drawn without replacement from softmax(conf / alg_temp) (torch.multinomial), done as
// Gumbel-top-k: argtop-k of conf / alg_temp + Gumbel noise has exactly that distribution.
class TopKPolicy final : public UnmaskPolicy {
 public:
  TopKPolicy(Confidence kind, float alg_temp) : kind_(kind), alg_temp_(alg_temp) {}
  Confidence confidence() const override { return kind_; }
  int64_t select(const UnmaskRow& row, int32_t* chosen) override;

 private:
  Confidence kind_;
  float alg_temp_;
  std::vector<double> keys_;  // Gumbel keys, sized to the largest row seen
};

// confidence_threshold: every candidate with p(token) >= threshold, at least the most confident one; all at
// the last step. Rows may finish before `steps`.
class ThresholdPolicy final : public UnmaskPolicy {
 public:
  explicit ThresholdPolicy(float threshold) : threshold_(threshold) {}
  Confidence confidence() const override { return Confidence::Prob; }
  int64_t select(const UnmaskRow& row, int32_t* chosen) override;

 private:
  float threshold_;
};

std::unique_ptr<UnmaskPolicy> make_unmask_policy(const SamplerConfig& cfg);

}  // namespace cgrpo
