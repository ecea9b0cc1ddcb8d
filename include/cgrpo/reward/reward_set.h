// RewardSet: weighted sum of reward functions, r_i = nansum_k(w_k * r_k,i) (spec §3.5; recipe weights
// code = 2.0, code_format = 0.5, so r in {0, 0.25} U [0.5, 2.5], spec §4.4).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cgrpo/reward/code_exec.h"
#include "cgrpo/reward/reward_fn.h"
#include "cgrpo/reward/sandbox.h"

namespace cgrpo {

struct RewardSetOutput {
  std::vector<float> total;                // one per sample
  std::vector<std::vector<float>> per_fn;  // [function][sample], in add() order
  std::vector<RunStatus> status;           // one per sample, worst over functions
  StatusCounts runs;                       // all sandbox runs
};

class RewardSet {
 public:
  // Builds "code", "code_format" and "toy" by name, with their weights.
  static RewardSet make(const std::vector<std::string>& names, const std::vector<float>& weights, Sandbox& sb,
                        const CodeExecOptions& code_opt = {});
  // sb may be nullptr when no function needs the sandbox (toy rewards); fatal otherwise.
  static RewardSet make(const std::vector<std::string>& names, const std::vector<float>& weights, Sandbox* sb,
                        const CodeExecOptions& code_opt = {});

  void add(std::unique_ptr<RewardFn> fn, float weight);  // names must be unique
  void set_weight(const std::string& name, float w);
  float weight(const std::string& name) const;
  std::vector<std::string> names() const;
  RewardSetOutput score(const std::vector<RewardSample>& batch);

 private:
  size_t index(const std::string& name) const;
  std::vector<std::unique_ptr<RewardFn>> fns_;
  std::vector<float> weights_;
};

}  // namespace cgrpo
