#include "cgrpo/comm/factory.h"

#include "cgrpo/comm/mpi_communicator.h"
#ifdef CGRPO_WITH_CUDA
#include "cgrpo/comm/nccl_communicator.h"
#endif

namespace cgrpo {

std::unique_ptr<Communicator> make_communicator(const std::string& kind) {
  if (kind == "mpi") return std::make_unique<MpiCommunicator>(MPI_COMM_WORLD);
  if (kind == "nccl") {
#ifdef CGRPO_WITH_CUDA
    return std::make_unique<NcclCommunicator>(MPI_COMM_WORLD);  // collectives on device buffers
#else
    CGRPO_FAIL("this cgrpo was built without CUDA/NCCL", hint("rebuild with -DCGRPO_WITH_CUDA=ON"));
#endif
  }
  CGRPO_FAIL("unknown communicator '", kind, "'", hint("use mpi or nccl"));
}

}  // namespace cgrpo
