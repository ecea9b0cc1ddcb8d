// bench_cuda_gemm_best: CudaBackend::gemm (cuBLASLt, the heuristic's first algorithm, plan cached) against the
// best of every algorithm cuBLASLt's heuristic offers (up to 32, each timed), for the Dream model's matmul
// shapes of a preset, fp32 and bf16 inputs (fp32 accumulate), plus the peak of a large square bf16 and fp32 GEMM.
// Usage: bench_cuda_gemm_best [preset=1b] [tokens=4096]
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cgrpo/backend/colmajor_gemm.h"
#include "cgrpo/backend/cuda_backend.h"
#include "cgrpo/model/model_config.h"
#include "../../src/backend/cuda_check.h"

using namespace cgrpo;

namespace {
struct Shape {
  const char* what;
  int64_t m, n, k;
  bool tb;  // C [m, n] = A [m, k] @ B^T (B [n, k]) when tb, else A @ B (B [k, n])
};

template <class Fn>
float time_ms(cudaStream_t s, int reps, const Fn& fn) {
  cudaEvent_t a, b;
  CGRPO_CUDA(cudaEventCreate(&a));
  CGRPO_CUDA(cudaEventCreate(&b));
  fn();  // warm-up
  CGRPO_CUDA(cudaEventRecord(a, s));
  for (int i = 0; i < reps; ++i) fn();
  CGRPO_CUDA(cudaEventRecord(b, s));
  CGRPO_CUDA(cudaEventSynchronize(b));
  float ms = 0;
  CGRPO_CUDA(cudaEventElapsedTime(&ms, a, b));
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms / float(reps);
}

// Best time over the heuristic's candidate algorithms for the same problem CudaBackend::gemm solves.
float best_ms(CudaBackend& be, DType t, const Shape& sh, void* A, void* B, void* C, int reps) {
  const TensorView Av(A, t, {sh.m, sh.k}, Device::CUDA), Bv(B, t, {sh.tb ? sh.n : sh.k, sh.tb ? sh.k : sh.n}, Device::CUDA),
      Cv(C, DType::F32, {sh.m, sh.n}, Device::CUDA);
  const ColMajorGemm g = colmajor_gemm(gemm_shape(Av, false, Bv, sh.tb, Cv), false, sh.tb);
  const cudaDataType_t ct = t == DType::BF16 ? CUDA_R_16BF : CUDA_R_32F;
  cublasLtHandle_t lt = static_cast<cublasLtHandle_t>(be.context().cublaslt());
  cublasLtMatmulDesc_t op;
  CGRPO_CUBLAS(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tbo = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  CGRPO_CUBLAS(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  CGRPO_CUBLAS(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tbo, sizeof(tbo)));
  cublasLtMatrixLayout_t la, lb, lc;
  CGRPO_CUBLAS(cublasLtMatrixLayoutCreate(&la, ct, g.a.rows, g.a.cols, g.a.ld));
  CGRPO_CUBLAS(cublasLtMatrixLayoutCreate(&lb, ct, g.b.rows, g.b.cols, g.b.ld));
  CGRPO_CUBLAS(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, g.c.rows, g.c.cols, g.c.ld));
  cublasLtMatmulPreference_t pref;
  CGRPO_CUBLAS(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = be.context().workspace_bytes();
  CGRPO_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  cublasLtMatmulHeuristicResult_t res[32];
  int found = 0;
  CGRPO_CUBLAS(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 32, res, &found));
  cudaStream_t s = static_cast<cudaStream_t>(be.context().stream());
  const float alpha = 1, beta = 0;
  float best = 1e30f;
  for (int i = 0; i < found; ++i) {
    const float ms = time_ms(s, reps, [&] {
      CGRPO_CUBLAS(cublasLtMatmul(lt, op, &alpha, B, la, A, lb, &beta, C, lc, C, lc, &res[i].algo,
                                  be.context().workspace(), ws, s));
    });
    best = std::min(best, ms);
  }
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(la);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatrixLayoutDestroy(lc);
  cublasLtMatmulDescDestroy(op);
  return best;
}
}  // namespace

int main(int argc, char** argv) {
  if (cuda_device_info().device_count == 0) {
    std::printf("SKIP: no CUDA device (%s)\n", cuda_device_info().error.c_str());
    return 77;
  }
  const ModelConfig c = ModelConfig::preset(argc > 1 ? argv[1] : "1b");
  const int64_t N = argc > 2 ? std::atoll(argv[2]) : 4096;
  const int64_t H = c.hidden_size, I = c.intermediate_size, hd = c.head_dim();
  const int64_t QKV = (c.num_attention_heads + 2 * c.num_key_value_heads) * hd, QW = c.num_attention_heads * hd;
  const std::vector<Shape> shapes = {
      {"qkv  fwd", N, QKV, H, true},   {"o    fwd", N, H, QW, true},      {"gu   fwd", N, 2 * I, H, true},
      {"down fwd", N, H, I, true},     {"down dX ", N, I, H, false},      {"head chunk", N, 4096, H, true},
      {"square", 8192, 8192, 8192, true}};
  CudaBackend be(0);
  cudaStream_t s = static_cast<cudaStream_t>(be.context().stream());
  std::printf("device %s, preset %s, %lld tokens\n", cuda_device_info().name.c_str(),
              argc > 1 ? argv[1] : "1b", (long long)N);
  std::printf("%-11s %5s %22s %10s %10s %7s\n", "shape", "dtype", "m x n x k", "ours TF/s", "best TF/s", "ratio");
  for (DType t : {DType::BF16, DType::F32}) {
    for (const Shape& sh : shapes) {
      const size_t es = dtype_size(t);
      Buffer A(size_t(sh.m * sh.k) * es, Device::CUDA), B(size_t(sh.n * sh.k) * es, Device::CUDA),
          C(size_t(sh.m * sh.n) * 4, Device::CUDA);
      CGRPO_CUDA(cudaMemsetAsync(A.data(), 0, A.bytes(), s));
      CGRPO_CUDA(cudaMemsetAsync(B.data(), 0, B.bytes(), s));
      const TensorView Av(A.data(), t, {sh.m, sh.k}, Device::CUDA),
          Bv(B.data(), t, {sh.tb ? sh.n : sh.k, sh.tb ? sh.k : sh.n}, Device::CUDA),
          Cv(C.data(), DType::F32, {sh.m, sh.n}, Device::CUDA);
      const int reps = 10;
      const float ours = time_ms(s, reps, [&] { be.gemm(Av, false, Bv, sh.tb, Cv); });
      const float best = best_ms(be, t, sh, A.data(), B.data(), C.data(), reps);
      const double flop = 2.0 * double(sh.m) * double(sh.n) * double(sh.k);
      std::printf("%-11s %5s %8lld x %5lld x %5lld %10.1f %10.1f %6.0f%%\n", sh.what, dtype_name(t), (long long)sh.m,
                  (long long)sh.n, (long long)sh.k, flop / ours / 1e9, flop / best / 1e9, 100.0 * best / ours);
    }
  }
  return 0;
}
