// The world communicator of the mpi test binary (main() in test_mpi_collectives.cpp).
#pragma once

#include "cgrpo/comm/mpi_communicator.h"

namespace cgrpo::testing {
extern MpiCommunicator* g_world;
}
