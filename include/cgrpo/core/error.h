// One fatal path for the whole program (ARCHITECTURE.md §3.7).
//
// CGRPO_CHECK(cond, "what", cgrpo::hint("how to fix")) prints
//   cgrpo: FATAL on rank R/W (host H) at file:line
//     check failed: cond
//     what ...
//     hint: how to fix
// flushes, and calls MPI_Abort so no other rank hangs (abort() before MPI_Init).
// Unit tests switch the mode to Throw and assert on the cgrpo::Error message instead.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace cgrpo {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class FatalMode { Abort, Throw };
void set_fatal_mode(FatalMode mode);
FatalMode fatal_mode();

// Rank context printed by fatal(); set by the communicator once MPI is up.
void set_process_context(int rank, int world_size);
int process_rank();   // -1 before set_process_context
int process_world_size();
const std::string& process_host();

struct Hint {
  std::string text;
};
inline Hint hint(std::string text) { return Hint{std::move(text)}; }

[[noreturn]] void fatal(const char* file, int line, const char* expr, const std::string& what);

// Called by fatal() (Abort mode) with the whole message before it goes to stderr and MPI_Abort; init_logging
// installs one that writes it to the rank's log file, so the cause survives even when mpirun's output of a
// dying job is cut short.
void set_fatal_hook(void (*hook)(const std::string& message));

namespace detail {
inline void put(std::ostringstream& o, const Hint& h) { o << "\n  hint: " << h.text; }
template <class T>
inline void put(std::ostringstream& o, const T& v) { o << v; }
template <class... A>
std::string cat(const A&... a) {
  std::ostringstream o;
  (put(o, a), ...);
  return o.str();
}
}  // namespace detail

}  // namespace cgrpo

#define CGRPO_CHECK(cond, ...)                                                                \
  do {                                                                                        \
    if (!(cond)) [[unlikely]]                                                                 \
      ::cgrpo::fatal(__FILE__, __LINE__, #cond, ::cgrpo::detail::cat("" __VA_OPT__(, ) __VA_ARGS__)); \
  } while (0)

#define CGRPO_FAIL(...) ::cgrpo::fatal(__FILE__, __LINE__, nullptr, ::cgrpo::detail::cat(__VA_ARGS__))
