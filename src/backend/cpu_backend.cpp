#include "cgrpo/backend/cpu_backend.h"

#include <cblas.h>

#include <algorithm>

#include "cgrpo/core/dtype.h"
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
  CGRPO_CHECK((A.dtype == DType::F32 || A.dtype == DType::BF16) &&
                  (C.dtype == DType::F32 || (C.dtype == DType::BF16 && A.dtype == DType::BF16 && beta == 0.0f)),
              "CpuBackend::gemm supports f32 x f32 -> f32, bf16 x bf16 -> f32 and bf16 x bf16 -> bf16 (beta = 0), got A ",
              A.str(), " B ", B.str(), " C ", C.str(), " beta ", beta);
  const GemmShape s = gemm_shape(A, trans_a, B, trans_b, C);  // also checks A.dtype == B.dtype
  if (C.dtype == DType::BF16) {  // fp32 accumulation into a stand-in, one rounding (backend.h)
    CGRPO_CHECK(C.ndim == 2, "CpuBackend::gemm: a bf16 C must be 2-D, got ", C.str());
    const TensorView c32 = stage(C, 0, false, "gemm C");
    gemm(A, trans_a, B, trans_b, c32, alpha, 0.0f);
    unstage(c32, C);
    return;
  }
  if (A.dtype == DType::BF16) {
    // The oracle of a bf16 GEMM with fp32 accumulation: bf16 -> fp32 is exact, so sgemm on the widened operands
    // forms exact products and accumulates in fp32. Own scratch, not workspace(): the log-softmax ops hold that
    // buffer across their gemm calls.
    gemm(widen(A, wa_), trans_a, widen(B, wb_), trans_b, C, alpha, beta);
    return;
  }
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

namespace {
// b grown (never shrunk) to hold `floats` floats, at least one; the backend's scratch buffers all grow this way
float* grown(Buffer& b, size_t floats) {
  const size_t bytes = std::max<size_t>(floats, 1) * sizeof(float);
  if (b.bytes() < bytes) b = Buffer(bytes, Device::CPU, MemCategory::Workspace);
  return b.as<float>();
}
}  // namespace

// out [rows, cols] (compact) = the bf16 rows of src (row stride ld) widened exactly, rows split over the pool
void CpuBackend::widen_rows(const uint16_t* src, int64_t ld, int64_t rows, int64_t cols, float* out) {
  pool().run(rows, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = bf16_to_f32(src[r * ld + c]);
  });
}

// A compact fp32 copy of a bf16 gemm operand (2-D or 3-D, row stride >= cols, batch stride 0 = broadcast):
// [rows, cols] per distinct batch item, row stride cols.
TensorView CpuBackend::widen(const TensorView& x, Buffer& dst) {
  const int64_t rows = x.dim(-2), cols = x.dim(-1), ld = x.stride(-2);
  const int64_t items = (x.ndim == 3 && x.dim(0) > 1 && x.stride(0) != 0) ? x.dim(0) : 1;
  const uint16_t* src = static_cast<const uint16_t*>(x.data);
  float* out = grown(dst, size_t(items * rows * cols));
  for (int64_t i = 0; i < items; ++i)
    widen_rows(src + i * (x.ndim == 3 ? x.stride(0) : 0), ld, rows, cols, out + i * rows * cols);
  if (x.ndim == 2) return TensorView(out, DType::F32, {rows, cols});
  TensorView w(out, DType::F32, {x.dim(0), rows, cols});
  if (items == 1) w.strides[0] = 0;  // broadcast stays broadcast
  return w;
}

TensorView CpuBackend::stage(const TensorView& t, int slot, bool read, const char* what) {
  const int64_t rows = t.ndim == 1 ? 1 : t.dim(0), cols = t.dim(-1);
  const int64_t ld = act_row_stride(t, rows, cols, what);
  if (t.dtype == DType::F32) return t;
  float* out = grown(act_[slot], size_t(rows * cols));  // [rows, cols]
  if (read) widen_rows(static_cast<const uint16_t*>(t.data), ld, rows, cols, out);
  return t.ndim == 1 ? TensorView(out, DType::F32, {cols}) : TensorView(out, DType::F32, {rows, cols});
}

void CpuBackend::unstage(const TensorView& src, const TensorView& dst) {
  if (dst.dtype == DType::F32) return;
  const int64_t rows = dst.ndim == 1 ? 1 : dst.dim(0), cols = dst.dim(-1);
  const int64_t ld = act_row_stride(dst, rows, cols, "bf16 output");
  const float* in = static_cast<const float*>(src.data);  // compact [rows, cols]
  uint16_t* out = static_cast<uint16_t*>(dst.data);
  pool().run(rows, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = 0; c < cols; ++c) out[r * ld + c] = f32_to_bf16(in[r * cols + c]);
  });
}

}  // namespace cgrpo

namespace cgrpo {

float* CpuBackend::workspace(size_t floats) { return grown(ws_, floats); }

float* CpuBackend::thread_workspace(int tid, size_t floats) { return grown(tws_[static_cast<size_t>(tid)], floats); }

CpuBackend& host_backend() {
  static CpuBackend be(0);
  return be;
}

size_t CpuBackend::workspace_capacity_bytes() const {
  size_t n = ws_.bytes() + wa_.bytes() + wb_.bytes();
  for (const Buffer& b : act_) n += b.bytes();
  for (const Buffer& b : tws_) n += b.bytes();
  return n;
}

}  // namespace cgrpo
