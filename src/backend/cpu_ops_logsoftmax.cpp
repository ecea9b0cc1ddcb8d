// CpuBackend fused, vocabulary-chunked log-softmax gather (spec/coupled_grpo.md §3.6 selective_log_softmax;
// ARCHITECTURE.md §3.4). Only [R, chunk] logits exist at a time; the forward keeps a running (max, sum) per
// row (online logsumexp), the backward recomputes each chunk's logits from h and the saved lse. The GEMMs are
// multi-threaded by OpenBLAS; the row loops between them run on the backend's thread pool (rows independent).
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

size_t CpuBackend::logsoftmax_gather_workspace_bytes(int64_t R, int64_t V, int64_t chunk) const {
  return static_cast<size_t>(R * std::min(chunk, V) + 2 * R) * sizeof(float);  // Z [R, C] + (max, sum) [R] x 2
}

void CpuBackend::logsoftmax_gather_fwd(const TensorView& h, const TensorView& W, const int32_t* targets,
                                       int64_t chunk, float* logp, float* lse) {
  const LsgShape s = check_lsg(h, W, targets, chunk);
  if (s.R == 0) return;
  float* Z = workspace(logsoftmax_gather_workspace_bytes(s.R, s.V, chunk) / sizeof(float));  // [R, C]
  float* mx = Z + s.R * s.C;                                                                  // [R]
  float* sum = mx + s.R;                                                                      // [R]
  const float* hp = static_cast<const float*>(h.data);
  const float* wp = static_cast<const float*>(W.data);
  for (int64_t r = 0; r < s.R; ++r) {
    mx[r] = -std::numeric_limits<float>::infinity();
    sum[r] = 0.0f;
  }
  for (int64_t c0 = 0; c0 < s.V; c0 += s.C) {
    const int64_t cn = std::min(s.C, s.V - c0);
    gemm(rows_view(hp, s.R, s.H, s.ldh), false, rows_view(wp + c0 * s.ldw, cn, s.H, s.ldw), true,
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
  float* Z = workspace(static_cast<size_t>(s.R * s.C));  // [R, C] logits -> dz
  const float* hp = static_cast<const float*>(h.data);
  const float* wp = static_cast<const float*>(W.data);
  for (int64_t c0 = 0; c0 < s.V; c0 += s.C) {
    const int64_t cn = std::min(s.C, s.V - c0);
    const TensorView Zv = rows_view(Z, s.R, cn, cn), H = rows_view(hp, s.R, s.H, s.ldh);
    const TensorView Wc = rows_view(wp + c0 * s.ldw, cn, s.H, s.ldw);
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
    gemm(Zv, false, Wc, false, rows_view(static_cast<float*>(dh.data), s.R, s.H, lddh), 1.0f, 1.0f);  // dh += dz W
    gemm(Zv, true, H, false, rows_view(static_cast<float*>(dW.data) + c0 * lddw, cn, s.H, lddw), 1.0f,
         1.0f);  // dW[c0:c0+cn] += dz^T h
  }
}

}  // namespace cgrpo
