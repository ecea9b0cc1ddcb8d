// Collectives under real mpirun (ctest runs this binary at 1, 2, 3 and 4 ranks, oversubscribed, as root).
#define CATCH_CONFIG_RUNNER
#include <mpi.h>

#include <catch2/catch.hpp>

#include "../common/collective_checks.h"
#include "cgrpo/comm/mpi_communicator.h"
#include "mpi_test_env.h"

using namespace cgrpo;

namespace cgrpo::testing {
MpiCommunicator* g_world = nullptr;
}
using testing::g_world;

TEST_CASE("mpi communicator: collectives are exact, including sizes W does not divide", "[mpi]") {
  CHECK(testing::check_collectives(*g_world) == std::vector<std::string>{});
}

TEST_CASE("mpi communicator: bf16 reductions accumulate in fp32 in rank order and round once", "[mpi]") {
  CHECK(testing::check_bf16_reductions(*g_world) == std::vector<std::string>{});
}

TEST_CASE("mpi communicator: byte counters follow the direct-exchange formulas", "[mpi]") {
  CHECK(testing::check_byte_counters(*g_world) == std::vector<std::string>{});
}

TEST_CASE("mpi communicator: rank context and local rank", "[mpi]") {
  CHECK(process_rank() == g_world->rank());
  CHECK(process_world_size() == g_world->world_size());
  CHECK(g_world->local_rank() == g_world->rank());  // one node
}

int main(int argc, char** argv) {
  MpiSession mpi(&argc, &argv);
  int failed = 0;
  {
    MpiCommunicator comm(MPI_COMM_WORLD);
    g_world = &comm;
    failed = Catch::Session().run(argc, argv);
    int any = 0;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    failed = any;
  }
  return failed ? 1 : 0;
}
