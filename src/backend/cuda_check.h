// Error-checking macros for CUDA, cuBLAS(Lt) and NCCL calls; included only by src/**/*.cu and cuda_*.cpp.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include "cgrpo/core/error.h"

#define CGRPO_CUDA(call)                                                                                   \
  do {                                                                                                     \
    cudaError_t e_ = (call);                                                                               \
    CGRPO_CHECK(e_ == cudaSuccess, #call, " -> ", cudaGetErrorName(e_), ": ", cudaGetErrorString(e_));     \
  } while (0)
#define CGRPO_CUBLAS(call)                                                                                 \
  do {                                                                                                     \
    cublasStatus_t s_ = (call);                                                                            \
    CGRPO_CHECK(s_ == CUBLAS_STATUS_SUCCESS, #call, " -> cublas status ", static_cast<int>(s_));           \
  } while (0)
#define CGRPO_NCCL(call)                                                                                   \
  do {                                                                                                     \
    ncclResult_t r_ = (call);                                                                              \
    CGRPO_CHECK(r_ == ncclSuccess, #call, " -> ", ncclGetErrorString(r_), " (", ncclGetLastError(nullptr), \
                ")");                                                                                      \
  } while (0)
