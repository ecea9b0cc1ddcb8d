#include "cgrpo/backend/cpu_backend.h"

#include <cblas.h>

#include <algorithm>

#include "cgrpo/rollout/token_sampler.h"
#include "cpu_thread_pool.h"

namespace cgrpo {

CpuBackend::CpuBackend(int threads) {
  if (threads > 0) openblas_set_num_threads(threads);
  const int n = std::max(openblas_get_num_threads(), 1);
  tws_.resize(static_cast<size_t>(n));
  pool_ = std::make_unique<CpuThreadPool>(n);
}

CpuBackend::~CpuBackend() = default;

int CpuBackend::threads() const { return openblas_get_num_threads(); }

void CpuBackend::gemm(const TensorView& A, bool trans_a, const TensorView& B, bool trans_b, const TensorView& C,
                      float alpha, float beta) {
  CGRPO_CHECK(A.device == Device::CPU && B.device == Device::CPU && C.device == Device::CPU,
              "CpuBackend::gemm on device memory");
  CGRPO_CHECK(A.dtype == DType::F32 && C.dtype == DType::F32, "CpuBackend::gemm is fp32 only, got ", A.str(),
              " ", B.str(), " ", C.str());
  const GemmShape s = gemm_shape(A, trans_a, B, trans_b, C);
  const float* a = static_cast<const float*>(A.data);
  const float* b = static_cast<const float*>(B.data);
  float* c = static_cast<float*>(C.data);
  for (int64_t i = 0; i < s.batch; ++i) {
    if (s.k == 0) {  // BLAS leaves C untouched for k = 0 only when beta = 1; make it C = beta * C
      for (int64_t r = 0; r < s.m; ++r)
        for (int64_t j = 0; j < s.n; ++j) {
          float& v = c[i * s.stride_c + r * s.ldc + j];
          v = beta == 0.0f ? 0.0f : beta * v;
        }
      continue;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                static_cast<blasint>(s.m), static_cast<blasint>(s.n), static_cast<blasint>(s.k), alpha,
                a + i * s.stride_a, static_cast<blasint>(s.lda), b + i * s.stride_b, static_cast<blasint>(s.ldb), beta,
                c + i * s.stride_c, static_cast<blasint>(s.ldc));
  }
}

}  // namespace cgrpo

namespace cgrpo {

float* CpuBackend::workspace(size_t floats) {
  const size_t bytes = std::max<size_t>(floats, 1) * sizeof(float);
  if (ws_.bytes() < bytes) ws_ = Buffer(bytes, Device::CPU, MemCategory::Workspace);
  return ws_.as<float>();
}

float* CpuBackend::thread_workspace(int tid, size_t floats) {
  const size_t bytes = std::max<size_t>(floats, 1) * sizeof(float);
  Buffer& b = tws_[static_cast<size_t>(tid)];
  if (b.bytes() < bytes) b = Buffer(bytes, Device::CPU, MemCategory::Workspace);
  return b.as<float>();
}

CpuBackend& host_backend() {
  static CpuBackend be(0);
  return be;
}

size_t CpuBackend::workspace_capacity_bytes() const {
  size_t n = ws_.bytes();
  for (const Buffer& b : tws_) n += b.bytes();
  return n;
}

}  // namespace cgrpo
