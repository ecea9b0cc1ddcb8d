#include "cgrpo/reward/sandbox.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "cgrpo/core/error.h"
#include "cgrpo/core/logging.h"

namespace cgrpo {
namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kBwrap = "/usr/bin/bwrap";
constexpr const char* kUnshare = "/usr/bin/unshare";

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

struct Rlim {
  int res;
  rlim_t soft, hard;
};

// Everything the child needs, prepared by the parent: the child shares the parent's memory
// (CLONE_VM|CLONE_VFORK, as posix_spawn does), so it may only make raw system calls -- no allocation, no
// locks, no glibc set*id (which would signal the parent's threads). It reports a failure through `err`.
struct SpawnArgs {
  const char* path = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  const char* cwd = nullptr;
  int fd_in = -1, fd_out = -1, fd_err = -1;
  int uid = -1;  // -1: keep the trainer's uid
  const Rlim* rl = nullptr;
  int nrl = 0;
  bool kill_all = false;  // sweep helper: kill(-1, SIGKILL) as `uid` and exit
  int err = 0;
  const char* stage = nullptr;
};

[[noreturn]] void child_fail(SpawnArgs* a, const char* stage) {
  a->err = errno ? errno : EINVAL;
  a->stage = stage;
  _exit(127);
}

int child_main(void* p) {
  auto* a = static_cast<SpawnArgs*>(p);
  // Default dispositions, then unblock: the parent blocked every signal around clone().
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof(dfl));
  dfl.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; ++s) sigaction(s, &dfl, nullptr);  // EINVAL for KILL/STOP/internal: fine
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  if (a->uid >= 0) {
    if (syscall(SYS_setgroups, 0, nullptr) != 0) child_fail(a, "setgroups");
    if (syscall(SYS_setresgid, a->uid, a->uid, a->uid) != 0) child_fail(a, "setresgid");
    if (syscall(SYS_setresuid, a->uid, a->uid, a->uid) != 0) child_fail(a, "setresuid");
  }
  if (a->kill_all) {
    kill(-1, SIGKILL);  // every process this uid may signal, except ourselves
    _exit(0);
  }
  if (setsid() < 0) child_fail(a, "setsid");
  if (dup2(a->fd_in, 0) < 0 || dup2(a->fd_out, 1) < 0 || dup2(a->fd_err, 2) < 0) child_fail(a, "dup2");
  syscall(SYS_close_range, 3u, ~0u, 0u);
  for (int i = 0; i < a->nrl; ++i) {
    struct rlimit r = {a->rl[i].soft, a->rl[i].hard};
    if (setrlimit(a->rl[i].res, &r) != 0) child_fail(a, "setrlimit");
  }
  // after the uid change, which clears it: the run dies with the thread that started it
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (a->cwd && chdir(a->cwd) != 0) child_fail(a, "chdir");
  execve(a->path, a->argv, a->envp);
  child_fail(a, "execve");
}

// clone(CLONE_VM|CLONE_VFORK): returns once the child has exec'd or exited. -1 on failure.
pid_t spawn(SpawnArgs& a) {
  std::vector<char> stack(64 << 10);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  const pid_t pid = clone(child_main, stack.data() + stack.size(), CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
  const int saved = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) {
    a.err = saved;
    a.stage = "clone";
  }
  return pid;
}

// SIGKILL to every process of `uid`, from a helper running as that uid (reaches processes that left the
// session, and everything inside the sandbox's pid and user namespaces).
void kill_uid(int uid) {
  SpawnArgs a;
  a.uid = uid;
  a.kill_all = true;
  const pid_t pid = spawn(a);
  if (pid > 0)
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
}

// True when /proc shows a live (not zombie) process whose real, effective or saved uid is `uid`.
bool uid_has_live_procs(int uid) {
  DIR* d = opendir("/proc");
  if (!d) return false;
  bool found = false;
  char path[300], buf[4096];
  while (struct dirent* e = readdir(d)) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    std::snprintf(path, sizeof(path), "/proc/%s/status", e->d_name);
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    const ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) continue;
    buf[n] = 0;
    const char* st = std::strstr(buf, "\nState:\t");
    const char* u = std::strstr(buf, "\nUid:\t");
    if (!st || !u || st[8] == 'Z' || st[8] == 'X') continue;
    long r = -1, ef = -1, sv = -1;
    if (std::sscanf(u + 6, "%ld %ld %ld", &r, &ef, &sv) == 3 && (r == uid || ef == uid || sv == uid)) {
      found = true;
      break;
    }
  }
  closedir(d);
  return found;
}

