// Outcome of one sandboxed program run, and per-kind counters for metrics (ARCHITECTURE.md §3.6:
// "a timeout or crash scores 0 and is counted in metrics").
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace cgrpo {

// Ordered by severity: when a completion has several runs its status is the most severe one (see worst()).
// Skipped: not executed. Rewards use it for items the spec does not run (§4.3: format reward < 1 => code reward
// 0, never executed); Sandbox::run_batch for the later runs of a group stopped at its first timeout.
enum class RunStatus : uint8_t {
  Ok = 0,        // exit code 0
  Skipped,       // not executed
  Failed,        // non-zero exit code (an assert failed, an exception, ...)
  OutputLimit,   // stdout or stderr went past the byte cap; the process group was killed
  Crash,         // killed by a signal it raised itself (SIGSEGV, SIGABRT, ...)
  Oom,           // MemoryError under RLIMIT_AS, or a SIGKILL that was not ours (kernel OOM killer)
  Timeout,       // wall deadline or RLIMIT_CPU (SIGXCPU)
  SandboxError,  // the sandbox itself failed (temp dir, spawn, bwrap setup); not the program's fault
};
inline constexpr int kNumRunStatus = 8;

const char* run_status_name(RunStatus s);  // "ok", "skipped", "failed", "output_limit", "crash", "oom", ...
inline RunStatus worst(RunStatus a, RunStatus b) { return a > b ? a : b; }

// How many runs ended in each status.
struct StatusCounts {
  std::array<int64_t, kNumRunStatus> n{};

  void add(RunStatus s, int64_t k = 1) { n[static_cast<int>(s)] += k; }
  int64_t operator[](RunStatus s) const { return n[static_cast<int>(s)]; }
  int64_t total() const;
  StatusCounts& operator+=(const StatusCounts& o);
  std::string str() const;  // "ok=3 failed=1 timeout=1" (non-zero kinds only)
};

}  // namespace cgrpo
