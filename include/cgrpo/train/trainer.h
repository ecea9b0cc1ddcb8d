// Trainer: `cgrpo train` (masked-diffusion SFT warm-up, then Coupled-GRPO) and `cgrpo sft`, on every rank.
// spec/coupled_grpo.md §3 (loop, estimator, loss, reference model) and §5 (the step), over the ZeRO engine,
// the diffusion sampler and the reward functions.
//
// One GRPO round (spec §3.2): this rank's prompts (whole groups of G), rollouts, rewards, leave-one-out
// advantages, old-policy and reference coupled scores for every iteration u < mu, then mu optimizer steps,
// each over grad_accum micro-batches of per_device_batch completions.
// Iteration indexing: iteration u of a round uses mask draw u (RngStream step = round * mu + u), for the
// old/ref scores and for the loss alike. This FIXES the reference's quirk (spec §3.7), where micro-step
// counting made each chunk reuse one mask index in both policy updates of a round.
#pragma once

#include <csignal>
#include <limits>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "cgrpo/backend/backend.h"
#include "cgrpo/comm/mpi_communicator.h"
#include "cgrpo/config/config.h"
#include "cgrpo/core/timer.h"
#include "cgrpo/data/dataset.h"
#include "cgrpo/data/group_sampler.h"
#include "cgrpo/data/toy_task.h"
#include "cgrpo/model/dream_model.h"
#include "cgrpo/reward/reward_set.h"
#include "cgrpo/reward/sandbox.h"
#include "cgrpo/rollout/sampler.h"
#include "cgrpo/shard/model_units.h"
#include "cgrpo/tokenizer/text_codec.h"
#include "cgrpo/train/coupled_scorer.h"

namespace cgrpo {

// Set by SIGTERM / SIGUSR1: checkpoint at the next round boundary and exit 0 (Slurm preemption, requeue).
extern volatile std::sig_atomic_t g_stop_signal;
void install_stop_signal_handlers();
struct StopRequested {};  // thrown out of the loops after the stop checkpoint

// The SFT target of a prompt, K tokens: its answer text, the end token, then padding (cut to K). The answer is
// the toy task's "answer", else the canonical solution as "```python\n{solution}\n```\n": the one block of
// spec §4.1, closed by the fence and exactly one newline, which the format reward requires of the text
// before the end token (completion_text).
std::vector<int32_t> sft_target(const TextCodec& codec, const Prompt& p, int64_t K);
// The text the rewards read (reward.completion_text). all: the K completion tokens decoded with special tokens
// skipped, as the reference's batch_decode (spec §3.4), so DiffuCoder-Instruct's "...```<|im_end|>\n<|dlm_pad|>..."
// reads "...```\n", which the format reward requires (§4.1); before_end: the tokens before the first end token.
std::string completion_text(const TextCodec& codec, const int32_t* y, int64_t K, bool before_end);

class Trainer {
 public:
  Trainer(Config cfg, MpiCommunicator& comm);
  ~Trainer();
  int train();     // SFT warm-up (sft.steps) then GRPO (run.max_steps or run.epochs)
  int sft_only();  // SFT, then a final checkpoint

 private:
  struct Rollout;  // one round's completions, masks, rewards, advantages, old/ref scores
  void init_model();
  void resume();
  void sft_loop();
  void grpo_loop();
  Rollout rollout_round(int64_t round, PhaseTimes& phases);
  void score_old_ref(Rollout& r, int64_t round, PhaseTimes& phases);
  CoupledBatch micro_batch(const Rollout& r, int64_t m0, int64_t n, int64_t round, int64_t u) const;
  double evaluate(const char* when);
  std::string checkpoint(const std::string& phase, PhaseTimes* phases);  // the path written
  // checkpoint.keep_best: when eval_reward beats the best so far, `path` (the checkpoint of this step; written
  // now when empty) becomes best.h5. Collective.
  void consider_best(double eval_reward, std::string path);
  bool stop_requested();
  std::vector<int32_t> prompt_ids(const Prompt& p) const;
  std::vector<RewardSample> reward_samples(const std::vector<const Prompt*>& prompts,
                                           const std::vector<std::string>& completions) const;
  double step_mfu(const DreamModel::TrainedWork& w, int64_t seq_len, double ms) const;
  void write_metrics(const nlohmann::json& line);  // one line of metrics.jsonl (rank 0; a no-op elsewhere), flushed
  // The text the rewards read of a completion y [K] (completion_text under reward.completion_text).
  std::string reward_text(const int32_t* y, int64_t K) const;
  void log_step(const std::string& phase, int64_t step, int64_t total, double loss, const std::string& extra,
                const PhaseTimes& phases, double step_ms, double tokens_per_s);

  Config cfg_;
  MpiCommunicator& comm_;
  int rank_, world_;
  ModelConfig mc_;
  std::unique_ptr<ParamLayout> layout_;
  std::unique_ptr<Backend> be_;
  std::unique_ptr<Communicator> dcomm_;  // parameter traffic in device memory (NCCL); null on the CPU backend
  Communicator& pcomm() { return dcomm_ ? *dcomm_ : comm_; }  // the communicator the engines use
  std::unique_ptr<DreamModel> model_;
  std::unique_ptr<ZeroEngine> policy_, ref_;
  std::unique_ptr<EngineParamSource> src_;
  std::unique_ptr<TextCodec> codec_;
  std::unique_ptr<Dataset> data_;
  std::unique_ptr<ToyTask> toy_;
  // The evaluation's prompts (run.eval_dataset): a toy task's unseen indices, or a dataset's first prompts.
  // Either points at the training data's (data_, toy_) or owns its own (eval_data_own_, eval_toy_own_).
  const Dataset* eval_data_ = nullptr;
  const ToyTask* eval_toy_ = nullptr;
  std::unique_ptr<Dataset> eval_data_own_;
  std::unique_ptr<ToyTask> eval_toy_own_;
  std::string eval_name_;  // for the log: what the evaluation scores
  std::unique_ptr<Sandbox> sandbox_;
  std::unique_ptr<RewardSet> rewards_;
  std::unique_ptr<GroupSampler> sampler_;
  std::string ckpt_dir_;
  int64_t sft_step_ = 0, grpo_step_ = 0, tokens_seen_ = 0;
  bool sft_done_ = false;
  double reward_before_ = -1, reward_after_ = -1;
  double best_reward_ = -std::numeric_limits<double>::infinity();  // best.json's, across restarts
  Timer run_timer_;
  FILE* metrics_ = nullptr;  // rank 0: run_dir/metrics.jsonl
};

}  // namespace cgrpo