bool write_file(const std::string& path, const std::string& data, mode_t mode) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) return false;
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t w = write(fd, data.data() + off, data.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    off += static_cast<size_t>(w);
  }
  const bool ok = off == data.size() && fchmod(fd, mode) == 0;
  return close(fd) == 0 && ok;
}

// Reads what is available on fd into s, keeping at most cap bytes. Returns false at EOF or on error;
// sets *over when the stream went past cap.
bool drain(int fd, std::string& s, uint64_t cap, bool* over) {
  char buf[65536];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
      const uint64_t room = cap > s.size() ? cap - s.size() : 0;
      s.append(buf, static_cast<size_t>(std::min<uint64_t>(room, static_cast<uint64_t>(n))));
      if (static_cast<uint64_t>(n) > room) {
        *over = true;
        return true;
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && errno == EAGAIN;  // still open
  }
}

// True when the process behind pidfd has exited (or pidfd is invalid).
bool pf_exited(int pidfd) {
  if (pidfd < 0) return true;
  struct pollfd p = {pidfd, POLLIN, 0};
  return poll(&p, 1, 0) != 0;
}

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) close(fd);
    fd = -1;
  }
};

struct TempDir {
  std::string path;
  ~TempDir() {
    if (path.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(path, ec);  // does not follow symlinks
    if (ec) CGRPO_LOG(error) << "sandbox: cannot remove " << path << ": " << ec.message();
  }
};

RunResult sandbox_error(std::string why, Clock::time_point t0) {
  RunResult r;
  r.status = RunStatus::SandboxError;
  r.err = std::move(why);
  r.wall_ms = ms_since(t0);
  return r;
}

}  // namespace

const char* sandbox_mode_name(SandboxMode m) {
  switch (m) {
    case SandboxMode::Bwrap: return "bwrap";
    case SandboxMode::Unshare: return "unshare";
    case SandboxMode::Rlimits: return "rlimits";
  }
  return "?";
}

