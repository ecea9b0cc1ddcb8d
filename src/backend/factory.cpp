// The only place (with comm/factory.cpp) that knows whether CUDA was built in (ARCHITECTURE.md §3.1).
#include "cgrpo/backend/backend.h"
#include "cgrpo/backend/cpu_backend.h"
#ifdef CGRPO_WITH_CUDA
#include "cgrpo/backend/cuda_backend.h"
#include "cgrpo/backend/cuda_context.h"
#endif

namespace cgrpo {

std::string device_selfcheck(int local_rank, std::string* name) {
  (void)local_rank;
  (void)name;
#ifdef CGRPO_WITH_CUDA
  const CudaDeviceInfo info = cuda_device_info();
  if (info.device_count == 0) return "no usable CUDA device (" + info.error + ")";
  if (name) *name = info.name;
  return cuda_smoke_test(local_rank % info.device_count);
#else
  return "this cgrpo was built without CUDA";
#endif
}

std::unique_ptr<Backend> make_backend(const std::string& kind, int local_rank, int threads) {
  (void)local_rank;  // unused in CPU-only builds
  if (kind == "cpu") return std::make_unique<CpuBackend>(threads);
  if (kind == "cuda") {
#ifdef CGRPO_WITH_CUDA
    const CudaDeviceInfo info = cuda_device_info();
    CGRPO_CHECK(info.device_count > 0, "parallel.backend = cuda but no CUDA device is usable (", info.error, ")",
                hint("run on a GPU node or set parallel.backend = cpu"));
    return std::make_unique<CudaBackend>(local_rank % info.device_count);
#else
    CGRPO_FAIL("this cgrpo was built without CUDA", hint("rebuild with -DCGRPO_WITH_CUDA=ON or set parallel.backend = cpu"));
#endif
  }
  CGRPO_FAIL("unknown backend '", kind, "'", hint("use cpu or cuda"));
}

}  // namespace cgrpo
