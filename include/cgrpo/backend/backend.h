// Backend: the compute interface the model and optimizer are written against (ARCHITECTURE.md §2, §3.1).
// CpuBackend (OpenBLAS + threads) is the oracle; CudaBackend (cuBLASLt + own kernels) implements the
// same calls. Tensors are row-major TensorViews; shapes are checked, never assumed.
#pragma once

#include <memory>
#include <string>

#include "cgrpo/core/tensor_view.h"

namespace cgrpo {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual Device device() const = 0;

  // C = alpha * op(A) @ op(B) + beta * C                      (BLAS sgemm semantics, row-major)
  //   2-D: op(A) [m,k], op(B) [k,n], C [m,n]; op(X) = X^T when trans_x.
  //   3-D: strided batched over dim 0; a batch dim of 1 (or stride 0) broadcasts that operand.
  // The innermost stride of every operand must be 1; the row stride is the leading dimension.
  virtual void gemm(const TensorView& A, bool trans_a, const TensorView& B, bool trans_b, const TensorView& C,
                    float alpha = 1.0f, float beta = 0.0f) = 0;
};

// Shape bookkeeping shared by every backend's gemm.
struct GemmShape {
  int64_t batch, m, n, k;
  int64_t lda, ldb, ldc;               // row strides (leading dimensions)
  int64_t stride_a, stride_b, stride_c;  // batch strides in elements (0 = broadcast)
};
GemmShape gemm_shape(const TensorView& A, bool trans_a, const TensorView& B, bool trans_b, const TensorView& C);

// kind: "cpu" or "cuda". local_rank picks the device on multi-GPU nodes. threads: 0 = leave the BLAS default.
std::unique_ptr<Backend> make_backend(const std::string& kind, int local_rank = 0, int threads = 0);

}  // namespace cgrpo
