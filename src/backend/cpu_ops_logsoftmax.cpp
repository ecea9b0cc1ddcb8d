// CpuBackend fused, vocabulary-chunked log-softmax gather (spec/coupled_grpo.md §3.6 selective_log_softmax;
// ARCHITECTURE.md §3.4). Only [R, chunk] logits exist at a time; the forward keeps a running (max, sum) per
// row (online logsumexp), the backward recomputes each chunk's logits from h and the saved lse. The GEMMs are
// multi-threaded by OpenBLAS; the row loops between them run on the backend's thread pool (rows independent).
// bf16 h and W (backend.h): the chunk gemms are this backend's bf16 x bf16 -> fp32 gemm, and the backward rounds
// each chunk's dz into a bf16 copy [R, C] (after the fp32 Z in the workspace) for the two gradient gemms.
#include <algorithm>
#include <cmath>
#include <limits>

#include "cgrpo/backend/cpu_backend.h"
#include "cgrpo/core/simd_exp.h"
#include "cpu_thread_pool.h"

namespace cgrpo {

namespace {
// The shared shape checks, then the targets (host memory here; a device backend checks them on the device).
LsgShape check_lsg(const TensorView& h, const TensorView& W, const int32_t* targets, int64_t chunk) {
  const LsgShape s = logsoftmax_gather_shape(h, W, chunk);
  for (int64_t r = 0; r < s.R; ++r)
    CGRPO_CHECK(targets[r] >= 0 && targets[r] < s.V, "logsoftmax_gather: target ", targets[r], " of row ", r,
                " is outside the vocabulary [0, ", s.V, ")");
  return s;
}
}  // namespace

size_t CpuBackend::logsoftmax_gather_workspace_bytes(int64_t R, int64_t V, int64_t chunk, DType operands) const {
  const int64_t C = std::min(chunk, V);  // Z [R, C] + (max, sum) [R] x 2 forward, or Z + bf16 dz [R, C] backward
  return static_cast<size_t>(R * C + std::max<int64_t>(2 * R, operands == DType::BF16 ? (R * C + 1) / 2 : 0)) *
         sizeof(float);
}

void CpuBackend::logsoftmax_gather_fwd(const TensorView& h, const TensorView& W, const int32_t* targets,
                                       int64_t chunk, float* logp, float* lse) {
  const LsgShape s = check_lsg(h, W, targets, chunk);
  if (s.R == 0) return;
  float* Z = workspace(logsoftmax_gather_workspace_bytes(s.R, s.V, chunk) / sizeof(float));  // [R, C]
  float* mx = Z + s.R * s.C;                                                                  // [R]
  float* sum = mx + s.R;                                                                      // [R]
  const TensorView H = rows_view(h.data, s.dtype, 0, s.R, s.H, s.ldh);
  for (int64_t r = 0; r < s.R; ++r) {
    mx[r] = -std::numeric_limits<float>::infinity();
    sum[r] = 0.0f;
  }
  for (int64_t c0 = 0; c0 < s.V; c0 += s.C) {
    const int64_t cn = std::min(s.C, s.V - c0);
    gemm(H, false, rows_view(W.data, s.dtype, c0, cn, s.H, s.ldw), true,
         rows_view(Z, s.R, cn, cn));  // z[:, c0:c0+cn] = h W[c0:c0+cn]^T
    pool().run(s.R, [&](int64_t r0, int64_t r1, int) {
      for (int64_t r = r0; r < r1; ++r) {
        float* zr = Z + r * cn;
        const int64_t t = targets[r] - c0;
        if (t >= 0 && t < cn) logp[r] = zr[t];  // the target logit, finished below
        const float m = std::max(mx[r], simd::max_of(zr, cn));
        // rescale the running sum to the new max (0 * exp(-inf) = 0); z is overwritten by exp(z - m)
        const double acc = double(sum[r] * std::exp(mx[r] - m)) + simd::exp_sub_sum(zr, m, zr, cn);
        mx[r] = m;
        sum[r] = static_cast<float>(acc);
      }
    }, std::max<int64_t>(1, 32768 / cn));
  }
  for (int64_t r = 0; r < s.R; ++r) {
    lse[r] = mx[r] + std::log(sum[r]);
    logp[r] -= lse[r];
  }
}

void CpuBackend::logsoftmax_gather_bwd(const TensorView& h, const TensorView& W, const int32_t* targets,
                                       int64_t chunk, const float* lse, const float* dlogp, const TensorView& dh,
                                       const TensorView& dW) {
  const LsgShape s = check_lsg(h, W, targets, chunk);
  const int64_t lddh = row_stride(dh, s.R, s.H, "logsoftmax_gather dh");  // [R, H]
  const int64_t lddw = row_stride(dW, s.V, s.H, "logsoftmax_gather dW");  // [V, H]
  if (s.R == 0) return;
  // [R, C] logits -> dz, then (bf16) dz rounded into Zb [R, C]
  float* Z = workspace(logsoftmax_gather_workspace_bytes(s.R, s.V, chunk, s.dtype) / sizeof(float));
  uint16_t* Zb = reinterpret_cast<uint16_t*>(Z + s.R * s.C);
  const TensorView H = rows_view(h.data, s.dtype, 0, s.R, s.H, s.ldh);
  for (int64_t c0 = 0; c0 < s.V; c0 += s.C) {
    const int64_t cn = std::min(s.C, s.V - c0);
    const TensorView Zv = rows_view(Z, s.R, cn, cn), Wc = rows_view(W.data, s.dtype, c0, cn, s.H, s.ldw);
    gemm(H, false, Wc, true, Zv);
    pool().run(s.R, [&](int64_t r0, int64_t r1, int) {
      for (int64_t r = r0; r < r1; ++r) {
        float* zr = Z + r * cn;
        simd::exp_sub_sum(zr, lse[r], zr, cn);
        const float a = -dlogp[r];
        for (int64_t j = 0; j < cn; ++j) zr[j] *= a;  // -dlogp * softmax
        const int64_t t = targets[r] - c0;
        if (t >= 0 && t < cn) zr[t] += dlogp[r];
      }
    }, std::max<int64_t>(1, 32768 / cn));
    const TensorView dZ = s.dtype == DType::F32 ? Zv : rows_view(Zb, DType::BF16, 0, s.R, cn, cn);
    if (s.dtype != DType::F32) cast(Zv, dZ);
    gemm(dZ, false, Wc, false, rows_view(static_cast<float*>(dh.data), s.R, s.H, lddh), 1.0f, 1.0f);  // dh += dz W
    gemm(dZ, true, H, false, rows_view(static_cast<float*>(dW.data) + c0 * lddw, cn, s.H, lddw), 1.0f,
         1.0f);  // dW[c0:c0+cn] += dz^T h
  }
}

}  // namespace cgrpo
