#include "cgrpo/reward/run_status.h"

namespace cgrpo {

const char* run_status_name(RunStatus s) {
  switch (s) {
    case RunStatus::Ok: return "ok";
    case RunStatus::Skipped: return "skipped";
    case RunStatus::Failed: return "failed";
    case RunStatus::OutputLimit: return "output_limit";
    case RunStatus::Crash: return "crash";
    case RunStatus::Oom: return "oom";
    case RunStatus::Timeout: return "timeout";
    case RunStatus::SandboxError: return "sandbox_error";
  }
  return "?";
}

int64_t StatusCounts::total() const {
  int64_t t = 0;
  for (int64_t v : n) t += v;
  return t;
}

StatusCounts& StatusCounts::operator+=(const StatusCounts& o) {
  for (int i = 0; i < kNumRunStatus; ++i) n[i] += o.n[i];
  return *this;
}

std::string StatusCounts::str() const {
  std::string s;
  for (int i = 0; i < kNumRunStatus; ++i) {
    if (n[i] == 0) continue;
    if (!s.empty()) s += ' ';
    s += run_status_name(static_cast<RunStatus>(i));
    s += '=' + std::to_string(n[i]);
  }
  return s.empty() ? "none" : s;
}

}  // namespace cgrpo
