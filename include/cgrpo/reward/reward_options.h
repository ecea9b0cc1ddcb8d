// The [reward] config section as sandbox and code-execution options: one mapping for the trainer, `cgrpo eval`
// and `cgrpo reward`, so all three score a completion the same way.
#pragma once

#include "cgrpo/config/config.h"
#include "cgrpo/reward/code_exec.h"
#include "cgrpo/reward/sandbox.h"

namespace cgrpo {

// workers, per-test wall limit (and RLIMIT_CPU = its ceiling), address-space limit
SandboxConfig sandbox_config(const RewardSection& r);
// timeout policy, per-test limit, and completion_timeout_s as each completion's own budget (spec §4.3)
CodeExecOptions code_exec_options(const RewardSection& r);

}  // namespace cgrpo
