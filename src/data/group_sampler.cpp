// Global-index sampler: include/cgrpo/data/group_sampler.h, spec/coupled_grpo.md §3.2.
#include "cgrpo/data/group_sampler.h"

#include <numeric>

#include "cgrpo/core/error.h"
#include "cgrpo/core/philox.h"

namespace cgrpo {

std::vector<int64_t> RankBatch::samples() const {
  std::vector<int64_t> out;
  out.reserve(prompts.size() * static_cast<size_t>(group_size));
  for (int64_t p : prompts) out.insert(out.end(), static_cast<size_t>(group_size), p);
  return out;
}

GroupSampler::GroupSampler(int64_t num_prompts, int64_t prompts_per_batch, int64_t group_size, int world_size,
                           int rank, uint64_t seed, bool shuffle)
    : num_prompts_(num_prompts), prompts_per_batch_(prompts_per_batch), group_size_(group_size),
      world_(world_size), rank_(rank), seed_(seed), shuffle_(shuffle) {
  CGRPO_CHECK(world_size > 0 && rank >= 0 && rank < world_size, "rank ", rank, " of world size ", world_size);
  CGRPO_CHECK(group_size > 0, "group size G = ", group_size, " must be positive", hint("set grpo.num_generations"));
  CGRPO_CHECK(prompts_per_batch > 0 && prompts_per_batch % world_size == 0, "prompts per step ", prompts_per_batch,
              " is not a positive multiple of the world size ", world_size,
              hint("a GRPO group stays on one rank (spec §3.2): per_device_batch * grad_accum * W must be a "
                   "multiple of num_generations * W"));
  CGRPO_CHECK(num_prompts >= prompts_per_batch, "the dataset has ", num_prompts, " prompts, fewer than the ",
              prompts_per_batch, " one step needs; every epoch would be empty",
              hint("use more data (data.max_samples) or fewer prompts per step"));
}

std::vector<int64_t> GroupSampler::epoch_order(int64_t epoch) const {
  std::vector<int64_t> order(static_cast<size_t>(num_prompts_));
  std::iota(order.begin(), order.end(), int64_t{0});
  if (!shuffle_) return order;
  CGRPO_CHECK(epoch >= 0 && epoch <= int64_t{UINT32_MAX}, "epoch ", epoch, " out of range");
  // Fisher-Yates from the top; word i of the stream picks the swap partner of position n-1-i.
  const RngStream rng(seed_, RngPurpose::Data, static_cast<uint32_t>(epoch), 0);
  for (int64_t i = num_prompts_ - 1, w = 0; i > 0; --i, ++w) {
    const uint64_t r = (uint64_t{rng.u32(2 * w)} << 32) | rng.u32(2 * w + 1);  // 64 bits: bias ~ n / 2^64
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(r % static_cast<uint64_t>(i + 1))]);
  }
  return order;
}

RankBatch GroupSampler::next() {
  if (cur_.prompt + prompts_per_batch_ > num_prompts_) {  // drop the incomplete tail (TRL RepeatSampler)
    ++cur_.epoch;
    cur_.prompt = 0;
  }
  if (order_epoch_ != cur_.epoch) {
    order_ = epoch_order(cur_.epoch);
    order_epoch_ = cur_.epoch;
  }
  const int64_t per_rank = prompts_per_rank();
  RankBatch b;
  b.batch = cur_.batch;
  b.epoch = cur_.epoch;
  b.first_position = cur_.position + rank_ * per_rank;
  b.group_size = group_size_;
  const auto first = order_.begin() + cur_.prompt + rank_ * per_rank;
  b.prompts.assign(first, first + per_rank);
  cur_.prompt += prompts_per_batch_;
  cur_.position += prompts_per_batch_;
  ++cur_.batch;
  return b;
}

void GroupSampler::restore(const SamplerCursor& c) {
  CGRPO_CHECK(c.epoch >= 0 && c.prompt >= 0 && c.prompt <= num_prompts_ && c.batch >= 0 && c.position >= 0,
              "sampler cursor (epoch ", c.epoch, ", prompt ", c.prompt, ", batch ", c.batch, ", position ",
              c.position, ") does not fit a dataset of ", num_prompts_, " prompts",
              hint("resume with the dataset (data.dataset, data.max_samples) the checkpoint was written with"));
  cur_ = c;
}

}  // namespace cgrpo
