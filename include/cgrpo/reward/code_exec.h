// `code` execution reward (spec §4.3): pass fraction of the sample's tests, each run as
// code + "\n" + test in a fresh interpreter, only for completions whose code_format reward is 1.0.
#pragma once

#include <string>
#include <string_view>

#include "cgrpo/reward/code_format.h"
#include "cgrpo/reward/reward_fn.h"
#include "cgrpo/reward/sandbox.h"

namespace cgrpo {

// ZeroAll: any test that times out makes the whole completion 0 (the reference: TimeoutExpired is uncaught,
// no __PASS_RATE__ is printed, the provider returns 0.0). FailTest: only that test counts as failed.
enum class TimeoutPolicy { ZeroAll, FailTest };
TimeoutPolicy parse_timeout_policy(const std::string& s);  // "zero_all" | "fail_test"

struct CodeExecOptions {
  TimeoutPolicy timeout_policy = TimeoutPolicy::ZeroAll;
  double test_timeout_s = 5.0;    // per test (spec §4.3 exec_timeout = 5)
  double completion_budget_s = 0.0;  // > 0: all of one completion's tests end within this many seconds of its
                                     // first test's start (the reference's 30 s sandbox per completion, §4.3)
};

// The program for one test. A test passes when the program exits 0 AND prints `sentinel` from the line
// after the test (deviation from the reference, where exit code 0 alone passes): sys.exit(0) or
// os._exit(0) before the asserts must not pass. The sentinel is a fresh random nonce per run; code that
// reads its own source to find it is out of scope (as is code that overrides __eq__).
std::string test_program(std::string_view code, std::string_view test, std::string_view sentinel);

class CodeExecReward : public RewardFn {
 public:
  CodeExecReward(Sandbox& sb, CodeExecOptions opt = {}) : sb_(sb), opt_(opt), format_(sb) {}
  const std::string& name() const override { return name_; }
  RewardOutput score(const std::vector<RewardSample>& batch) override;

 private:
  Sandbox& sb_;
  CodeExecOptions opt_;
  CodeFormatReward format_;
  std::string name_ = "code";
};

}  // namespace cgrpo
