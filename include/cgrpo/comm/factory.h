// Communicator factory: "mpi" (CPU), "nccl" (GPU, bootstrapped through MPI).
#pragma once

#include <memory>
#include <string>

#include "cgrpo/comm/communicator.h"

namespace cgrpo {

class Backend;

std::unique_ptr<Communicator> make_communicator(const std::string& kind);

// The communicator for the parameter traffic of a backend's memory: nullptr for the CPU backend (the MPI
// communicator serves host memory); for CUDA an NcclCommunicator on the backend's device whose collectives
// are ordered after the backend's compute stream. Collective over MPI_COMM_WORLD.
std::unique_ptr<Communicator> make_device_communicator(Backend& backend);

}  // namespace cgrpo
