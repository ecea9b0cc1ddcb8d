// CudaContext: one device, one compute stream, one cuBLASLt handle and its workspace (RAII).
// This header has no CUDA includes, so CPU code can name it; only src/**/*.cu and cuda_*.cpp define it,
// and only the factories (and gpu tests) call it (ARCHITECTURE.md §3.1).
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace cgrpo {

struct CudaDeviceInfo {
  int device_count = 0;       // 0 when there is no driver or no device
  std::string error;          // why device_count is 0, when it is
  std::string name;           // device 0
  int sm_major = 0, sm_minor = 0;
  size_t total_mem_bytes = 0;
  int nccl_version = 0;       // e.g. 22809
  size_t cublaslt_version = 0;
};

CudaDeviceInfo cuda_device_info();

// The cuBLASLt workspace a CudaContext (so every CudaBackend the factory makes) allocates: fixed for the
// process, and counted in cgrpo plan's backend scratch for parallel.backend = cuda (train/memory_plan.cpp).
inline constexpr size_t kCublasLtWorkspaceBytes = size_t(32) << 20;

class CudaContext {
 public:
  // Selects `device` (usually local_rank % device_count), creates a stream, a cuBLASLt handle and a
  // workspace of workspace_bytes. Fatal (with rank context) on any CUDA error.
  CudaContext(int device, size_t workspace_bytes = kCublasLtWorkspaceBytes);
  ~CudaContext();
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;

  int device() const;
  void* stream() const;         // cudaStream_t
  void* cublaslt() const;       // cublasLtHandle_t
  void* workspace() const;
  size_t workspace_bytes() const;
  void synchronize() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// y[i] += a * x[i] on device memory, stream-ordered on ctx's stream.
void cuda_axpy(const CudaContext& ctx, int64_t n, float a, const float* x, float* y);

// End-to-end probe used by the gpu test: kernel launch, a cuBLASLt sgemm, and a one-device NCCL
// all-reduce, each checked against a host result. Returns "" on success, else what failed.
std::string cuda_smoke_test(int device);

}  // namespace cgrpo
