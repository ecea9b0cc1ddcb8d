// Plumbing shared by `cgrpo generate`, `cgrpo eval` and `cgrpo reward`: a model + codec + sampler for
// inference, the rank split of a list (item i on rank i % W, so a sample's global id is independent of W),
// gathering per-item JSON lines back into input order on rank 0, the sandbox built from [reward], and the
// unbiased pass@k estimator.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cgrpo/backend/backend.h"
#include "cgrpo/config/config.h"
#include "cgrpo/core/buffer.h"
#include "cgrpo/data/dataset.h"
#include "cgrpo/model/dream_model.h"
#include "cgrpo/reward/code_exec.h"
#include "cgrpo/reward/reward_options.h"
#include "cgrpo/reward/sandbox.h"
#include "cgrpo/rollout/sampler.h"
#include "cgrpo/tokenizer/text_codec.h"
#include "cgrpo/model/flat_params.h"
#include "cgrpo/train/model_denoiser.h"

namespace cgrpo::cli {

// A model directory loaded for generation, its codec, and a sampler configured from cfg.rollout / cfg.run.seed,
// on parallel.backend (cuda: device local_rank % GPUs), in parallel.param_dtype / compute_dtype (bf16 weights are
// the fp32 checkpoint rounded to nearest even on the device; bf16 activations need bf16 weights).
class Generator {
 public:
  Generator(const std::string& model_dir, const Config& cfg, int local_rank = 0);
  const TextCodec& codec() const { return *codec_; }
  const SamplerConfig& sampler_config() const { return sampler_->config(); }

  // chat: the chat template (codec.prompt_ids(text, data.system_prompt)); else the text encoded as is.
  // Fatal (naming `where`) when the prompt is empty or prompt + max_new_tokens exceeds the model's positions.
  std::vector<int32_t> prompt_ids(const std::string& text, bool chat, const std::string& where) const;
  // Completions (max_new_tokens ids each) of prompts[i] with global sample id ids[i], in batches of
  // rollout.batch_size. on_step sees every step of every batch.
  std::vector<std::vector<int32_t>> generate(const std::vector<std::vector<int32_t>>& prompts,
                                             const std::vector<uint32_t>& ids, const StepCallback& on_step = {});
  // The completion up to (not including) its first end token.
  std::vector<int32_t> until_end(const std::vector<int32_t>& completion) const;

 private:
  ModelConfig mcfg_;
  std::unique_ptr<Backend> be_;
  std::unique_ptr<DreamModel> model_;
  Buffer params_;                       // [P] in the parameter dtype
  std::unique_ptr<FlatParams> source_;  // the model's units of params_
  std::unique_ptr<ModelDenoiser> denoiser_;
  std::unique_ptr<TextCodec> codec_;
  std::unique_ptr<Sampler> sampler_;
  std::string system_prompt_;
  int64_t batch_size_;
};

// Model directory: --model if given, else model.path; fatal when neither is set.
std::string model_dir_of(const std::string& flag, const Config& cfg);

// Indices i in [0, n) with i % world == rank, ascending.
std::vector<int64_t> rank_items(int64_t n, int rank, int world);

// Rank r's lines (one JSON line per item of rank_items(n, r, W), in that order) -> all n lines in item order.
std::vector<std::string> interleave_rank_lines(const std::vector<std::vector<std::string>>& per_rank, int64_t n);

// Gathers every rank's lines to rank 0 over MPI_COMM_WORLD (rank 0 gets all ranks' lines, others nothing) and
// returns them in item order (interleave_rank_lines); world == 1 needs no MPI.
std::vector<std::string> gather_lines(const std::vector<std::string>& mine, int64_t n, int rank, int world);

// cfg.data with data.dataset = name (data.path kept only when name is the configured dataset) and
// data.max_samples = limit; then Dataset::from_config with run.seed.
Dataset load_dataset(const Config& cfg, const std::string& name, int64_t limit);

// Unbiased pass@k of one problem with n samples of which c passed: 1 - C(n-c, k) / C(n, k) (k <= n).
double pass_at_k(int64_t n, int64_t c, int64_t k);

}  // namespace cgrpo::cli
