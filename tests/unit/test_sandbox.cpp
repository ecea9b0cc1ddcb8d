// Sandbox and sandboxed rewards (ARCHITECTURE.md §3.6, spec §4.3-4.5). Adversarial programs must score 0
// (or correctly) without harming the host; after each case no process carrying the case's marker, no live
// process of a worker uid, and no run temp dir may remain. Every program carries a unique marker in its
// source and on its command line (RunRequest::tag, inherited by forks).
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>

#include "cgrpo/core/error.h"
#include "cgrpo/reward/code_exec.h"
#include "cgrpo/reward/code_format.h"
#include "cgrpo/reward/reward_set.h"
#include "cgrpo/reward/sandbox.h"

using namespace cgrpo;

namespace {

struct HostDir {
  std::string path;
  explicit HostDir(mode_t mode) {
    char t[] = "/tmp/cgrpo-test-XXXXXX";
    REQUIRE(mkdtemp(t) != nullptr);
    path = t;
    REQUIRE(chmod(path.c_str(), mode) == 0);
  }
  ~HostDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

SandboxConfig test_config(const std::string& root) {
  SandboxConfig c;
  c.root = root;
  c.workers = 2;
  c.timeout_s = 2.0;
  c.cpu_s = 3;
  c.output_limit = 64 << 10;
  c.mem_bytes = 256ull << 20;  // page zeroing is slow here: keep the memory hog short
  return c;
}

std::string new_marker(const char* what) {
  static int k = 0;
  return std::string("cgrpo-mark-") + what + "-" + std::to_string(getpid()) + "-" + std::to_string(k++);
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Live processes (not us) whose command line contains marker.
int procs_with_marker(const std::string& marker) {
  int n = 0;
  DIR* d = opendir("/proc");
  REQUIRE(d != nullptr);
  while (struct dirent* e = readdir(d)) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9' || std::atoi(e->d_name) == getpid()) continue;
    std::string cmd = slurp(std::string("/proc/") + e->d_name + "/cmdline");
    for (char& c : cmd) c = c ? c : ' ';
    if (cmd.find(marker) != std::string::npos) ++n;
  }
  closedir(d);
  return n;
}

// Processes whose real uid is uid; zombies too when asked (they still count against RLIMIT_NPROC).
int procs_of_uid(int uid, bool zombies) {
  int n = 0;
  DIR* d = opendir("/proc");
  REQUIRE(d != nullptr);
  while (struct dirent* e = readdir(d)) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    const std::string st = slurp(std::string("/proc/") + e->d_name + "/status");
    const size_t s = st.find("\nState:\t"), u = st.find("\nUid:\t");
    if (s == std::string::npos || u == std::string::npos) continue;
    if (!zombies && (st[s + 8] == 'Z' || st[s + 8] == 'X')) continue;
    if (std::atoi(st.c_str() + u + 6) == uid) ++n;
  }
  closedir(d);
  return n;
}

int entries(const std::string& dir) {
  int n = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) n += e.path().filename().string().rfind("cgrpo-sb-", 0) == 0;
  return n;
}

void require_clean(const Sandbox& sb, const std::string& marker, const HostDir& root) {
  CHECK(procs_with_marker(marker) == 0);
  // No live process of a worker uid may remain, ever. Killed escapees (and, under bwrap, processes of a
  // namespace whose init died) become zombies that the host's pid 1 reaps on its own schedule: on these VMs
  // that can take seconds, and a uid may have been used by an earlier pool. Zombies hold no resources but a
  // process slot, so they must be gone within a deadline rather than instantly.
  for (int uid : sb.uids()) {
    CHECK(procs_of_uid(uid, false) == 0);
    int z = procs_of_uid(uid, true);
    for (int i = 0; i < 300 && z > 0; ++i) {  // up to 30 s
      usleep(100000);
      z = procs_of_uid(uid, true);
    }
    CHECK(z == 0);
  }
  CHECK(entries(root.path) == 0);
}

