// CudaBackend: construction, the stream-ordered Buffer allocator, host<->device copies, the device-side error
// record and workspace, and gemm on cuBLASLt. The other ops live in cuda_ops_basic.cu, cuda_ops_flat.cu,
// cuda_ops_logsoftmax.cu, cuda_ops_attention.cu and cuda_sample.cu.
//
// gemm with a bf16 C (bf16 activations, backend.h): D = C in CUDA_R_16BF, fp32 compute and scale
// (CUBLAS_COMPUTE_32F, CUDA_R_32F alpha), beta = 0 only, so cuBLASLt rounds alpha * (A B accumulated in fp32)
// to bf16 once in its epilogue. The plan key holds C's dtype and alignment (bf16 views may be 2-byte aligned).
//
// Allocator: Device::CUDA Buffers come from cudaMallocAsync / cudaFreeAsync on the stream of the most
// recently constructed live CudaBackend, out of the device's default memory pool with its release threshold
// at UINT64_MAX, so freed memory stays in the pool and a steady-state training step never reaches cudaMalloc.
// Allocation and free are ordered on that stream: the backend's own ops (all on that stream) may use a Buffer
// as soon as it is constructed, and a Buffer freed while kernels that read it are still queued is not reused
// before they finish. The DeviceAllocator hook is a plain function pair, so the stream is file-static state;
// one CudaBackend per process is the model (a second one, as tests make, takes the stream over until it is
// destroyed; with none alive, allocation falls back to the legacy stream and waits).
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "cgrpo/backend/colmajor_gemm.h"
#include "cgrpo/backend/cuda_backend.h"
#include "cgrpo/core/buffer.h"
#include "cuda_check.h"
#include "cuda_kernels.cuh"

namespace cgrpo {

namespace {

// The streams of the live CudaBackends, most recent last. Leaked on purpose: Buffers may be freed during
// static destruction, after a function-local static would be gone.
struct AllocStreams {
  std::mutex mu;
  std::vector<cudaStream_t> live;
};
AllocStreams& alloc_streams() {
  static AllocStreams* s = new AllocStreams;
  return *s;
}

void* cuda_alloc(size_t bytes) {
  AllocStreams& st = alloc_streams();
  std::lock_guard<std::mutex> lock(st.mu);
  const cudaStream_t s = st.live.empty() ? cudaStream_t(0) : st.live.back();
  void* p = nullptr;
  const cudaError_t e = cudaMallocAsync(&p, bytes, s);
  if (e != cudaSuccess) cudaGetLastError();  // not sticky: clear it so later launch checks do not see it
  CGRPO_CHECK(e == cudaSuccess, "cudaMallocAsync of ", bytes, " bytes -> ", cudaGetErrorName(e), ": ",
              cudaGetErrorString(e), hint("out of device memory: reduce the micro-batch size or shard more "
                                          "(parallel.zero_stage)"));
  if (st.live.empty()) CGRPO_CUDA(cudaStreamSynchronize(s));  // no backend stream: usable anywhere once it returns
  // The kernels' float4 paths and the workspace carver (256-byte pieces, doubles) rely on it; pools give it.
  CGRPO_CHECK(reinterpret_cast<uintptr_t>(p) % 256 == 0, "cudaMallocAsync returned ", p, ", not 256-byte aligned");
  return p;
}

void cuda_free(void* p) {
  AllocStreams& st = alloc_streams();
  std::lock_guard<std::mutex> lock(st.mu);
  const cudaError_t e = cudaFreeAsync(p, st.live.empty() ? cudaStream_t(0) : st.live.back());
  if (e == cudaSuccess) return;
  cudaGetLastError();
  // At process exit the runtime may already be gone; the memory goes with it.
  if (e == cudaErrorCudartUnloading || e == cudaErrorContextIsDestroyed) return;
  CGRPO_FAIL("cudaFreeAsync(", p, ") -> ", cudaGetErrorName(e), ": ", cudaGetErrorString(e));
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::F32: return CUDA_R_32F;
    case DType::BF16: return CUDA_R_16BF;
    case DType::F16: return CUDA_R_16F;
  }
  return CUDA_R_32F;
}

// Largest power of two (<= 256) dividing the address of every batch item: base | batch stride in bytes.
uint32_t alignment(const void* p, int64_t batch_stride_elems, size_t elem_bytes) {
  const uint64_t v = reinterpret_cast<uint64_t>(p) | static_cast<uint64_t>(batch_stride_elems * elem_bytes) | 256u;
  return static_cast<uint32_t>(v & (~v + 1));
}

// C = beta * C (0 when beta == 0, so NaN/Inf in an uninitialised C do not survive) for k = 0 gemms; T is float
// or bf16 bits (cuda_kernels.cuh).
template <class T>
__global__ void scale_kernel(T* c, int64_t batch, int64_t rows, int64_t cols, int64_t ld, int64_t bstride, float beta) {
  const int64_t total = batch * rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = i / (rows * cols), r = (i / cols) % rows, j = i % cols;
    T* p = c + b * bstride + r * ld + j;
    *p = cuda::narrow<T>(beta == 0.0f ? 0.0f : beta * cuda::widen(*p));
  }
}

}  // namespace

