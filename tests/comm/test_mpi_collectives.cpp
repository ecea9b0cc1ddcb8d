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

TEST_CASE("mpi communicator: ranks in different collectives fail with a message naming the mismatch", "[mpi]") {
  // rank r reduce-scatters 10 + 2r floats: rank 0 is sent more than it expects (MPI_ERR_TRUNCATE), rank 1 fewer
  // (a short message); both say so instead of MPI's bare error or silently mixed data. Two ranks only: with more,
  // Open MPI 4.1 can leave a rank with several truncated receives inside MPI_Waitall (production aborts the job
  // from the ranks that reported).
  const int W = g_world->world_size(), r = g_world->rank();
  if (W != 2) return;
  set_fatal_mode(FatalMode::Throw);
  std::vector<float> send(size_t(10 + 2 * W)), recv(send.size());
  const int64_t n = 10 + 2 * r;
  std::string msg;
  try {
    g_world->reduce_scatter(TensorView::of(send.data(), {n}), TensorView::of(recv.data(), {shard_range(n, W, r).count}),
                            ReduceOp::Sum);
  } catch (const Error& e) {
    msg = e.what();
  }
  set_fatal_mode(FatalMode::Abort);
  CHECK_THAT(msg, Catch::Contains("collective mismatch in reduce_scatter: rank ") && Catch::Contains("bytes were expected") &&
                      Catch::Contains("different orders or sizes"));
  // the exchange was completed (truncated or short), so the communicator still works
  CHECK(testing::check_collectives(*g_world) == std::vector<std::string>{});
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
