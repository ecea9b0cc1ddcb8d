// CGRPO_LOG(warning) << text, for sources that do not include Boost.Log (the CUDA files, compiled by nvcc).
#pragma once

#include <string>

namespace cgrpo {

void log_warning(const std::string& text);  // defined in src/core/logging.cpp

}  // namespace cgrpo
