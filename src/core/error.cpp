#include "cgrpo/core/error.h"

#include <mpi.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace cgrpo {
namespace {
std::atomic<FatalMode> g_mode{FatalMode::Abort};
std::atomic<void (*)(const std::string&)> g_hook{nullptr};
int g_rank = -1;
int g_world = 0;
std::string& host_storage() {
  static std::string host = [] {
    char buf[256] = {0};
    if (gethostname(buf, sizeof(buf) - 1) != 0) std::strcpy(buf, "?");
    return std::string(buf);
  }();
  return host;
}
}  // namespace

void set_fatal_mode(FatalMode mode) { g_mode = mode; }
void set_fatal_hook(void (*hook)(const std::string&)) { g_hook = hook; }
FatalMode fatal_mode() { return g_mode; }

void set_process_context(int rank, int world_size) {
  g_rank = rank;
  g_world = world_size;
}
int process_rank() { return g_rank; }
int process_world_size() { return g_world; }
const std::string& process_host() { return host_storage(); }

void fatal(const char* file, int line, const char* expr, const std::string& what) {
  const char* base = std::strstr(file, "/src/");
  if (!base) base = std::strstr(file, "/include/");
  if (!base) base = std::strstr(file, "/tests/");
  std::string where = base ? std::string(base + 1) : std::string(file);
  std::string msg;
  if (g_rank >= 0)
    msg = "cgrpo: FATAL on rank " + std::to_string(g_rank) + "/" + std::to_string(g_world) + " (host " +
          host_storage() + ") at " + where + ":" + std::to_string(line);
  else
    msg = "cgrpo: FATAL (host " + host_storage() + ") at " + where + ":" + std::to_string(line);
  if (expr) msg += std::string("\n  check failed: ") + expr;
  if (!what.empty()) msg += "\n  " + what;

  if (g_mode == FatalMode::Throw) throw Error(msg);
  if (auto* hook = g_hook.exchange(nullptr)) hook(msg);  // once: a fatal inside the hook goes straight on

  std::fflush(stdout);
  std::fprintf(stderr, "%s\n", msg.c_str());
  std::fflush(stderr);
  int inited = 0, finalized = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&finalized);
  if (inited && !finalized) MPI_Abort(MPI_COMM_WORLD, 1);
  if (std::getenv("CGRPO_ABORT")) std::abort();  // for a debugger or a core dump
  std::_Exit(1);  // otherwise a plain exit status 1, not SIGABRT
}

}  // namespace cgrpo
