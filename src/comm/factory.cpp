#include "cgrpo/comm/factory.h"

#include "cgrpo/backend/backend.h"
#include "cgrpo/comm/mpi_communicator.h"
#ifdef CGRPO_WITH_CUDA
#include "cgrpo/backend/cuda_backend.h"
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

std::unique_ptr<Communicator> make_device_communicator(Backend& backend) {
  if (backend.device() == Device::CPU) return nullptr;
#ifdef CGRPO_WITH_CUDA
  auto& cuda = dynamic_cast<CudaBackend&>(backend);
  auto c = std::make_unique<NcclCommunicator>(MPI_COMM_WORLD);
  CGRPO_CHECK(c->cuda_device() == cuda.context().device(), "NCCL communicator on device ", c->cuda_device(),
              " but the CUDA backend on device ", cuda.context().device(),
              hint("both pick local_rank % device_count; pass the node-local rank to make_backend"));
  c->set_compute_stream(cuda.context().stream());
  return c;
#else
  CGRPO_FAIL("backend ", backend.name(), " needs a device communicator, but this cgrpo was built without CUDA/NCCL");
#endif
}

}  // namespace cgrpo