Sandbox::Sandbox(SandboxConfig cfg) : cfg_(std::move(cfg)) {
  CGRPO_CHECK(cfg_.workers >= 1, "sandbox: workers = ", cfg_.workers, hint("set [reward] sandbox_workers >= 1"));
  CGRPO_CHECK(cfg_.timeout_s > 0 && cfg_.cpu_s >= 1 && cfg_.output_limit > 0, "sandbox: bad limits",
              hint("timeout_s > 0, cpu_s >= 1, output_limit > 0"));
  struct stat st;
  CGRPO_CHECK(stat(cfg_.root.c_str(), &st) == 0 && S_ISDIR(st.st_mode), "sandbox: root '", cfg_.root,
              "' is not a directory", hint("create it, or point [reward] sandbox_root at a local directory"));
  CGRPO_CHECK(access(cfg_.python.c_str(), X_OK) == 0, "sandbox: cannot execute '", cfg_.python, "'",
              hint("install python3 (launch/install-deps) or set [reward] python to an absolute path"));
  {  // pidfd (Linux >= 5.3) is how run() waits for exit and output with one poll()
    const int fd = static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0));
    CGRPO_CHECK(fd >= 0, "sandbox: pidfd_open failed: ", std::strerror(errno), hint("needs Linux >= 5.3"));
    close(fd);
  }

  workers_.resize(static_cast<size_t>(cfg_.workers));
  if (geteuid() == 0) {
    size_t k = 0;
    for (int uid = cfg_.uid_base; uid < cfg_.uid_base + cfg_.uid_span && k < workers_.size(); ++uid) {
      if (getpwuid(static_cast<uid_t>(uid))) continue;  // a real account
      const std::string lock = cfg_.lock_dir + "/cgrpo-sandbox-uid-" + std::to_string(uid) + ".lock";
      const int fd = open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
      CGRPO_CHECK(fd >= 0, "sandbox: cannot open ", lock, ": ", std::strerror(errno),
                  hint("set [reward] sandbox_lock_dir to a writable local directory"));
      if (flock(fd, LOCK_EX | LOCK_NB) != 0 || uid_has_live_procs(uid)) {
        close(fd);
        continue;
      }
      workers_[k].uid = uid;
      workers_[k].lock_fd = fd;
      ++k;
    }
    CGRPO_CHECK(k == workers_.size(), "sandbox: only ", k, " free uids in [", cfg_.uid_base, ", ",
                cfg_.uid_base + cfg_.uid_span, ") for ", workers_.size(), " workers",
                hint("raise [reward] sandbox_uid_span or lower sandbox_workers"));
  } else {
    CGRPO_LOG(warning) << "sandbox: not root, runs keep uid " << geteuid()
                       << ": no per-run process sweep, and RLIMIT_NPROC also counts the trainer's processes";
  }

  std::vector<SandboxMode> order;
  if (cfg_.mode == "auto") order = {SandboxMode::Bwrap, SandboxMode::Unshare, SandboxMode::Rlimits};
  else if (cfg_.mode == "bwrap") order = {SandboxMode::Bwrap};
  else if (cfg_.mode == "unshare") order = {SandboxMode::Unshare};
  else if (cfg_.mode == "rlimits") order = {SandboxMode::Rlimits};
  else CGRPO_FAIL("sandbox: unknown mode '", cfg_.mode, "'", hint("use auto, bwrap, unshare or rlimits"));
  std::string whys;
  for (SandboxMode m : order) {
    std::string why;
    if (probe(workers_[0], m, &why)) {
      mode_ = m;
      CGRPO_LOG(info) << "sandbox: mode " << sandbox_mode_name(m) << ", " << cfg_.workers << " workers"
                      << (m == SandboxMode::Bwrap     ? ""
                          : m == SandboxMode::Unshare ? " (fallback: no network, host filesystem visible)"
                                                      : " (fallback: rlimits + session only, network NOT isolated)");
      return;
    }
    CGRPO_LOG(warning) << "sandbox: mode " << sandbox_mode_name(m) << " unavailable: " << why;
    whys += std::string("\n  ") + sandbox_mode_name(m) + ": " + why;
  }
  CGRPO_FAIL("sandbox: no sandbox mode works", whys,
             hint("cfg.root must be traversable by uids " + std::to_string(cfg_.uid_base) +
                  "+ (o+x); install bubblewrap (launch/install-deps) and check cfg.python"));
}

Sandbox::~Sandbox() {
  for (Worker& w : workers_)
    if (w.lock_fd >= 0) close(w.lock_fd);
}

std::vector<int> Sandbox::uids() const {
  std::vector<int> u;
  for (const Worker& w : workers_)
    if (w.uid >= 0) u.push_back(w.uid);
  return u;
}

StatusCounts Sandbox::counts() const {
  StatusCounts c;
  for (int i = 0; i < kNumRunStatus; ++i) c.n[i] = counts_[i].load();
  return c;
}

bool Sandbox::probe(const Worker& w, SandboxMode mode, std::string* why) {
  if (mode == SandboxMode::Bwrap && access(kBwrap, X_OK) != 0) return *why = "no " + std::string(kBwrap), false;
  if (mode == SandboxMode::Unshare && access(kUnshare, X_OK) != 0) return *why = "no " + std::string(kUnshare), false;
  RunRequest req;
  req.program = "print('cgrpo-probe', 6 * 7)\n";
  const RunResult r = run_on(w, req, 20.0, mode);
  if (r.status == RunStatus::Ok && r.out == "cgrpo-probe 42\n") return true;
  *why = std::string(run_status_name(r.status)) + ", exit " + std::to_string(r.exit_code) + ", stderr: " +
         r.err.substr(0, 400);
  return false;
}

RunResult Sandbox::run(const RunRequest& req) {
  const double t = req.timeout_s > 0 ? req.timeout_s : cfg_.timeout_s;
  size_t i = 0;
  {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] {
      for (i = 0; i < workers_.size(); ++i)
        if (!workers_[i].busy) return true;
      return false;
    });
    workers_[i].busy = true;
  }
  RunResult r = run_on(workers_[i], req, t, mode_);
  {
    std::lock_guard<std::mutex> lk(mu_);
    workers_[i].busy = false;
  }
  cv_.notify_one();
  counts_[static_cast<int>(r.status)]++;
  return r;
}

