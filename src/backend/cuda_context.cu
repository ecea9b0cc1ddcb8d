#include <cublasLt.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "cgrpo/backend/cuda_context.h"
#include "cgrpo/core/error.h"
#include "cuda_check.h"


namespace cgrpo {

CudaDeviceInfo cuda_device_info() {
  CudaDeviceInfo info;
  ncclGetVersion(&info.nccl_version);
  info.cublaslt_version = cublasLtGetVersion();
  cudaError_t e = cudaGetDeviceCount(&info.device_count);
  if (e != cudaSuccess) {
    info.device_count = 0;
    info.error = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    cudaGetLastError();  // clear the sticky error
    return info;
  }
  if (info.device_count == 0) {
    info.error = "no CUDA device";
    return info;
  }
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, 0) == cudaSuccess) {
    info.name = p.name;
    info.sm_major = p.major;
    info.sm_minor = p.minor;
    info.total_mem_bytes = p.totalGlobalMem;
  }
  return info;
}

struct CudaContext::Impl {
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

CudaContext::CudaContext(int device, size_t workspace_bytes) : impl_(std::make_unique<Impl>()) {
  impl_->device = device;
  CGRPO_CUDA(cudaSetDevice(device));
  CGRPO_CUDA(cudaStreamCreateWithFlags(&impl_->stream, cudaStreamNonBlocking));
  CGRPO_CUBLAS(cublasLtCreate(&impl_->lt));
  impl_->workspace_bytes = workspace_bytes;
  if (workspace_bytes) CGRPO_CUDA(cudaMalloc(&impl_->workspace, workspace_bytes));
}

CudaContext::~CudaContext() {
  if (!impl_) return;
  if (impl_->workspace) cudaFree(impl_->workspace);
  if (impl_->lt) cublasLtDestroy(impl_->lt);
  if (impl_->stream) cudaStreamDestroy(impl_->stream);
}

int CudaContext::device() const { return impl_->device; }
void* CudaContext::stream() const { return impl_->stream; }
void* CudaContext::cublaslt() const { return impl_->lt; }
void* CudaContext::workspace() const { return impl_->workspace; }
size_t CudaContext::workspace_bytes() const { return impl_->workspace_bytes; }
void CudaContext::synchronize() const { CGRPO_CUDA(cudaStreamSynchronize(impl_->stream)); }

namespace {
__global__ void axpy_kernel(int64_t n, float a, const float* __restrict__ x, float* __restrict__ y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] += a * x[i];
}
}  // namespace

void cuda_axpy(const CudaContext& ctx, int64_t n, float a, const float* x, float* y) {
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, 4096));
  if (n == 0) return;
  axpy_kernel<<<blocks, threads, 0, static_cast<cudaStream_t>(ctx.stream())>>>(n, a, x, y);
  CGRPO_CUDA(cudaGetLastError());
}

std::string cuda_smoke_test(int device) {
  CudaContext ctx(device);
  cudaStream_t s = static_cast<cudaStream_t>(ctx.stream());
  // 1. kernel: y = 1 + 2 * x with x = i (exact in fp32 for small i)
  const int n = 1000;
  std::vector<float> hx(n), hy(n, 1.0f);
  for (int i = 0; i < n; ++i) hx[i] = float(i);
  float *dx = nullptr, *dy = nullptr;
  CGRPO_CUDA(cudaMalloc(&dx, n * sizeof(float)));
  CGRPO_CUDA(cudaMalloc(&dy, n * sizeof(float)));
  CGRPO_CUDA(cudaMemcpyAsync(dx, hx.data(), n * sizeof(float), cudaMemcpyHostToDevice, s));
  CGRPO_CUDA(cudaMemcpyAsync(dy, hy.data(), n * sizeof(float), cudaMemcpyHostToDevice, s));
  cuda_axpy(ctx, n, 2.0f, dx, dy);
  CGRPO_CUDA(cudaMemcpyAsync(hy.data(), dy, n * sizeof(float), cudaMemcpyDeviceToHost, s));
  ctx.synchronize();
  for (int i = 0; i < n; ++i)
    if (hy[i] != 1.0f + 2.0f * i) return "axpy kernel: wrong value at " + std::to_string(i);

  // 2. cuBLASLt fp32 GEMM, column-major C[4x4] = A[4x3] B[3x4] on small integers (exact)
  const int m = 4, k = 3, nn = 4;
  std::vector<float> ha(m * k), hb(k * nn), hc(m * nn, 0.0f), want(m * nn, 0.0f);
  for (int i = 0; i < m * k; ++i) ha[i] = float(i % 5 - 2);
  for (int i = 0; i < k * nn; ++i) hb[i] = float(i % 3 + 1);
  for (int j = 0; j < nn; ++j)
    for (int i = 0; i < m; ++i)
      for (int p = 0; p < k; ++p) want[i + j * m] += ha[i + p * m] * hb[p + j * k];
  float *da = nullptr, *db = nullptr, *dc = nullptr;
  CGRPO_CUDA(cudaMalloc(&da, ha.size() * 4));
  CGRPO_CUDA(cudaMalloc(&db, hb.size() * 4));
  CGRPO_CUDA(cudaMalloc(&dc, hc.size() * 4));
  CGRPO_CUDA(cudaMemcpyAsync(da, ha.data(), ha.size() * 4, cudaMemcpyHostToDevice, s));
  CGRPO_CUDA(cudaMemcpyAsync(db, hb.data(), hb.size() * 4, cudaMemcpyHostToDevice, s));
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  CGRPO_CUBLAS(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  CGRPO_CUBLAS(cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, m, k, m));
  CGRPO_CUBLAS(cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, k, nn, k));
  CGRPO_CUBLAS(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, m, nn, m));
  const float alpha = 1.0f, beta = 0.0f;
  CGRPO_CUBLAS(cublasLtMatmul(static_cast<cublasLtHandle_t>(ctx.cublaslt()), op, &alpha, da, la, db, lb, &beta, dc, lc,
                              dc, lc, nullptr, ctx.workspace(), ctx.workspace_bytes(), s));
  CGRPO_CUDA(cudaMemcpyAsync(hc.data(), dc, hc.size() * 4, cudaMemcpyDeviceToHost, s));
  ctx.synchronize();
  cublasLtMatrixLayoutDestroy(la);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatrixLayoutDestroy(lc);
  cublasLtMatmulDescDestroy(op);
  for (int i = 0; i < m * nn; ++i)
    if (hc[i] != want[i]) return "cuBLASLt sgemm: wrong value at " + std::to_string(i);

  // 3. NCCL: a one-rank communicator; all-reduce sum of y must equal y
  ncclComm_t comm = nullptr;
  int devs[1] = {device};
  if (ncclCommInitAll(&comm, 1, devs) != ncclSuccess) return "ncclCommInitAll failed";
  ncclResult_t r = ncclAllReduce(dy, dx, n, ncclFloat, ncclSum, comm, s);
  if (r != ncclSuccess) return std::string("ncclAllReduce: ") + ncclGetErrorString(r);
  std::vector<float> hr(n);
  CGRPO_CUDA(cudaMemcpyAsync(hr.data(), dx, n * sizeof(float), cudaMemcpyDeviceToHost, s));
  ctx.synchronize();
  ncclCommDestroy(comm);
  for (int i = 0; i < n; ++i)
    if (hr[i] != 1.0f + 2.0f * i) return "NCCL all-reduce: wrong value at " + std::to_string(i);
  cudaFree(dx);
  cudaFree(dy);
  cudaFree(da);
  cudaFree(db);
  cudaFree(dc);
  return "";
}

}  // namespace cgrpo
