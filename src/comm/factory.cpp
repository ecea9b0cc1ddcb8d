#include "cgrpo/comm/factory.h"

#include "cgrpo/comm/mpi_communicator.h"

namespace cgrpo {

std::unique_ptr<Communicator> make_communicator(const std::string& kind) {
  if (kind == "mpi") return std::make_unique<MpiCommunicator>(MPI_COMM_WORLD);
  if (kind == "nccl") {
#ifdef CGRPO_WITH_CUDA
    CGRPO_FAIL("the NCCL communicator is not implemented yet (issue: CUDA backend)", hint("use the mpi communicator"));
#else
    CGRPO_FAIL("this cgrpo was built without CUDA/NCCL", hint("rebuild with -DCGRPO_WITH_CUDA=ON"));
#endif
  }
  CGRPO_FAIL("unknown communicator '", kind, "'", hint("use mpi or nccl"));
}

}  // namespace cgrpo