std::vector<RunResult> Sandbox::run_batch(const std::vector<RunRequest>& reqs, const BatchLimits& limits) {
  std::vector<RunResult> out(reqs.size());
  std::atomic<size_t> next{0};
  const auto t0 = Clock::now();
  struct Group {
    double end_s = -1;       // the group's window closes at this many seconds after t0 (< 0: not started)
    bool timed_out = false;  // one of its runs ended in Timeout
  };
  std::map<int64_t, Group> groups;  // guarded by gmu
  std::mutex gmu;
  auto not_run = [&](size_t i, RunStatus st, const char* why) {
    out[i].status = st;
    out[i].err = std::string("cgrpo sandbox: ") + why;
    counts_[static_cast<int>(st)]++;
  };
  auto body = [&] {
    for (size_t i; (i = next++) < reqs.size();) {
      RunRequest q = reqs[i];
      double left = q.timeout_s > 0 ? q.timeout_s : cfg_.timeout_s;
      if (limits.deadline_s > 0) {
        const double batch_left = limits.deadline_s - ms_since(t0) * 1e-3;
        if (batch_left <= 0) { not_run(i, RunStatus::Timeout, "batch deadline passed before this run started"); continue; }
        left = std::min(left, batch_left);
      }
      const bool grouped = q.group >= 0 && (limits.group_budget_s > 0 || limits.group_stop_on_timeout);
      if (grouped) {
        std::lock_guard<std::mutex> lk(gmu);
        Group& g = groups[q.group];
        if (limits.group_stop_on_timeout && g.timed_out) { not_run(i, RunStatus::Skipped, "group stopped at a timeout"); continue; }
        if (limits.group_budget_s > 0) {
          const double now_s = ms_since(t0) * 1e-3;
          if (g.end_s < 0) g.end_s = now_s + limits.group_budget_s;
          const double group_left = g.end_s - now_s;
          if (group_left <= 0) { not_run(i, RunStatus::Timeout, "group budget spent before this run started"); continue; }
          left = std::min(left, group_left);
        }
      }
      q.timeout_s = left;
      out[i] = run(q);
      if (grouped) {
        std::lock_guard<std::mutex> lk(gmu);
        Group& g = groups[q.group];
        g.timed_out = g.timed_out || out[i].status == RunStatus::Timeout;
      }
    }
  };
  const size_t nt = std::min(workers_.size(), reqs.size());
  std::vector<std::thread> th;
  for (size_t t = 1; t < nt; ++t) th.emplace_back(body);
  body();
  for (auto& t : th) t.join();
  return out;
}