// One cached plan per distinct (dtypes, transposes, sizes, leading dims, batch strides, alignments):
// the descriptors and the heuristic's first algorithm. Alignment is part of the key because an algorithm
// chosen for 256-byte aligned operands may not run on a column-block view.
struct CudaBackend::GemmCache {
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool has_algo = false;
  };
  using Key = std::array<int64_t, 20>;
  std::map<Key, Plan> plans;

  ~GemmCache() {
    for (auto& [key, p] : plans) {
      if (p.a) cublasLtMatrixLayoutDestroy(p.a);
      if (p.b) cublasLtMatrixLayoutDestroy(p.b);
      if (p.c) cublasLtMatrixLayoutDestroy(p.c);
      if (p.op) cublasLtMatmulDescDestroy(p.op);
    }
  }

  static cublasLtMatrixLayout_t layout(cudaDataType_t t, const ColMajorMatrix& x, int64_t batch) {
    cublasLtMatrixLayout_t l = nullptr;
    CGRPO_CUBLAS(cublasLtMatrixLayoutCreate(&l, t, static_cast<uint64_t>(x.rows), static_cast<uint64_t>(x.cols),
                                            std::max<int64_t>(x.ld, std::max<int64_t>(x.rows, 1))));
    if (batch > 1) {
      const int32_t count = static_cast<int32_t>(batch);
      const int64_t stride = x.batch_stride;
      CGRPO_CUBLAS(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
      CGRPO_CUBLAS(
          cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
    }
    return l;
  }

  // tf32: fp32 inputs on TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32); part of the key.
  const Plan& plan(const CudaContext& ctx, const ColMajorGemm& g, DType ab, DType cd, std::array<uint32_t, 3> align,
                   bool tf32) {
    const bool fast = tf32 && ab == DType::F32;
    const Key key{int64_t(ab), int64_t(cd), g.trans_a, g.trans_b, g.m, g.n, g.k, g.batch, g.a.ld, g.b.ld, g.c.ld,
                  g.a.batch_stride, g.b.batch_stride, g.c.batch_stride, align[0], align[1], align[2], fast, 0, 0};
    auto it = plans.find(key);
    if (it != plans.end()) return it->second;
    Plan& p = plans[key];
    CGRPO_CUBLAS(cublasLtMatmulDescCreate(&p.op, fast ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    CGRPO_CUBLAS(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    CGRPO_CUBLAS(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    p.a = layout(cuda_type(ab), g.a, g.batch);
    p.b = layout(cuda_type(ab), g.b, g.batch);
    p.c = layout(cuda_type(cd), g.c, g.batch);

    cublasLtMatmulPreference_t pref = nullptr;
    CGRPO_CUBLAS(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t ws = ctx.workspace_bytes();
    CGRPO_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    CGRPO_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align[0],
                                                      sizeof(uint32_t)));
    CGRPO_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align[1],
                                                      sizeof(uint32_t)));
    CGRPO_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align[2],
                                                      sizeof(uint32_t)));
    CGRPO_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align[2],
                                                      sizeof(uint32_t)));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(static_cast<cublasLtHandle_t>(ctx.cublaslt()), p.op, p.a,
                                                             p.b, p.c, p.c, pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    p.has_algo = st == CUBLAS_STATUS_SUCCESS && found > 0;
    if (p.has_algo) p.algo = result.algo;
    return p;
  }
};

