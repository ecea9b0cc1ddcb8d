#include "cgrpo/reward/reward_options.h"

#include <algorithm>
#include <cmath>

namespace cgrpo {

SandboxConfig sandbox_config(const RewardSection& r) {
  SandboxConfig s;
  s.workers = int(r.workers);
  s.timeout_s = r.test_timeout_s;
  s.cpu_s = std::max(1, int(std::ceil(r.test_timeout_s)));
  s.mem_bytes = uint64_t(r.memory_mb) << 20;
  return s;
}

CodeExecOptions code_exec_options(const RewardSection& r) {
  CodeExecOptions o;
  o.timeout_policy = parse_timeout_policy(r.timeout_policy);
  o.test_timeout_s = r.test_timeout_s;
  o.completion_budget_s = r.completion_timeout_s;
  return o;
}

}  // namespace cgrpo
