#include "cgrpo/reward/code_exec.h"

#include <cstdio>
#include <random>

#include "cgrpo/core/error.h"

namespace cgrpo {

TimeoutPolicy parse_timeout_policy(const std::string& s) {
  if (s == "zero_all") return TimeoutPolicy::ZeroAll;
  if (s == "fail_test") return TimeoutPolicy::FailTest;
  CGRPO_FAIL("unknown reward timeout policy '", s, "'", hint("use zero_all (the reference) or fail_test"));
}

std::string test_program(std::string_view code, std::string_view test, std::string_view sentinel) {
  // spec §4.3: python3 -c f"{code}\n{case}"; then the sentinel, written to fd 1 directly so that code which
  // replaces sys.stdout cannot hide it.
  std::string p;
  p.reserve(code.size() + test.size() + sentinel.size() + 96);
  p.append(code).append("\n").append(test).append("\n");
  p.append("import os as _cgrpo_os\n_cgrpo_os.write(1, b\"\\n").append(sentinel).append("\\n\")\n");
  return p;
}

RewardOutput CodeExecReward::score(const std::vector<RewardSample>& batch) {
  RewardOutput o;
  o.scores.assign(batch.size(), 0.0f);
  o.status.assign(batch.size(), RunStatus::Skipped);
  // spec §4.3: only completions whose format reward is 1.0 run; format 0 or 0.5 -> code reward 0.0
  const RewardOutput fmt = format_.score(batch);
  o.runs += fmt.runs;

  std::random_device rd;
  std::mt19937_64 rng((static_cast<uint64_t>(rd()) << 32) ^ rd());
  std::vector<RunRequest> reqs;
  std::vector<std::string> sentinels;
  std::vector<size_t> owner;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (fmt.scores[i] != 1.0f || batch[i].tests.empty()) continue;  // no tests: 0 (reference: ZeroDivisionError)
    const std::string code = extract_code(batch[i].completion);
    for (const std::string& t : batch[i].tests) {
      char s[48];
      std::snprintf(s, sizeof(s), "cgrpo-pass-%016llx%016llx", static_cast<unsigned long long>(rng()),
                    static_cast<unsigned long long>(rng()));
      sentinels.emplace_back(s);
      RunRequest q;
      q.program = test_program(code, t, s);
      q.timeout_s = opt_.test_timeout_s;
      q.group = int64_t(i);
      reqs.push_back(std::move(q));
      owner.push_back(i);
    }
  }
  // One group per completion: its own budget, and under ZeroAll its tests stop at its first timeout (the
  // reference's script dies there; the completion scores 0 either way).
  BatchLimits lim;
  lim.group_budget_s = opt_.completion_budget_s;
  lim.group_stop_on_timeout = opt_.timeout_policy == TimeoutPolicy::ZeroAll;
  const std::vector<RunResult> res = sb_.run_batch(reqs, lim);

  std::vector<int> passed(batch.size(), 0);
  std::vector<char> zeroed(batch.size(), 0);
  for (size_t k = 0; k < res.size(); ++k) {
    const size_t i = owner[k];
    RunStatus st = res[k].status;
    // exit 0 without the sentinel: the program left before its test ran (sys.exit(0), os._exit(0), ...)
    if (st == RunStatus::Ok && res[k].out.find("\n" + sentinels[k] + "\n") == std::string::npos) st = RunStatus::Failed;
    o.runs.add(st);
    o.status[i] = o.status[i] == RunStatus::Skipped ? st : worst(o.status[i], st);
    if (st == RunStatus::Timeout && opt_.timeout_policy == TimeoutPolicy::ZeroAll) zeroed[i] = 1;
    if (st == RunStatus::Ok) ++passed[i];
  }
  for (size_t i = 0; i < batch.size(); ++i)
    if (!zeroed[i] && !batch[i].tests.empty())
      o.scores[i] = static_cast<float>(passed[i]) / static_cast<float>(batch[i].tests.size());
  return o;
}

}  // namespace cgrpo