CudaBackend::CudaBackend(int device, size_t workspace_bytes)
    : ctx_(device, workspace_bytes), gemm_cache_(std::make_unique<GemmCache>()) {
  int pools = 0;
  CGRPO_CUDA(cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device));
  CGRPO_CHECK(pools != 0, "CUDA device ", device, " does not support stream-ordered memory pools",
              hint("the CUDA backend needs a driver with cudaMallocAsync (CUDA 11.2 or newer)"));
  cudaMemPool_t pool = nullptr;
  CGRPO_CUDA(cudaDeviceGetDefaultMemPool(&pool, device));
  uint64_t keep_all = UINT64_MAX;  // never return freed memory to the driver at synchronisation points
  CGRPO_CUDA(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_all));
  {
    AllocStreams& st = alloc_streams();
    std::lock_guard<std::mutex> lock(st.mu);
    st.live.push_back(static_cast<cudaStream_t>(ctx_.stream()));
  }
  set_device_allocator(Device::CUDA, DeviceAllocator{&cuda_alloc, &cuda_free});

  err_dev_ = Buffer(sizeof(cuda::DeviceError), Device::CUDA, MemCategory::Other);
  CGRPO_CUDA(cudaMemsetAsync(err_dev_.data(), 0, sizeof(cuda::DeviceError), static_cast<cudaStream_t>(ctx_.stream())));
  CGRPO_CUDA(cudaMallocHost(&err_host_, sizeof(cuda::DeviceError)));
  std::memset(err_host_, 0, sizeof(cuda::DeviceError));
  ctx_.synchronize();
}

CudaBackend::~CudaBackend() {
  // Unchecked: a destructor must not throw, and at process exit the runtime may already be unloading.
  const cudaStream_t s = static_cast<cudaStream_t>(ctx_.stream());
  ws_.reset();  // freed in order on this backend's stream (still the allocator stream)
  attn_ws_.reset();
  err_dev_.reset();
  if (s) cudaStreamSynchronize(s);
  {
    AllocStreams& st = alloc_streams();
    std::lock_guard<std::mutex> lock(st.mu);
    st.live.erase(std::remove(st.live.begin(), st.live.end(), s), st.live.end());
  }
  if (err_host_) cudaFreeHost(err_host_);
  gemm_cache_.reset();
}

float* CudaBackend::workspace(size_t floats) {
  const size_t bytes = std::max<size_t>(floats, 1) * sizeof(float);
  // The old buffer is freed in stream order: kernels already queued on it finish before it is reused.
  if (ws_.bytes() < bytes) ws_ = Buffer(bytes, Device::CUDA, MemCategory::Workspace);
  return ws_.as<float>();
}

CudaBackend::PoolStats CudaBackend::pool_stats() const {
  cudaMemPool_t pool = nullptr;
  CGRPO_CUDA(cudaDeviceGetDefaultMemPool(&pool, ctx_.device()));
  PoolStats p;
  CGRPO_CUDA(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &p.reserved_bytes));
  CGRPO_CUDA(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &p.used_bytes));
  CGRPO_CUDA(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &p.release_threshold));
  return p;
}

