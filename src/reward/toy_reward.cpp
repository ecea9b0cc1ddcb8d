#include "cgrpo/reward/toy_reward.h"

#include "cgrpo/core/error.h"

namespace cgrpo {

ToyReward::ToyReward() {
  add(std::make_unique<IntAnswerChecker>());
  add(std::make_unique<PrefixMatchChecker>());
}

void ToyReward::add(std::unique_ptr<ToyChecker> c) {
  const std::string n = c->name();
  CGRPO_CHECK(checkers_.emplace(n, std::move(c)).second, "toy reward: checker '", n, "' added twice");
}

RewardOutput ToyReward::score(const std::vector<RewardSample>& batch) {
  RewardOutput o;
  o.scores.reserve(batch.size());
  o.status.assign(batch.size(), RunStatus::Ok);
  for (const RewardSample& s : batch) {
    auto it = checkers_.find(s.task);
    CGRPO_CHECK(it != checkers_.end(), "toy reward: no checker for task '", s.task, "'",
                hint("toy tasks name a checker: int or prefix"));
    o.scores.push_back(it->second->score(s.completion, s.answer));
  }
  return o;
}

}  // namespace cgrpo
