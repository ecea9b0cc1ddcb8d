#include "cgrpo/core/data_paths.h"

#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "cgrpo/core/error.h"

namespace cgrpo {
namespace fs = std::filesystem;

namespace {

// The directory of the running executable (/proc/self/exe), empty when it cannot be read.
std::string executable_dir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : exe.parent_path().string();
}

// Every candidate root, existing or not, in search order (data_paths.h).
std::vector<std::string> candidate_roots() {
  std::vector<std::string> roots;
  if (const char* env = std::getenv("CGRPO_DATA_DIR"); env && *env) roots.emplace_back(env);
  if (const std::string exe = executable_dir(); !exe.empty()) roots.push_back(exe + "/../share/cgrpo/data");
  roots.emplace_back(CGRPO_SOURCE_DIR "/../shared/data");
  roots.emplace_back(CGRPO_SOURCE_DIR "/data");
  for (std::string& r : roots) {
    std::error_code ec;
    const fs::path canon = fs::weakly_canonical(r, ec);
    if (!ec) r = canon.string();
    while (r.size() > 1 && r.back() == '/') r.pop_back();
  }
  return roots;
}

}  // namespace

std::vector<std::string> data_roots() {
  std::vector<std::string> out;
  for (const std::string& r : candidate_roots()) {
    std::error_code ec;
    if (fs::is_directory(r, ec)) out.push_back(r);
  }
  return out;
}

std::string find_data_file(const std::string& rel, const std::string& what) {
  std::string tried;
  for (const std::string& r : candidate_roots()) {
    const std::string p = r + "/" + rel;
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) return p;
    tried += "\n    " + p;
  }
  CGRPO_FAIL("no copy of the ", what, " (", rel, ") in any data root; tried:", tried,
             hint("set CGRPO_DATA_DIR to a directory holding " + rel +
                  " (an installed cgrpo ships share/cgrpo/data), or name the file in the config"));
}

}  // namespace cgrpo