RunResult run_py(Sandbox& sb, const std::string& marker, const std::string& body, double timeout_s = 2.0) {
  RunRequest q;
  q.program = "# " + marker + "\n" + body;
  q.tag = marker;
  q.timeout_s = timeout_s;
  return sb.run(q);
}

std::string fenced(const std::string& code) { return "Solution:\n```python\n" + code + "```\n"; }

}  // namespace

TEST_CASE("sandbox: mode, stdout, stdin, exit codes, signals", "[unit][sandbox]") {
  HostDir root(0711);
  Sandbox sb(test_config(root.path));
  WARN("sandbox mode: " << sandbox_mode_name(sb.mode()));
  if (geteuid() == 0 && access("/usr/bin/bwrap", X_OK) == 0) CHECK(sb.mode() == SandboxMode::Bwrap);
  const std::string m = new_marker("basic");

  RunRequest q;
  q.program = "import sys\nprint(sys.stdin.read().upper(), end='')\nprint('to err', file=sys.stderr)\n";
  q.stdin_data = "hello stdin";
  q.tag = m;
  RunResult r = sb.run(q);
  CHECK(r.status == RunStatus::Ok);
  CHECK(r.exit_code == 0);
  CHECK(r.out == "HELLO STDIN");
  CHECK(r.err == "to err\n");

  r = run_py(sb, m, "import sys\nsys.exit(3)\n");
  CHECK(r.status == RunStatus::Failed);
  CHECK(r.exit_code == 3);
  r = run_py(sb, m, "raise ValueError('boom')\n");
  CHECK(r.status == RunStatus::Failed);
  CHECK(r.err.find("ValueError: boom") != std::string::npos);
  r = run_py(sb, m, "import ctypes\nctypes.string_at(0)\n");  // a real segfault
  CHECK(r.status == RunStatus::Crash);
  CHECK(r.signal == SIGSEGV);
  r = run_py(sb, m, "input()\n");  // no stdin: EOF, not a hang
  CHECK(r.status == RunStatus::Failed);
  CHECK(r.err.find("EOFError") != std::string::npos);
  r = run_py(sb, m, "import os\nprint(sorted(os.environ))\n");  // cleared environment
  CHECK(r.out.find("PYTHON") == std::string::npos);
  require_clean(sb, m, root);
  CHECK(sb.counts()[RunStatus::Ok] == 2);
  CHECK(sb.counts().total() == 6);
}

TEST_CASE("sandbox: infinite loop hits the wall deadline, RLIMIT_CPU stops a busy loop", "[unit][sandbox]") {
  HostDir root(0711);
  Sandbox sb(test_config(root.path));
  const std::string m = new_marker("loop");
  RunResult r = run_py(sb, m, "while True:\n    pass\n", 1.0);
  CHECK(r.status == RunStatus::Timeout);
  CHECK(r.wall_ms >= 1000);
  CHECK(r.wall_ms < 2500);
  r = run_py(sb, m, "import time\ntime.sleep(30)\n", 1.0);  // idle, so only the wall clock can stop it
  CHECK(r.status == RunStatus::Timeout);
  CHECK(r.wall_ms < 2500);
  require_clean(sb, m, root);

  SandboxConfig c = test_config(root.path);
  c.cpu_s = 1;
  Sandbox cpu(c);
  r = run_py(cpu, m, "while True:\n    pass\n", 6.0);  // 1-2 s of CPU; the wall deadline is only a backstop
  CHECK(r.status == RunStatus::Timeout);
  CHECK(r.cpu_ms >= 1000);
  CHECK(r.wall_ms < 6000);  // RLIMIT_CPU ended it, not the deadline
  // SIGXCPU at the soft limit; python is the pid namespace's init under bwrap (--as-pid-1), which ignores
  // it, so there the hard limit's SIGKILL ends it
  CHECK((r.signal == SIGXCPU || r.signal == SIGKILL));
  require_clean(cpu, m, root);
}

