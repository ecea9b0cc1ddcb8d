// The diffusion sampling loop of spec §2.2 (Dream `_sample`): per step, logits at the still-masked completion
// positions, sample_tokens (§2.3), an UnmaskPolicy picks which to commit, committed tokens are never re-masked.
// Randomness: RngStream(seed, Sampler, step, global sample id), indexed by completion offset, so a sample's
// tokens depend neither on the batch it is in, nor on its row, nor on left padding, nor on the rank count.
// No loss is computed here.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "cgrpo/rollout/canvas.h"
#include "cgrpo/rollout/denoiser.h"
#include "cgrpo/rollout/sampler_config.h"
#include "cgrpo/rollout/schedule.h"
#include "cgrpo/rollout/token_sampler.h"
#include "cgrpo/rollout/unmask_policy.h"

namespace cgrpo {

struct StepCommit {
  int32_t row;        // canvas row
  int32_t col;        // canvas column (prompt_len + completion offset)
  int32_t token;      // the sampled token (a sampled mask id leaves the slot masked, as the reference does)
  float confidence;   // the policy's confidence (0 for origin)
};

struct StepRecord {
  int64_t step;
  float t, s;  // ts[step], ts[step + 1]
  std::vector<StepCommit> commits;  // row-major, in the policy's choice order within a row
};

// Called after every step with the canvas (tokens [batch, len]): the seed API's stream_diffusion_generate.
using StepCallback = std::function<void(int64_t step, const Canvas& canvas)>;

class Sampler {
 public:
  // policy = nullptr: the built-in policy for cfg.alg (make_unmask_policy). cfg is validated.
  explicit Sampler(const SamplerConfig& cfg, std::unique_ptr<UnmaskPolicy> policy = nullptr);

  const SamplerConfig& config() const { return cfg_; }
  const Schedule& schedule() const { return schedule_; }

  // Canvas::make + run. sample_ids[b] is the GLOBAL sample id of prompt b (the RNG key).
  Canvas generate(Denoiser& model, const std::vector<std::vector<int32_t>>& prompts,
                  const std::vector<uint32_t>& sample_ids, std::vector<StepRecord>* records = nullptr,
                  const StepCallback& on_step = {});
  // Steps 0..steps-1 on an existing canvas; stops early once no mask is left. Appends to *records if given.
  void run(Denoiser& model, Canvas& canvas, const std::vector<uint32_t>& sample_ids,
           std::vector<StepRecord>* records = nullptr, const StepCallback& on_step = {});
  // One denoising step i; returns the number of positions committed. No forward when nothing is sampled.
  int64_t step(Denoiser& model, Canvas& canvas, const std::vector<uint32_t>& sample_ids, int64_t i,
               StepRecord* record = nullptr);

  // Rows requested from the model per call (Denoiser::sample, or logits: memory chunk_rows * vocab floats, on
  // the model's device when it samples there, else here). Unset: the model's preferred_chunk_rows(), else 32.
  // Results do not depend on it.
  void set_chunk_rows(int64_t rows);

 private:
  void reserve(int64_t vocab, int64_t batch, int64_t new_tokens);

  SamplerConfig cfg_;
  Schedule schedule_;
  std::unique_ptr<UnmaskPolicy> policy_;
  std::unique_ptr<TokenSampler> token_sampler_;
  int64_t vocab_ = 0, chunk_rows_ = 0;  // 0 = unset
  int64_t rows_ = 32;                    // rows per call this step: chunk_rows_, or the model's preference
  // workspaces, [batch * new_tokens] unless noted; sized by reserve(), reused across steps
  std::vector<float> logits_;      // [chunk_rows, vocab] when the model does not sample (Denoiser::sample)
  std::vector<double> chunk_u_;    // [chunk_rows] the draws' uniforms of one chunk
  std::vector<int32_t> chunk_tok_; // [chunk_rows] its tokens
  std::vector<float> chunk_conf_;  // [chunk_rows] its confidences
  std::vector<int32_t> cand_;      // masked completion offsets of row b at [b * N, b * N + ncand_[b])
  std::vector<int64_t> ncand_;     // [batch]
  std::vector<int32_t> target_;    // offsets to sample in row b (all candidates, or the preselected ones)
  std::vector<int64_t> ntarget_;   // [batch]
  std::vector<int32_t> chosen_;    // policy output, indices into the row's candidates
  std::vector<int64_t> nchosen_;   // [batch]
  std::vector<int32_t> req_row_, req_col_, req_slot_;  // logits requests: canvas row, column, slot b * N + j
  std::vector<int32_t> tok_;       // sampled token per slot
  std::vector<float> conf_;        // confidence per slot
  std::vector<uint8_t> seen_;      // [new_tokens] checks a policy's choice
};

}  // namespace cgrpo
