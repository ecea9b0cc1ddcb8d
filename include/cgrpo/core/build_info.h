#pragma once

namespace cgrpo {
const char* version_string();   // "0.1.0"
const char* git_describe();     // `git describe --always --dirty --tags` at configure time
const char* build_options();    // "cuda=ON archs=80;90 build=Release ..."
}  // namespace cgrpo