TEST_CASE("sandbox: fork bomb is contained and the next run works", "[unit][sandbox]") {
  HostDir root(0711);
  Sandbox sb(test_config(root.path));
  const std::string m = new_marker("forkbomb");
  RunResult r = run_py(sb, m, "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n", 2.0);
  CHECK(r.status != RunStatus::Ok);
  CHECK(r.wall_ms < 3500);
  require_clean(sb, m, root);
  r = run_py(sb, m, "print('fine')\n");
  CHECK(r.status == RunStatus::Ok);
  CHECK(r.out == "fine\n");
  require_clean(sb, m, root);
}

TEST_CASE("sandbox: allocating 20 GB is an OOM under RLIMIT_AS", "[unit][sandbox]") {
  HostDir root(0711);
  Sandbox sb(test_config(root.path));
  const std::string m = new_marker("oom");
  RunResult r = run_py(sb, m, "b = bytearray(20 * 1024**3)\nprint('allocated')\n");
  CHECK(r.status == RunStatus::Oom);
  CHECK(r.out.empty());
  r = run_py(sb, m, "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))\n", 3.0);
  CHECK(r.status == RunStatus::Oom);
  require_clean(sb, m, root);
}

TEST_CASE("sandbox: printing 1 GB stops at the output cap", "[unit][sandbox]") {
  HostDir root(0711);
  Sandbox sb(test_config(root.path));
  const std::string m = new_marker("print");
  const RunResult r =
      run_py(sb, m, "import sys\nc = 'x' * 65536\nfor _ in range(16384):\n    sys.stdout.write(c)\n", 3.0);
  CHECK(r.status == RunStatus::OutputLimit);
  CHECK(r.out.size() == (64u << 10));
  CHECK(r.wall_ms < 2500);
  require_clean(sb, m, root);
}

TEST_CASE("sandbox: writes outside the temp dir do not reach the host", "[unit][sandbox]") {
  HostDir root(0711), open_dir(0777);
  Sandbox sb(test_config(root.path));
  const std::string m = new_marker("write");
  const std::vector<std::string> targets = {"/work/" + m, "/root/" + m, "/tmp/" + m, "/usr/" + m,
                                            open_dir.path + "/" + m, root.path + "/" + m};
  std::string prog = "import os\nfor p in [";
  for (auto& t : targets) prog += "'" + t + "', ";
  prog += "]:\n    try:\n        open(p, 'w').write('pwned')\n        print('wrote', p)\n"
          "    except OSError as e:\n        print('denied', p, type(e).__name__)\n"
          "open('inside.txt', 'w').write('ok')\nprint('cwd write ok')\n";
  if (sb.mode() == SandboxMode::Bwrap)  // the writable place is a capped tmpfs: filling it stops at 64 MiB
    prog += "try:\n    for i in range(1000):\n        open('fill%d' % i, 'wb').write(bytes(1 << 20))\n"
            "    print('filled 1 GB')\nexcept OSError as e:\n    print('fill stopped', type(e).__name__)\n";
  const RunResult r = run_py(sb, m, prog);
  CHECK(r.status == RunStatus::Ok);
  CHECK(r.out.find("cwd write ok") != std::string::npos);
  for (auto& t : targets) {
    struct stat st;
    const bool exists = stat(t.c_str(), &st) == 0;
    CHECK_FALSE(exists);
    if (exists) unlink(t.c_str());
  }
  CHECK(r.out.find("denied /usr/") != std::string::npos);
  if (sb.mode() == SandboxMode::Bwrap) CHECK(r.out.find("fill stopped OSError") != std::string::npos);
  require_clean(sb, m, root);
}

