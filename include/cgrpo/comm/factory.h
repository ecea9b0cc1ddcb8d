// Communicator factory: "mpi" (CPU), "nccl" (GPU, bootstrapped through MPI).
#pragma once

#include <memory>
#include <string>

#include "cgrpo/comm/communicator.h"

namespace cgrpo {
std::unique_ptr<Communicator> make_communicator(const std::string& kind);
}  // namespace cgrpo