void CudaBackend::sync_and_check() {
  const cudaStream_t s = static_cast<cudaStream_t>(ctx_.stream());
  CGRPO_CUDA(cudaMemcpyAsync(err_host_, err_dev_.data(), sizeof(cuda::DeviceError), cudaMemcpyDeviceToHost, s));
  ctx_.synchronize();
  cuda::DeviceError e;
  std::memcpy(&e, err_host_, sizeof(e));
  if (e.flag == 0) return;
  // Clear it first, so a caller that catches the error (tests) can go on.
  CGRPO_CUDA(cudaMemsetAsync(err_dev_.data(), 0, sizeof(cuda::DeviceError), s));
  ctx_.synchronize();
  std::memset(err_host_, 0, sizeof(cuda::DeviceError));
  switch (e.code) {
    case cuda::kErrEmbeddingFwdId:
    case cuda::kErrEmbeddingBwdId:
      CGRPO_FAIL(e.code == cuda::kErrEmbeddingFwdId ? "embedding_fwd" : "embedding_bwd", ": token id ", e.value,
                 " at position ", e.index, " is outside the vocabulary [0, ", e.bound, ") (found on the device)",
                 hint("check the tokenizer / vocab_size in config.json"));
    case cuda::kErrTarget:
      CGRPO_FAIL("logsoftmax_gather: target ", e.value, " of row ", e.index, " is outside the vocabulary [0, ",
                 e.bound, ") (found on the device)");
    default:
      CGRPO_FAIL("CUDA kernel reported error code ", e.code, " (index ", e.index, ", value ", e.value, ")");
  }
}

size_t CudaBackend::gemm_plans_cached() const { return gemm_cache_->plans.size(); }