TEST_CASE("sandbox: no connection to a listener on the host's 127.0.0.1", "[unit][sandbox]") {
  HostDir root(0711);
  Sandbox sb(test_config(root.path));
  if (sb.mode() == SandboxMode::Rlimits) {
    WARN("rlimits fallback: network is not isolated, skipping");
    return;
  }
  const int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  REQUIRE(ls >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  REQUIRE(listen(ls, 8) == 0);
  socklen_t len = sizeof(a);
  REQUIRE(getsockname(ls, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  const int port = ntohs(a.sin_port);
  const std::string m = new_marker("net");
  const RunResult r = run_py(sb, m,
                             "import socket\ns = socket.socket()\ns.settimeout(1)\ntry:\n"
                             "    s.connect(('127.0.0.1', " + std::to_string(port) + "))\n    print('connected')\n"
                             "except OSError as e:\n    print('blocked', type(e).__name__)\n");
  CHECK(r.out.find("blocked") != std::string::npos);
  CHECK(r.out.find("connected") == std::string::npos);
  const int c = accept(ls, nullptr, nullptr);
  CHECK(c < 0);
  CHECK(errno == EAGAIN);
  if (c >= 0) close(c);
  close(ls);
  require_clean(sb, m, root);
}

TEST_CASE("sandbox: killing the parent, the trainer or everything harms nothing", "[unit][sandbox]") {
  HostDir root(0711);
  Sandbox sb(test_config(root.path));
  const std::string m = new_marker("kill");
  const RunResult r = run_py(sb, m,
                             "import os, signal\n"
                             "for pid in [os.getppid(), " + std::to_string(getpid()) + ", -1]:\n"
                             "    try:\n        os.kill(pid, signal.SIGKILL)\n        print('sent', pid)\n"
                             "    except OSError as e:\n        print('denied', pid, type(e).__name__)\n");
  CHECK(r.status != RunStatus::SandboxError);
  // we are still here; the pool still works
  const RunResult ok = run_py(sb, m, "print('alive')\n");
  CHECK(ok.status == RunStatus::Ok);
  CHECK(ok.out == "alive\n");
  require_clean(sb, m, root);
}

TEST_CASE("sandbox: the trainer's files are not readable", "[unit][sandbox]") {
  HostDir root(0711), secret_dir(0755);
  Sandbox sb(test_config(root.path));
  const std::string m = new_marker("read");
  const std::string secret = "secret-" + m, path = secret_dir.path + "/secret.txt";
  std::ofstream(path) << secret;
  // bwrap hides the host filesystem, so even a world-readable file must be invisible; the fallbacks rely on
  // the uid's permissions
  REQUIRE(chmod(path.c_str(), sb.mode() == SandboxMode::Bwrap ? 0644 : 0600) == 0);
  const RunResult r = run_py(sb, m,
                             "for p in ['" + path + "', '/proc/1/environ', '/etc/shadow']:\n    try:\n"
                             "        print(open(p).read())\n    except OSError as e:\n"
                             "        print('denied', p, type(e).__name__)\n");
  CHECK(r.out.find(secret) == std::string::npos);
  CHECK(r.out.find("denied " + path) != std::string::npos);
  require_clean(sb, m, root);
}

TEST_CASE("sandbox: SIGTERM-ignoring program and an escaping grandchild are killed", "[unit][sandbox]") {
  HostDir root(0711);
  Sandbox sb(test_config(root.path));
  const std::string m = new_marker("escape");
  RunResult r = run_py(sb, m,
                       "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                       "while True:\n    time.sleep(0.05)\n", 1.0);
  CHECK(r.status == RunStatus::Timeout);
  CHECK(r.wall_ms < 2500);
  require_clean(sb, m, root);
  // double fork + setsid + exec with the marker on its command line; the parent exits at once
  r = run_py(sb, m,
             "import os\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
             "        os.execv('/usr/bin/python3', ['python3', '-c', 'import time; time.sleep(30)', '" + m + "'])\n"
             "    os._exit(0)\nos.wait()\nprint('parent done')\n", 3.0);
  CHECK(r.status == RunStatus::Ok);
  CHECK(r.out == "parent done\n");
  CHECK(r.wall_ms < 2500);
  require_clean(sb, m, root);
}

TEST_CASE("sandbox: bounded concurrency and the batch deadline", "[unit][sandbox]") {
  HostDir root(0711);
  Sandbox sb(test_config(root.path));
  const std::string m = new_marker("batch");
  std::vector<RunRequest> reqs(4);
  for (size_t i = 0; i < reqs.size(); ++i) {
    reqs[i].program = "import time\ntime.sleep(0.6)\nprint(" + std::to_string(i) + ")\n";
    reqs[i].tag = m;
  }
  auto t0 = std::chrono::steady_clock::now();
  std::vector<RunResult> res = sb.run_batch(reqs);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (size_t i = 0; i < reqs.size(); ++i) CHECK(res[i].out == std::to_string(i) + "\n");
  CHECK(s >= 1.2);  // 2 workers: two rounds of 0.6 s
  CHECK(s < 2.4);
  for (auto& q : reqs) q.program = "while True:\n    pass\n";
  t0 = std::chrono::steady_clock::now();
  res = sb.run_batch(reqs, {.deadline_s = 1.0});
  s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (auto& r : res) CHECK(r.status == RunStatus::Timeout);
  CHECK(s < 2.0);
  require_clean(sb, m, root);
}

TEST_CASE("sandbox: each group has its own budget, and stops at its first timeout when asked", "[unit][sandbox]") {
  // spec §4.3: every completion gets its own sandbox budget, and its test script dies at the first timeout.
  HostDir root(0711);
  Sandbox sb(test_config(root.path));  // 2 workers
  const std::string m = new_marker("groups");
  auto req = [&](int64_t group, const std::string& program, double timeout_s = 0) {
    RunRequest q;
    q.program = program;
    q.group = group;
    q.timeout_s = timeout_s;
    q.tag = m;
    return q;
  };
  const std::string nap = "import time\ntime.sleep(0.4)\nprint('ok')\n";
  // group 0: four 0.4 s tests in a 0.6 s window. Two run at once and pass; the next two start after 0.4 s with
  // under 0.2 s left and time out. Group 1 comes after them and has a window of its own.
  std::vector<RunRequest> reqs = {req(0, nap), req(0, nap), req(0, nap), req(0, nap), req(1, nap)};
  std::vector<RunResult> res = sb.run_batch(reqs, {.group_budget_s = 0.6});
  CHECK(res[0].status == RunStatus::Ok);
  CHECK(res[1].status == RunStatus::Ok);
  CHECK(res[2].status == RunStatus::Timeout);
  CHECK(res[3].status == RunStatus::Timeout);
  CHECK(res[2].wall_ms < 300);  // clipped to what group 0 had left
  CHECK(res[4].status == RunStatus::Ok);
  CHECK(res[4].out == "ok\n");
  require_clean(sb, m, root);
  // stop at the first timeout (one worker, so the order is fixed): group 2's first test times out, so its later
  // tests are not run (Skipped); group 3 is not affected. Without the stop they run and pass.
  SandboxConfig one = test_config(root.path);
  one.workers = 1;
  Sandbox sb1(one);
  const std::string spin = "while True:\n    pass\n", quick = "print('quick')\n";
  reqs = {req(2, spin, 0.3), req(2, quick), req(3, quick), req(2, quick)};
  res = sb1.run_batch(reqs, {.group_stop_on_timeout = true});
  CHECK(res[0].status == RunStatus::Timeout);
  CHECK(res[1].status == RunStatus::Skipped);
  CHECK(res[1].out.empty());
  CHECK(res[2].status == RunStatus::Ok);
  CHECK(res[3].status == RunStatus::Skipped);
  res = sb1.run_batch(reqs);
  CHECK(res[1].status == RunStatus::Ok);
  CHECK(res[3].out == "quick\n");
  require_clean(sb1, m, root);
}

TEST_CASE("sandbox: forced fallback modes run and isolate what they claim", "[unit][sandbox]") {
  set_fatal_mode(FatalMode::Throw);
  HostDir root(0711);
  for (const char* mode : {"unshare", "rlimits"}) {
    SandboxConfig c = test_config(root.path);
    c.mode = mode;
    std::unique_ptr<Sandbox> sb;
    try {
      sb = std::make_unique<Sandbox>(c);
    } catch (const Error& e) {
      WARN("mode " << mode << " unavailable here: " << e.what());
      continue;
    }
    CHECK(std::string(sandbox_mode_name(sb->mode())) == mode);
    const std::string m = new_marker(mode);
    RunResult r = run_py(*sb, m, "import os\nprint(os.getcwd().endswith('/work'))\n");
    CHECK(r.status == RunStatus::Ok);
    CHECK(r.out == "True\n");
    if (sb->mode() == SandboxMode::Unshare) {
      r = run_py(*sb, m, "import socket\nprint(sorted(n for _, n in socket.if_nameindex()))\n");
      CHECK(r.out == "['lo']\n");
    }
    r = run_py(*sb, m,
               "import os\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
               "        os.execv('/usr/bin/python3', ['python3', '-c', 'import time; time.sleep(30)', '" + m + "'])\n"
               "    os._exit(0)\nos.wait()\n");
    CHECK(r.status == RunStatus::Ok);
    if (geteuid() == 0) require_clean(*sb, m, root);  // the uid sweep needs root
  }
}

// ---------------------------------------------------------------------------------- sandboxed rewards

TEST_CASE("code_format: 1.0 / 0.5 / 0.0 with the sandboxed ast.parse (spec §4.1)", "[unit][sandbox]") {
  HostDir root(0711);
  Sandbox sb(test_config(root.path));
  CodeFormatReward fmt(sb);
  const std::vector<RewardSample> batch = {
      {fenced("def f(x):\n    return x + 1\n"), {}, {}, {}},
      {fenced("def f(x)\n    return x\n"), {}, {}, {}},          // syntax error
      {"```python\ndef f(x):\n    return x\n", {}, {}, {}},     // missing closing fence
      {fenced("x = 1\n") + fenced("y = 2\n"), {}, {}, {}},      // two blocks
      {fenced("\n\n   x = 1   \n\n"), {}, {}, {}},               // stripped before parsing, like the reference
      {fenced("import os\nos._exit(1)\n"), {}, {}, {}},          // parsed, never executed
  };
  const RewardOutput o = fmt.score(batch);
  const std::vector<float> want = {1.0f, 0.5f, 0.0f, 0.0f, 1.0f, 1.0f};
  for (size_t i = 0; i < want.size(); ++i) CHECK(o.scores[i] == want[i]);
  CHECK(o.status[2] == RunStatus::Skipped);
  CHECK(o.runs.total() == 1);  // one batched parse
}

TEST_CASE("code reward: pass fraction, sys.exit before the asserts, deleting the file", "[unit][sandbox]") {
  HostDir root(0711);
  Sandbox sb(test_config(root.path));
  CodeExecReward code(sb);
  const std::vector<std::string> tests = {"assert add(1, 2) == 3", "assert add(2, 2) == 5", "assert add(0, 0) == 0"};
  const std::string add = "def add(a, b):\n    return a + b\n";
  const std::vector<RewardSample> batch = {
      {fenced(add), tests, {}, {}},                                                   // 2 of 3
      {fenced("import sys\nsys.exit(0)\n" + add), tests, {}, {}},                     // exits before the asserts
      {fenced("import os\nos._exit(0)\n"), tests, {}, {}},
      {fenced("import os\ntry:\n    os.remove(__file__)\nexcept OSError:\n    pass\n" + add), tests, {}, {}},
      {fenced("def add(a, b)\n    return a + b\n"), tests, {}, {}},                   // format 0.5: not run
      {fenced(add), {}, {}, {}},                                                      // no tests: 0
      {fenced("import builtins\nprint('cgrpo-pass-')\n" + add), {"assert False"}, {}, {}},
  };
  const RewardOutput o = code.score(batch);
  CHECK(o.scores[0] == Approx(2.0 / 3.0));
  CHECK(o.scores[1] == 0.0f);
  CHECK(o.scores[2] == 0.0f);
  CHECK(o.scores[3] == Approx(2.0 / 3.0));
  CHECK(o.scores[4] == 0.0f);
  CHECK(o.status[4] == RunStatus::Skipped);
  CHECK(o.scores[5] == 0.0f);
  CHECK(o.scores[6] == 0.0f);
  CHECK(o.status[0] == RunStatus::Failed);
  // the batched parse, then passing tests only: an exit 0 without the sentinel is a failed run
  CHECK(o.runs[RunStatus::Ok] == 1 + 2 + 2);
  CHECK(o.status[1] == RunStatus::Failed);
}

TEST_CASE("code reward: timeout policies zero_all and fail_test", "[unit][sandbox]") {
  HostDir root(0711);
  Sandbox sb(test_config(root.path));
  const std::string code = "def f(x):\n    if x == 2:\n        while True:\n            pass\n    return x\n";
  const std::vector<RewardSample> batch = {{fenced(code), {"assert f(1) == 1", "assert f(2) == 2", "assert f(3) == 3"}, {}, {}}};
  CodeExecOptions opt;
  opt.test_timeout_s = 1.0;
  CodeExecReward zero_all(sb, opt);
  RewardOutput o = zero_all.score(batch);
  CHECK(o.scores[0] == 0.0f);
  CHECK(o.status[0] == RunStatus::Timeout);
  CHECK(o.runs[RunStatus::Timeout] == 1);
  opt.timeout_policy = parse_timeout_policy("fail_test");
  CodeExecReward fail_test(sb, opt);
  o = fail_test.score(batch);
  CHECK(o.scores[0] == Approx(2.0 / 3.0));
  CHECK(o.status[0] == RunStatus::Timeout);
}

TEST_CASE("code reward: each completion has its own time budget, so slow ones do not zero the rest", "[unit][sandbox]") {
  // spec §4.3: the reference gives every completion its own 30 s sandbox. Four completions whose test spins keep
  // both workers busy for 1.2 s, longer than the 1.0 s budget; the fifth, quick one still gets its full score.
  HostDir root(0711);
  Sandbox sb(test_config(root.path));  // 2 workers
  const std::string spin = "def f(x):\n    while True:\n        pass\n", quick = "def f(x):\n    return x\n";
  std::vector<RewardSample> batch(4, RewardSample{fenced(spin), {"assert f(1) == 1"}, {}, {}});
  batch.push_back({fenced(quick), {"assert f(1) == 1", "assert f(2) == 2"}, {}, {}});
  CodeExecOptions opt;
  opt.test_timeout_s = 0.6;
  opt.completion_budget_s = 1.0;
  const RewardOutput o = CodeExecReward(sb, opt).score(batch);
  for (int i = 0; i < 4; ++i) CHECK(o.status[size_t(i)] == RunStatus::Timeout);
  CHECK(o.runs[RunStatus::Timeout] == 4);
  CHECK(o.status[4] == RunStatus::Ok);
  CHECK(o.scores[4] == 1.0f);
}

TEST_CASE("reward set: 2.0 * code + 0.5 * code_format (spec §4.4)", "[unit][sandbox]") {
  set_fatal_mode(FatalMode::Throw);
  HostDir root(0711);
  Sandbox sb(test_config(root.path));
  RewardSet set = RewardSet::make({"code", "code_format"}, {2.0f, 0.5f}, sb);
  CHECK(set.weight("code") == 2.0f);
  const std::string add = "def add(a, b):\n    return a + b\n";
  const std::vector<std::string> tests = {"assert add(1, 2) == 3", "assert add(2, 2) == 5"};
  const std::vector<RewardSample> batch = {
      {fenced(add), {"assert add(1, 2) == 3"}, {}, {}},  // 2.0 + 0.5
      {fenced(add), tests, {}, {}},                      // 1.0 + 0.5
      {fenced("def add(a, b) return\n"), tests, {}, {}}, // 0 + 0.25
      {"no code here", tests, {}, {}},                   // 0
  };
  const RewardSetOutput o = set.score(batch);
  const std::vector<float> want = {2.5f, 1.5f, 0.25f, 0.0f};
  for (size_t i = 0; i < want.size(); ++i) CHECK(o.total[i] == Approx(want[i]));
  REQUIRE(o.per_fn.size() == 2);
  CHECK(o.per_fn[1][2] == 0.5f);
  set.set_weight("code_format", 0.0f);
  CHECK(set.score(batch).total[2] == 0.0f);
  CHECK_THROWS_WITH(RewardSet::make({"nope"}, {1.0f}, sb), Catch::Contains("unknown reward function 'nope'"));
}

TEST_CASE("sandbox: two pools on one host never share a worker uid", "[unit][sandbox]") {
  if (geteuid() != 0) {
    WARN("not root: runs keep the trainer's uid");
    return;
  }
  HostDir root(0711);
  Sandbox a(test_config(root.path)), b(test_config(root.path));
  const std::vector<int> ua = a.uids(), ub = b.uids();
  REQUIRE(ua.size() == 2);
  REQUIRE(ub.size() == 2);
  for (int u : ua) {
    CHECK(u >= 60000);
    CHECK(std::find(ub.begin(), ub.end(), u) == ub.end());
  }
  CHECK(ua[0] != ua[1]);
  const std::string m = new_marker("uids");
  const RunResult r = run_py(a, m, "import os\nprint(os.getuid(), os.geteuid(), os.getgroups())\n");
  CHECK(r.status == RunStatus::Ok);
  CHECK((r.out == std::to_string(ua[0]) + " " + std::to_string(ua[0]) + " []\n" ||
         r.out == std::to_string(ua[1]) + " " + std::to_string(ua[1]) + " []\n"));
}

TEST_CASE("code_format: PCRE2 agrees with Python's re on random fence soup (spec §4.1, §4.2)", "[unit][sandbox]") {
  // Strings built from the pieces that matter; Python's re (the reference's engine) runs in the sandbox.
  HostDir root(0711);
  Sandbox sb(test_config(root.path));
  const char* pieces[] = {"```", "```python\n", "python", "\n", "\n\n", "x = 1", " ", "`", "``", "py\n", "\r\n", "é"};
  std::mt19937 rng(1234);
  std::vector<std::string> texts;
  auto soup = [&](int max_pieces) {
    std::string s;
    const int n = static_cast<int>(rng() % static_cast<unsigned>(max_pieces + 1));
    for (int k = 0; k < n; ++k) s += pieces[rng() % (sizeof(pieces) / sizeof(pieces[0]))];
    return s;
  };
  const char* tails[] = {"\n", "\n", "\n\n", "", "x\n", "\r\n", "\n```\n"};
  for (int i = 0; i < 3000; ++i)  // half free soup, half shaped like an answer with a perturbed fence
    texts.push_back(i % 2 ? soup(8) : soup(3) + "```python\n" + soup(3) + "```" + tails[rng() % 7]);
  texts.push_back("Text\n```python\ndef f():\n    return 1\n```\n");
  std::string in;
  for (auto& t : texts) in += std::to_string(t.size()) + "\n" + t;
  RunRequest q;
  q.stdin_data = in;
  q.program = R"PY(import re, sys
FMT = r"^(?:(?!```)[\s\S])*?```python\n(?:(?!```)[\s\S])*?```\n$"
data, i, out = sys.stdin.buffer.read(), 0, []
while i < len(data):
    j = data.index(b"\n", i)
    n = int(data[i:j])
    s = data[j + 1:j + 1 + n].decode("utf-8")
    i = j + 1 + n
    m = re.search(r"```python\n(.*?)```", s, re.DOTALL)
    code = m.group(1) if m else ""
    out.append(("1" if re.fullmatch(FMT, s, re.DOTALL | re.MULTILINE) else "0") + code.encode("utf-8").hex())
print("\n".join(out))
)PY";
  const RunResult r = sb.run(q);
  REQUIRE(r.status == RunStatus::Ok);
  std::istringstream lines(r.out);
  std::string line;
  size_t n = 0, matches = 0;
  for (; std::getline(lines, line) && n < texts.size(); ++n) {
    const bool want = line[0] == '1';
    matches += want;
    std::string code;
    for (size_t k = 1; k + 1 < line.size(); k += 2) code += static_cast<char>(std::stoi(line.substr(k, 2), nullptr, 16));
    INFO("text: " << texts[n]);
    REQUIRE(code_format_matches(texts[n]) == want);
    REQUIRE(extract_code(texts[n]) == code);
  }
  CHECK(n == texts.size());
  CHECK(matches >= 100);  // the soup must contain matching strings, or this proves little
}
