// Unit tests observe errors as cgrpo::Error exceptions instead of process aborts.
#include "cgrpo/core/error.h"

namespace {
const bool g_throw_mode = (cgrpo::set_fatal_mode(cgrpo::FatalMode::Throw), true);
}