void CudaBackend::gemm(const TensorView& A, bool trans_a, const TensorView& B, bool trans_b, const TensorView& C,
                       float alpha, float beta) {
  CGRPO_CHECK(A.device == Device::CUDA && B.device == Device::CUDA && C.device == Device::CUDA,
              "CudaBackend::gemm needs device memory, got A ", device_name(A.device), " B ", device_name(B.device),
              " C ", device_name(C.device));
  const GemmShape s = gemm_shape(A, trans_a, B, trans_b, C);  // also checks A.dtype == B.dtype
  CGRPO_CHECK((A.dtype == DType::F32 && C.dtype == DType::F32) ||
                  (A.dtype == DType::BF16 && (C.dtype == DType::F32 || C.dtype == DType::BF16)),
              "CudaBackend::gemm supports f32 x f32 -> f32 and bf16 x bf16 -> f32 or bf16, got A ", A.str(), " B ",
              B.str(), " C ", C.str());
  CGRPO_CHECK(C.dtype != DType::BF16 || beta == 0.0f, "CudaBackend::gemm: a bf16 C ", C.str(),
              " is written (beta = 0), never accumulated; got beta = ", beta,
              hint("accumulate into an f32 C, or round once after the last gemm"));
  if (s.m == 0 || s.n == 0 || s.batch == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(ctx_.stream());
  if (s.k == 0) {
    const int64_t total = s.batch * s.m * s.n;
    const int threads = 256;
    const int blocks = static_cast<int>(std::min<int64_t>((total + threads - 1) / threads, 4096));
    if (C.dtype == DType::F32)
      scale_kernel<<<blocks, threads, 0, stream>>>(static_cast<float*>(C.data), s.batch, s.m, s.n, s.ldc, s.stride_c,
                                                   beta);
    else
      scale_kernel<<<blocks, threads, 0, stream>>>(static_cast<uint16_t*>(C.data), s.batch, s.m, s.n, s.ldc,
                                                   s.stride_c, beta);
    CGRPO_CUDA(cudaGetLastError());
    return;
  }
  const ColMajorGemm g = colmajor_gemm(s, trans_a, trans_b);
  const size_t eab = dtype_size(A.dtype), ec = dtype_size(C.dtype);
  // column-major operand a is our B, b is our A
  const std::array<uint32_t, 3> align{alignment(B.data, g.a.batch_stride, eab), alignment(A.data, g.b.batch_stride, eab),
                                      alignment(C.data, g.c.batch_stride, ec)};
  cublasLtHandle_t lt = static_cast<cublasLtHandle_t>(ctx_.cublaslt());
  const GemmCache::Plan& p = gemm_cache_->plan(ctx_, g, A.dtype, C.dtype, align, tf32_);
  if (p.has_algo) {
    CGRPO_CUBLAS(cublasLtMatmul(lt, p.op, &alpha, B.data, p.a, A.data, p.b, &beta, C.data, p.c, C.data, p.c, &p.algo,
                                ctx_.workspace(), ctx_.workspace_bytes(), stream));
    return;
  }
  // No algorithm for the batched layout (e.g. a broadcast operand some cuBLASLt versions reject):
  // one 2-D matmul per batch item.
  CGRPO_CHECK(g.batch > 1, "cuBLASLt found no algorithm for gemm A ", A.str(), (trans_a ? "^T" : ""), " B ", B.str(),
              (trans_b ? "^T" : ""), " C ", C.str());
  ColMajorGemm one = g;
  one.batch = 1;
  const GemmCache::Plan& q = gemm_cache_->plan(ctx_, one, A.dtype, C.dtype, align, tf32_);
  CGRPO_CHECK(q.has_algo, "cuBLASLt found no algorithm for gemm A ", A.str(), " B ", B.str(), " C ", C.str());
  for (int64_t i = 0; i < g.batch; ++i)
    CGRPO_CUBLAS(cublasLtMatmul(lt, q.op, &alpha, static_cast<const char*>(B.data) + i * g.a.batch_stride * eab, q.a,
                                static_cast<const char*>(A.data) + i * g.b.batch_stride * eab, q.b, &beta,
                                static_cast<char*>(C.data) + i * g.c.batch_stride * ec, q.c,
                                static_cast<char*>(C.data) + i * g.c.batch_stride * ec, q.c, &q.algo,
                                ctx_.workspace(), ctx_.workspace_bytes(), stream));
}

void CudaBackend::upload(const void* host, void* device_ptr, size_t bytes) {
  CGRPO_CUDA(cudaMemcpyAsync(device_ptr, host, bytes, cudaMemcpyHostToDevice, static_cast<cudaStream_t>(ctx_.stream())));
  ctx_.synchronize();  // the host buffer may be reused as soon as this returns (pageable memory)
}

void CudaBackend::download(const void* device_ptr, void* host, size_t bytes) {
  if (bytes) CGRPO_CUDA(cudaMemcpyAsync(host, device_ptr, bytes, cudaMemcpyDeviceToHost, static_cast<cudaStream_t>(ctx_.stream())));
  sync_and_check();
}

void CudaBackend::copy_bytes(void* dst, const void* src, size_t bytes) {
  if (bytes == 0 || dst == src) return;
  CGRPO_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, static_cast<cudaStream_t>(ctx_.stream())));
}

void CudaBackend::synchronize() { sync_and_check(); }

void CudaBackend::allow_tf32(bool on) { tf32_ = on; }

// Dense FLOP per SM per clock of the math gemm() runs (NVIDIA A100 / H100 whitepapers: A100 64 FP32 FMA,
// 512 TF32 / 1024 BF16 tensor FMA per SM per clock; H100 128 FP32 FMA, 1024 TF32 / 2048 BF16), times the SMs
// and the reported maximum clock. Unknown architectures return 0 (no MFU).
double CudaBackend::peak_flops(DType matmul) const {
  int sms = 0, khz = 0, major = 0, minor = 0, dev = ctx_.device();
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
    cudaGetLastError();
    return 0.0;
  }
  // dense FLOP per SM per clock (A100 / H100 whitepapers: 312 / 989 TFLOP/s bf16, half that TF32, 19.5 / 67 fp32)
  const bool bf16 = matmul == DType::BF16;
  double per_clock = 0;
  if (major == 8 && minor == 0) per_clock = bf16 ? 2048 : tf32_ ? 1024 : 128;
  if (major == 9 && minor == 0) per_clock = bf16 ? 4096 : tf32_ ? 2048 : 256;
  return per_clock * double(sms) * double(khz) * 1e3;
}


}  // namespace cgrpo
