// RewardFn: scores a batch of completions (ARCHITECTURE.md §3.6; spec §3.5, §4).
#pragma once

#include <string>
#include <vector>

#include "cgrpo/reward/run_status.h"

namespace cgrpo {

// One completion and what it is scored against.
struct RewardSample {
  std::string completion;          // decoded completion text, special tokens skipped (spec §4.1 `content`)
  std::vector<std::string> tests;  // code tasks: one assert line per test, each in a fresh interpreter (§4.3)
  std::string task;                // toy tasks: name of the ToyChecker that scores it
  std::string answer;              // toy tasks: the expected answer
};

struct RewardOutput {
  std::vector<float> scores;      // one per sample
  std::vector<RunStatus> status;  // one per sample: the most severe status of its runs; Ok when nothing ran
                                  // because nothing had to, Skipped when the spec says not to run it
  StatusCounts runs;              // one entry per sandbox run (code: one per test), for metrics
};

class RewardFn {
 public:
  virtual ~RewardFn() = default;
  virtual const std::string& name() const = 0;
  virtual RewardOutput score(const std::vector<RewardSample>& batch) = 0;
};

}  // namespace cgrpo
