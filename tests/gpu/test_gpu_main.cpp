// GPU tests: compare CUDA against the CPU oracle. Exits 77 (ctest: skipped) when no device is present.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>

#include "cgrpo/backend/cuda_context.h"
#include "cgrpo/core/error.h"

int main(int argc, char** argv) {
  const cgrpo::CudaDeviceInfo info = cgrpo::cuda_device_info();
  std::printf("NCCL %d, cuBLASLt %zu, devices %d\n", info.nccl_version, info.cublaslt_version, info.device_count);
  if (info.device_count == 0) {
    std::printf("SKIP: no usable CUDA device (%s)\n", info.error.c_str());
    return 77;
  }
  // CGRPO_GPU_MIN_DEVICES: a multi-rank run (one device per rank) skips on nodes with fewer devices
  const char* need = std::getenv("CGRPO_GPU_MIN_DEVICES");
  if (need && info.device_count < std::atoi(need)) {
    std::printf("SKIP: %d CUDA device(s), this run needs %s\n", info.device_count, need);
    return 77;
  }
  std::printf("device 0: %s sm_%d%d, %.1f GiB\n", info.name.c_str(), info.sm_major, info.sm_minor,
              info.total_mem_bytes / 1073741824.0);
  cgrpo::set_fatal_mode(cgrpo::FatalMode::Throw);
  return Catch::Session().run(argc, argv);
}

TEST_CASE("cuda smoke: kernel, cuBLASLt GEMM and NCCL all-reduce give exact results", "[gpu]") {
  REQUIRE(cgrpo::cuda_smoke_test(0) == "");
}
