// Global-index GRPO sampler (spec/coupled_grpo.md §3.2, TRL RepeatSampler; ARCHITECTURE.md §3.3).
//
// Epoch e visits the dataset in the order shuffle(seed, e): a Fisher-Yates permutation driven by the Philox
// stream (seed, RngPurpose::Data, step = e, sample = 0) (identity when shuffle is off). The global sample
// sequence is p_0 repeated G times, p_1 repeated G times, ... A batch (one rollout round: the prompts one
// optimizer step's completions come from, §3.2) takes P = prompts_per_batch consecutive prompts; the tail of an
// epoch shorter than P is dropped (TRL drops the incomplete last chunk) and the next epoch starts with a new
// shuffle. Whole groups stay on one rank: rank r of W gets the prompts at global positions
// [b*P + r*P/W, b*P + (r+1)*P/W) of batch b. Nothing but the rank slice depends on W, so concatenating the
// ranks' prompts in rank order gives the same sequence at every world size.
//
// Global sample id of completion j of the prompt at global prompt position q: q*G + j, where q counts the
// prompts handed out over all epochs (dropped tails not counted): the Philox `sample` of rollouts and masks.
#pragma once

#include <cstdint>
#include <vector>

namespace cgrpo {

// Position in global units; what a checkpoint stores. `prompt` indexes the epoch's shuffled order.
struct SamplerCursor {
  int64_t epoch = 0;
  int64_t prompt = 0;
  int64_t batch = 0;     // batches handed out so far, over all epochs
  int64_t position = 0;  // prompts handed out so far, over all epochs (global prompt position of the next)
  bool operator==(const SamplerCursor&) const = default;
};

struct RankBatch {
  int64_t batch = 0;                 // global batch index
  int64_t epoch = 0;
  int64_t first_position = 0;        // global prompt position of prompts[0]
  int64_t group_size = 0;            // G
  std::vector<int64_t> prompts;      // dataset indices, P/W of them, each one GRPO group

  int64_t sample_id(int64_t k, int64_t j) const { return (first_position + k) * group_size + j; }
  std::vector<int64_t> samples() const;  // RepeatSampler view: each prompt index repeated G times
};

class GroupSampler {
 public:
  // Fatal unless num_prompts >= prompts_per_batch > 0, prompts_per_batch % world_size == 0, 0 <= rank < W,
  // group_size > 0.
  GroupSampler(int64_t num_prompts, int64_t prompts_per_batch, int64_t group_size, int world_size, int rank,
               uint64_t seed, bool shuffle = true);

  RankBatch next();  // this rank's share of the next batch; advances the cursor
  int64_t batches_per_epoch() const { return num_prompts_ / prompts_per_batch_; }
  int64_t prompts_per_rank() const { return prompts_per_batch_ / world_; }

  const SamplerCursor& cursor() const { return cur_; }
  // Continue from a saved cursor (any world size). Fatal when it does not fit this dataset.
  void restore(const SamplerCursor& c);

  // The epoch's visiting order of dataset indices (all num_prompts of them, before the tail is dropped).
  std::vector<int64_t> epoch_order(int64_t epoch) const;

 private:
  int64_t num_prompts_, prompts_per_batch_, group_size_;
  int world_, rank_;
  uint64_t seed_;
  bool shuffle_;
  SamplerCursor cur_;
  std::vector<int64_t> order_;  // epoch_order(order_epoch_)
  int64_t order_epoch_ = -1;
};

}  // namespace cgrpo
