// Sandbox throughput (tests/s) with 1, 2 and 4 workers on a trivial passing test, and the per-run overhead
// against a bare fork/exec of `/usr/bin/python3 -c pass`, measured in the same process.
//   bench_sandbox [runs per config = 40] [sandbox root = /tmp]
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cgrpo/core/timer.h"
#include "cgrpo/reward/code_exec.h"
#include "cgrpo/reward/sandbox.h"

extern char** environ;
using namespace cgrpo;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// posix_spawn + waitpid of python3 -c pass; returns the per-run wall times in ms.
std::vector<double> bare(int runs) {
  std::vector<double> ms;
  char a0[] = "/usr/bin/python3", a1[] = "-c", a2[] = "pass";
  char* argv[] = {a0, a1, a2, nullptr};
  for (int i = 0; i < runs; ++i) {
    Timer t;
    pid_t pid = 0;
    if (posix_spawn(&pid, argv[0], nullptr, nullptr, argv, environ) != 0) {
      std::perror("posix_spawn");
      std::exit(1);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      std::fprintf(stderr, "bare python3 failed\n");
      std::exit(1);
    }
    ms.push_back(t.elapsed_ms());
  }
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 40;
  const std::string root = argc > 2 ? argv[2] : "/tmp";
  const RunRequest test = {test_program("def add(a, b):\n    return a + b\n", "assert add(1, 2) == 3", "cgrpo-bench-ok"),
                           "", 10.0, "cgrpo-bench"};

  bare(3);  // warm the page cache
  const std::vector<double> b = bare(runs);
  const double bare_med = median(b);
  std::printf("bare  /usr/bin/python3 -c pass (posix_spawn+waitpid): median %.1f ms/run, %.1f runs/s serial\n",
              bare_med, 1000.0 / bare_med);

  for (int w : {1, 2, 4}) {
    SandboxConfig cfg;
    cfg.root = root;
    cfg.workers = w;
    Sandbox sb(cfg);
    sb.run_batch(std::vector<RunRequest>(static_cast<size_t>(w), test));  // warm-up
    const std::vector<RunRequest> reqs(static_cast<size_t>(runs), test);
    Timer t;
    const std::vector<RunResult> res = sb.run_batch(reqs);
    const double s = t.elapsed_s();
    std::vector<double> wall;
    int ok = 0;
    for (const RunResult& r : res) {
      ok += r.status == RunStatus::Ok && r.out.find("cgrpo-bench-ok") != std::string::npos;
      wall.push_back(r.wall_ms);
    }
    const double med = median(wall);
    std::printf("sandbox mode %-7s workers %d: %5.1f tests/s, median %.1f ms/run (overhead %+.1f ms vs bare), %d/%d ok\n",
                sandbox_mode_name(sb.mode()), w, runs / s, med, med - bare_med, ok, runs);
    if (ok != runs) return 1;
  }
  return 0;
}
