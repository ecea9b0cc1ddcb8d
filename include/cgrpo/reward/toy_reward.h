// `toy` reward: RewardSample::task names the ToyChecker ("int", "prefix"), or a synthetic task ("toy:arith",
// ...) scored by data/toy_task.h; RewardSample::answer is the expected answer.
#pragma once

#include "cgrpo/data/toy_task.h"

#include <map>
#include <memory>
#include <string>

#include "cgrpo/reward/reward_fn.h"
#include "cgrpo/reward/toy_checker.h"

namespace cgrpo {

class ToyReward : public RewardFn {
 public:
  ToyReward();  // with "int" and "prefix"
  void add(std::unique_ptr<ToyChecker> c);
  const std::string& name() const override { return name_; }
  RewardOutput score(const std::vector<RewardSample>& batch) override;  // unknown task: fatal

 private:
  std::map<std::string, std::unique_ptr<ToyChecker>, std::less<>> checkers_;
  std::map<std::string, std::unique_ptr<ToyTask>> tasks_;  // "toy:<task>" samples: the data module's scorer
  std::string name_ = "toy";
};

}  // namespace cgrpo
