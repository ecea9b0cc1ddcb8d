#include "cgrpo/reward/reward_set.h"

#include <cmath>

#include "cgrpo/core/error.h"
#include "cgrpo/reward/code_format.h"
#include "cgrpo/reward/toy_reward.h"

namespace cgrpo {

RewardSet RewardSet::make(const std::vector<std::string>& names, const std::vector<float>& weights, Sandbox& sb,
                          const CodeExecOptions& code_opt) {
  return make(names, weights, &sb, code_opt);
}

RewardSet RewardSet::make(const std::vector<std::string>& names, const std::vector<float>& weights, Sandbox* sb,
                          const CodeExecOptions& code_opt) {
  CGRPO_CHECK(names.size() == weights.size(), "reward: ", names.size(), " functions but ", weights.size(), " weights",
              hint("give one [reward] weight per reward function"));
  RewardSet set;
  for (size_t k = 0; k < names.size(); ++k) {
    std::unique_ptr<RewardFn> fn;
    if ((names[k] == "code" || names[k] == "code_format") && sb == nullptr)
      CGRPO_FAIL("reward '", names[k], "' needs the code sandbox, which was not created");
    if (names[k] == "code") fn = std::make_unique<CodeExecReward>(*sb, code_opt);
    else if (names[k] == "code_format") fn = std::make_unique<CodeFormatReward>(*sb);
    else if (names[k] == "toy") fn = std::make_unique<ToyReward>();
    else CGRPO_FAIL("unknown reward function '", names[k], "'", hint("use code, code_format or toy"));
    set.add(std::move(fn), weights[k]);
  }
  return set;
}

void RewardSet::add(std::unique_ptr<RewardFn> fn, float weight) {
  for (const auto& f : fns_)
    CGRPO_CHECK(f->name() != fn->name(), "reward: function '", fn->name(), "' added twice");
  fns_.push_back(std::move(fn));
  weights_.push_back(weight);
}

size_t RewardSet::index(const std::string& name) const {
  for (size_t k = 0; k < fns_.size(); ++k)
    if (fns_[k]->name() == name) return k;
  CGRPO_FAIL("reward: no function '", name, "' in the set");
}

void RewardSet::set_weight(const std::string& name, float w) { weights_[index(name)] = w; }
float RewardSet::weight(const std::string& name) const { return weights_[index(name)]; }

std::vector<std::string> RewardSet::names() const {
  std::vector<std::string> n;
  for (const auto& f : fns_) n.push_back(f->name());
  return n;
}

RewardSetOutput RewardSet::score(const std::vector<RewardSample>& batch) {
  RewardSetOutput o;
  o.total.assign(batch.size(), 0.0f);
  o.status.assign(batch.size(), RunStatus::Ok);
  for (size_t k = 0; k < fns_.size(); ++k) {
    RewardOutput r = fns_[k]->score(batch);
    CGRPO_CHECK(r.scores.size() == batch.size() && r.status.size() == batch.size(), "reward '", fns_[k]->name(),
                "' returned ", r.scores.size(), " scores for ", batch.size(), " samples");
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!std::isnan(r.scores[i])) o.total[i] += weights_[k] * r.scores[i];  // nansum (spec §3.5: None -> NaN)
      if (r.status[i] != RunStatus::Skipped) o.status[i] = worst(o.status[i], r.status[i]);
    }
    o.runs += r.runs;
    o.per_fn.push_back(std::move(r.scores));
  }
  return o;
}

}  // namespace cgrpo