RunResult Sandbox::run_on(const Worker& w, const RunRequest& req, double timeout_s, SandboxMode mode) {
  const auto t0 = Clock::now();
  const auto deadline = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));

  // Fresh temp dir: <root>/cgrpo-sb-XXXXXX (0711) holding prog.py (0644, root), stdin (0600, root: only
  // reachable through fd 0) and work/ (0700, the worker's uid). The fallbacks run in work/, the only place on
  // the host they can write (each file capped by RLIMIT_FSIZE). bwrap runs in its private /tmp instead, a
  // tmpfs capped at cfg.tmpfs_bytes in all, so a program cannot fill the host's disk.
  TempDir dir;
  {
    std::string tmpl = cfg_.root + "/cgrpo-sb-XXXXXX";
    if (!mkdtemp(tmpl.data())) return sandbox_error("mkdtemp in " + cfg_.root + ": " + std::strerror(errno), t0);
    dir.path = tmpl;
  }
  const std::string prog = dir.path + "/prog.py", work = dir.path + "/work";
  if (chmod(dir.path.c_str(), 0711) != 0 || !write_file(prog, req.program, 0644) || mkdir(work.c_str(), 0700) != 0 ||
      (w.uid >= 0 && chown(work.c_str(), static_cast<uid_t>(w.uid), static_cast<gid_t>(w.uid)) != 0))
    return sandbox_error("preparing " + dir.path + ": " + std::strerror(errno), t0);
  Fd in;
  if (!req.stdin_data.empty()) {
    const std::string p = dir.path + "/stdin";
    if (!write_file(p, req.stdin_data, 0600)) return sandbox_error("writing stdin: " + std::string(std::strerror(errno)), t0);
    in.fd = open(p.c_str(), O_RDONLY | O_CLOEXEC);
  } else {
    in.fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  }
  int po[2], pe[2];
  if (in.fd < 0 || pipe2(po, O_CLOEXEC) != 0) return sandbox_error("stdin/pipe: " + std::string(std::strerror(errno)), t0);
  Fd out_r(po[0]), out_w(po[1]);
  if (pipe2(pe, O_CLOEXEC) != 0) return sandbox_error("pipe: " + std::string(std::strerror(errno)), t0);
  Fd err_r(pe[0]), err_w(pe[1]);

  std::vector<std::string> args;
  std::string exe = cfg_.python, inner_prog = prog, home = work;
  if (mode == SandboxMode::Bwrap) {
    exe = kBwrap;
    inner_prog = "/sandbox/prog.py";
    home = "/tmp";
    // --as-pid-1: python is the pid namespace's init, so the outer bwrap reaps it after the kernel has
    // killed and reaped everything else in the namespace. Without it the outer bwrap exits as soon as
    // its inner init reports the exit code, and that init lingers as a zombie of the host's pid 1, where
    // it keeps counting against the worker uid's RLIMIT_NPROC (seen here: ~1 per run, fork failures
    // after a few dozen quick runs). Side effect: signals python sends itself with a default disposition
    // are ignored (kernel faults such as a real SIGSEGV still kill it).
    args = {"bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
            "--as-pid-1",
            "--cap-drop", "ALL", "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib",
            "/lib", "--symlink", "usr/lib64", "/lib64", "--dev", "/dev", "--proc", "/proc", "--size",
            std::to_string(cfg_.tmpfs_bytes), "--tmpfs", "/tmp", "--ro-bind", prog, inner_prog,
            "--chdir", home, "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", home,
            "--setenv", "LC_ALL", "C.UTF-8", "--"};
  } else if (mode == SandboxMode::Unshare) {
    exe = kUnshare;
    args = {"unshare", "--user", "--net", "--"};
  }
  args.insert(args.end(), {cfg_.python, "-I", inner_prog});
  if (!req.tag.empty()) args.push_back(req.tag);
  std::vector<std::string> env = {"PATH=/usr/bin:/bin", "HOME=" + home, "LC_ALL=C.UTF-8"};
  std::vector<char*> argv, envp;
  for (auto& s : args) argv.push_back(s.data());
  for (auto& s : env) envp.push_back(s.data());
  argv.push_back(nullptr);
  envp.push_back(nullptr);

  const rlim_t cpu = static_cast<rlim_t>(cfg_.cpu_s);
  const Rlim rl[] = {
      {RLIMIT_CPU, cpu, cpu + 1},
      {RLIMIT_AS, cfg_.mem_bytes, cfg_.mem_bytes},
      {RLIMIT_NPROC, static_cast<rlim_t>(cfg_.nproc), static_cast<rlim_t>(cfg_.nproc)},
      {RLIMIT_FSIZE, cfg_.fsize_bytes, cfg_.fsize_bytes},
      {RLIMIT_NOFILE, static_cast<rlim_t>(cfg_.nofile), static_cast<rlim_t>(cfg_.nofile)},
      {RLIMIT_CORE, 0, 0},
  };
  SpawnArgs a;
  a.path = exe.c_str();
  a.argv = argv.data();
  a.envp = envp.data();
  a.cwd = mode == SandboxMode::Bwrap ? "/" : work.c_str();
  a.fd_in = in.fd;
  a.fd_out = out_w.fd;
  a.fd_err = err_w.fd;
  a.uid = w.uid;
  a.rl = rl;
  a.nrl = static_cast<int>(sizeof(rl) / sizeof(rl[0]));
  const pid_t pid = spawn(a);
  out_w.reset();
  err_w.reset();
  in.reset();
  if (pid < 0) return sandbox_error(std::string("spawn: clone: ") + std::strerror(a.err), t0);

  bool timed_out = false, over = false, poll_failed = false, out_open = true, err_open = true;
  RunResult r;
  Fd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  fcntl(out_r.fd, F_SETFL, O_NONBLOCK);
  fcntl(err_r.fd, F_SETFL, O_NONBLOCK);
  if (a.err == 0 && pidfd.fd >= 0) {
    struct pollfd pf[3] = {{out_r.fd, POLLIN, 0}, {err_r.fd, POLLIN, 0}, {pidfd.fd, POLLIN, 0}};
    for (;;) {
      const double left_ms = std::chrono::duration<double, std::milli>(deadline - Clock::now()).count();
      if (left_ms <= 0) {
        timed_out = true;
        break;
      }
      const int n = poll(pf, 3, static_cast<int>(std::ceil(std::min(left_ms, 1e6))));
      if (n < 0 && errno != EINTR) {
        poll_failed = true;
        break;
      }
      if (n <= 0) continue;
      if (pf[0].revents && !(out_open = drain(out_r.fd, r.out, cfg_.output_limit, &over))) pf[0].fd = -1;
      if (pf[1].revents && !(err_open = drain(err_r.fd, r.err, cfg_.output_limit, &over))) pf[1].fd = -1;
      if (over || pf[2].revents) break;  // over the cap, or the child (bwrap / unshare / python) exited
    }
  }

  // Teardown: the session, then everything the uid still runs (double-forked grandchildren that called
  // setsid, processes in the sandbox's namespaces), then reap, then wait until /proc shows nothing live.
  if (mode == SandboxMode::Bwrap && !pf_exited(pidfd.fd)) {
    // Kill the namespace's init (python, --as-pid-1) first: the kernel kills the rest of the namespace,
    // and the outer bwrap reaps them and exits, so nothing is left as a zombie of the host's pid 1.
    std::ifstream ch("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
    for (long c; ch >> c;) kill(static_cast<pid_t>(c), SIGKILL);
    struct pollfd p = {pidfd.fd, POLLIN, 0};
    poll(&p, 1, 500);
  }
  killpg(pid, SIGKILL);
  if (w.uid >= 0) kill_uid(w.uid);
  int st = 0;
  struct rusage ru;
  std::memset(&ru, 0, sizeof(ru));
  while (wait4(pid, &st, 0, &ru) < 0 && errno == EINTR) {
  }
  bool stray = false;
  if (w.uid >= 0) {
    const auto give_up = Clock::now() + std::chrono::seconds(2);
    while ((stray = uid_has_live_procs(w.uid)) && Clock::now() < give_up) {
      kill_uid(w.uid);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  // Every writer is dead now: take what is left in the pipes (non-blocking: a survivor cannot hang us).
  if (out_open && !over) drain(out_r.fd, r.out, cfg_.output_limit, &over);
  if (err_open && !over) drain(err_r.fd, r.err, cfg_.output_limit, &over);
  r.wall_ms = ms_since(t0);

  if (a.err != 0 || pidfd.fd < 0 || poll_failed) {
    r.status = RunStatus::SandboxError;
    r.err = a.err ? std::string("spawn: ") + (a.stage ? a.stage : "?") + ": " + std::strerror(a.err)
                  : std::string(pidfd.fd < 0 ? "pidfd_open" : "poll") + " failed";
    return r;
  }
  if (stray) {
    CGRPO_LOG(error) << "sandbox: processes of uid " << w.uid << " survived SIGKILL for 2 s";
    r.status = RunStatus::SandboxError;
    return r;
  }
  if (WIFEXITED(st)) {
    r.exit_code = WEXITSTATUS(st);
    // bwrap reports a signalled child as exit 128 + signal
    if (mode == SandboxMode::Bwrap && r.exit_code > 128 && r.exit_code < 128 + NSIG) {
      r.signal = r.exit_code - 128;
      r.exit_code = -1;
    }
  } else if (WIFSIGNALED(st)) {
    r.signal = WTERMSIG(st);
  }
  r.cpu_ms = 1e3 * static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
             1e-3 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
  if (over) r.status = RunStatus::OutputLimit;
  else if (timed_out) r.status = RunStatus::Timeout;
  else if (r.signal == SIGXCPU) r.status = RunStatus::Timeout;
  // a SIGKILL we did not send: RLIMIT_CPU's hard limit, else the kernel's OOM killer
  else if (r.signal == SIGKILL) r.status = r.cpu_ms >= 1e3 * cfg_.cpu_s ? RunStatus::Timeout : RunStatus::Oom;
  else if (r.signal != 0) r.status = RunStatus::Crash;
  else if (r.exit_code == 0) r.status = RunStatus::Ok;
  else if (mode == SandboxMode::Bwrap && r.exit_code == 1 && r.err.rfind("bwrap: ", 0) == 0) r.status = RunStatus::SandboxError;
  else if (r.err.find("MemoryError") != std::string::npos) r.status = RunStatus::Oom;
  else r.status = RunStatus::Failed;
  return r;
}

}  // namespace cgrpo
