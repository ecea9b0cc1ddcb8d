// Sandbox: a pool of at most `workers` concurrent, isolated Python runs (ARCHITECTURE.md §3.6, spec §4.5).
//
// One run = one fresh temp dir (mkdtemp under cfg.root, removed afterwards) holding the program read-only
// and a writable work dir, then clone(CLONE_VM|CLONE_VFORK) -> the child (raw syscalls only) does setsid,
// rlimits (CPU, AS, NPROC, FSIZE, NOFILE, CORE=0), drops to the worker's own unprivileged uid (setgroups +
// setresgid + setresuid: what `setpriv --reuid U --regid U --clear-groups` does, without its exec), and execs
//   Bwrap:   bwrap --unshare-all (net, pid, ipc, uts, user, cgroup) --disable-userns --die-with-parent
//            --new-session --as-pid-1 --cap-drop ALL, read-only /usr, the program bound read-only at
//            /sandbox/prog.py, cwd = a private /tmp (tmpfs, cfg.tmpfs_bytes) (spec/stack.md §1 bubblewrap);
//            /work, /root and the trainer's files do not exist inside
//   Unshare: unshare --user --net python3 (fallback: no network, but the host filesystem is visible with the
//            uid's rights; killed escapees are left as zombies for the host's pid 1 to reap)
//   Rlimits: python3 directly (last resort: rlimits + setsid + uid only, network NOT isolated)
// The mode is detected once, at construction, by running a probe in each mode in that order; mode() says
// which one is used. The parent reads stdout/stderr with poll() (each capped at cfg.output_limit; past the
// cap the group is killed), enforces the wall deadline, then kills everything: killpg(SIGKILL) on the
// session, and a sweep that sends SIGKILL to every process of the worker's uid (kill(-1) from a child
// running as that uid: it reaches double-forked grandchildren that left the session). It then waits until
// /proc shows no live process of that uid, reaps the child and removes the temp dir. run() never blocks
// past its deadline plus that teardown (milliseconds).
//
// uids: RLIMIT_NPROC is ignored for root and counts every process of a uid (spec/stack.md §1 bubblewrap),
// so each worker runs as its own uid, taken from [uid_base, uid_base + uid_span) by an flock on
// <lock_dir>/cgrpo-sandbox-uid-<uid>.lock held for the Sandbox's lifetime (several processes on a host,
// e.g. ranks or concurrent tests, never share a uid). uids with a passwd entry or live processes are skipped.
// When the trainer is not root, runs keep the trainer's uid: no sweep, and RLIMIT_NPROC counts the trainer's
// own processes too (logged as a warning).
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "cgrpo/reward/run_status.h"

namespace cgrpo {

enum class SandboxMode { Bwrap, Unshare, Rlimits };
const char* sandbox_mode_name(SandboxMode m);

struct SandboxConfig {
  int workers = 2;                         // concurrent runs (spec §4.3: parallel_code_exec_per_proc = 2)
  std::string root = "/tmp";               // parent of the per-run temp dirs
  std::string lock_dir = "/tmp";           // uid lock files; must be the same for every process on the host
  std::string python = "/usr/bin/python3"; // absolute path, run with -I and a cleared environment
  std::string mode = "auto";               // auto | bwrap | unshare | rlimits (forcing one fails if it does not work)
  double timeout_s = 5.0;                  // default wall deadline per run (spec §4.3 exec_timeout = 5)
  int cpu_s = 5;                           // RLIMIT_CPU soft (SIGXCPU); hard = soft + 1 (SIGKILL)
  uint64_t mem_bytes = 1ull << 30;         // RLIMIT_AS
  int nproc = 64;                          // RLIMIT_NPROC (per worker uid; bwrap itself uses 2)
  uint64_t fsize_bytes = 16ull << 20;      // RLIMIT_FSIZE
  int nofile = 64;                         // RLIMIT_NOFILE
  uint64_t tmpfs_bytes = 64ull << 20;      // size of the private /tmp, the only writable place (bwrap mode)
  uint64_t output_limit = 1ull << 20;      // bytes kept per stream; more kills the run (OutputLimit)
  int uid_base = 60000;
  int uid_span = 1000;
};

struct RunRequest {
  std::string program;     // Python source
  std::string stdin_data;  // fed on fd 0 (from a file, so it never blocks); empty = /dev/null
  double timeout_s = 0;    // <= 0: cfg.timeout_s
  std::string tag;         // appended to the command line (sys.argv[1]); shows in ps, used by tests
  int64_t group = -1;      // run_batch: requests of one group >= 0 share a BatchLimits budget (one completion's tests)
};

// Limits of one run_batch call (every field <= 0 / false: none).
struct BatchLimits {
  double deadline_s = 0;      // a request not started within deadline_s of the call returns Timeout without running
  double group_budget_s = 0;  // each group's runs must end within this many seconds of its first run's start
                              // (the reference's per-completion sandbox lifetime): a run's deadline is clipped to
                              // that window, and a run starting after it returns Timeout without running
  bool group_stop_on_timeout = false;  // after a group's first Timeout its runs not yet started return Skipped
                                       // (the reference's test script dies at its first timeout, spec §4.3)
};

struct RunResult {
  RunStatus status = RunStatus::SandboxError;
  int exit_code = -1;  // when the program exited
  int signal = 0;      // when it was killed by a signal
  std::string out, err;
  double wall_ms = 0;
  double cpu_ms = 0;  // user + system CPU of the run's process tree (what the reaped processes used)
};

class Sandbox {
 public:
  explicit Sandbox(SandboxConfig cfg);
  ~Sandbox();
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  // Thread-safe; blocks while all workers are busy. Never throws for anything the program does.
  RunResult run(const RunRequest& req);
  // Runs all requests on min(workers, n) threads, taken in order of index, under `limits`.
  std::vector<RunResult> run_batch(const std::vector<RunRequest>& reqs, const BatchLimits& limits = {});

  SandboxMode mode() const { return mode_; }
  const SandboxConfig& config() const { return cfg_; }
  std::vector<int> uids() const;  // worker uids (empty when not root)
  StatusCounts counts() const;    // every run since construction, probes excluded

 private:
  struct Worker {
    int uid = -1;       // -1: no uid switch
    int lock_fd = -1;
    bool busy = false;
  };
  RunResult run_on(const Worker& w, const RunRequest& req, double timeout_s, SandboxMode mode);
  bool probe(const Worker& w, SandboxMode mode, std::string* why);

  SandboxConfig cfg_;
  SandboxMode mode_ = SandboxMode::Rlimits;
  std::vector<Worker> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::array<std::atomic<int64_t>, kNumRunStatus> counts_{};
};

}  // namespace cgrpo
