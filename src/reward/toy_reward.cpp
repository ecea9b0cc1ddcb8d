#include "cgrpo/reward/toy_reward.h"

#include "cgrpo/core/error.h"
#include "cgrpo/data/toy_task.h"

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
    if (s.task.rfind("toy:", 0) == 0) {  // the synthetic datasets score with their own task (data/toy_task.h)
      auto& task = tasks_[s.task];
      if (!task) task = make_toy_task(s.task);
      Prompt p;
      p.id = s.task;
      p.kind = task->name();
      p.meta["answer"] = s.answer;
      o.scores.push_back(task->score(p, s.completion));
      continue;
    }
    auto it = checkers_.find(s.task);
    CGRPO_CHECK(it != checkers_.end(), "toy reward: no checker for task '", s.task, "'",
                hint("toy tasks name a checker: int or prefix"));
    o.scores.push_back(it->second->score(s.completion, s.answer));
  }
  return o;
}

}  // namespace cgrpo
