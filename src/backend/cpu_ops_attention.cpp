// CpuBackend bidirectional GQA attention (spec/coupled_grpo.md §1.3, §1.4). The (batch, head) pairs (backward:
// the (batch, kv head) groups, whose query heads add into one dk/dv) are spread over the backend's thread pool
// with OpenBLAS single-threaded inside; each thread holds one [L, L] score matrix (two in backward) at a time.
// A pair's result does not depend on which thread computes it. The row logsumexp is saved for backward.
// No causal mask (is_causal=False in the reference). Keys with key_mask == 0 are excluded; a query with no
// attendable key outputs zeros (safe softmax, §1.4), never NaN.
#include <cblas.h>

#include <cmath>
#include <limits>

#include "cgrpo/backend/cpu_backend.h"
#include "cgrpo/core/simd_exp.h"
#include "cpu_thread_pool.h"

namespace cgrpo {

namespace {
const float* fp(const TensorView& t) { return static_cast<const float*>(t.data); }
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Runs fn over [0, n) on the pool with OpenBLAS held to one thread (restored after).
void run_blas_serial(CpuThreadPool& pool, int64_t n, const CpuThreadPool::Fn& fn) {
  if (pool.size() == 1 || n == 1) {
    pool.run(n, fn);
    return;
  }
  const int prev = openblas_get_num_threads();
  openblas_set_num_threads(1);
  pool.run(n, fn);
  openblas_set_num_threads(prev);
}

}  // namespace

void CpuBackend::attention_fwd(const AttnShape& s, const TensorView& q, const TensorView& k, const TensorView& v,
                               const uint8_t* key_mask, const TensorView& o, float* lse) {
  const AttnLayout a = attention_layout(s, q, k, v, o);
  if (q.dtype == DType::BF16) {  // bf16 activations: q, k, v widened, o rounded once (backend.h)
    const TensorView o32 = stage(o, 3, false, "attention o");
    attention_fwd(s, stage(q, 0, true, "attention q"), stage(k, 1, true, "attention k"),
                  stage(v, 2, true, "attention v"), key_mask, o32, lse);
    unstage(o32, o);
    return;
  }
  const int64_t L = s.L, hd = s.head_dim;
  const float scale = static_cast<float>(1.0 / std::sqrt(double(hd)));
  for (int t = 0; t < pool().size(); ++t) thread_workspace(t, static_cast<size_t>(L * L));
  run_blas_serial(pool(), s.B * s.n_heads, [&](int64_t begin, int64_t end, int tid) {
    float* S = thread_workspace(tid, static_cast<size_t>(L * L));  // [L, L] scores -> probabilities
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / s.n_heads, h = bh % s.n_heads;
      const uint8_t* km = key_mask ? key_mask + b * L : nullptr;
      const int64_t g = h / a.group;  // kv head
      const TensorView Q = rows_view(fp(q) + b * L * a.ldq + h * hd, L, hd, a.ldq);  // [L, hd]
      const TensorView K = rows_view(fp(k) + b * L * a.ldk + g * hd, L, hd, a.ldk);  // [L, hd]
      const TensorView V = rows_view(fp(v) + b * L * a.ldv + g * hd, L, hd, a.ldv);  // [L, hd]
      const TensorView O = rows_view(fp(o) + b * L * a.ldo + h * hd, L, hd, a.ldo);  // [L, hd]
      const TensorView Sv = rows_view(S, L, L, L);
      gemm(Q, false, K, true, Sv, scale, 0.0f);  // S = q k^T / sqrt(hd)
      float* lrow = lse + (b * s.n_heads + h) * L;
      for (int64_t i = 0; i < L; ++i) {
        float* sr = S + i * L;
        if (km)
          for (int64_t j = 0; j < L; ++j) sr[j] = km[j] ? sr[j] : kNegInf;
        const float m = simd::max_of(sr, L);
        if (m == kNegInf) {  // every key masked: zero probabilities -> o = 0
          for (int64_t j = 0; j < L; ++j) sr[j] = 0.0f;
          lrow[i] = kNegInf;
          continue;
        }
        const double sum = simd::exp_sub_sum(sr, m, sr, L);  // exp(-inf) = 0 for masked keys
        const float inv = static_cast<float>(1.0 / sum);
        for (int64_t j = 0; j < L; ++j) sr[j] *= inv;
        lrow[i] = m + static_cast<float>(std::log(sum));
      }
      gemm(Sv, false, V, false, O, 1.0f, 0.0f);  // o = P v
    }
  });
}

// P = exp(S - lse), dP = dO v^T, D_i = sum_d dO_id O_id, dS = P (dP - D), dq = dS k / sqrt(hd),
// dk += dS^T q / sqrt(hd), dv += P^T dO (query heads of one group add into the same kv head, in head order).
void CpuBackend::attention_bwd(const AttnShape& s, const TensorView& q, const TensorView& k, const TensorView& v,
                               const uint8_t* key_mask, const TensorView& o, const float* lse, const TensorView& dout,
                               const TensorView& dq, const TensorView& dk, const TensorView& dv) {
  const AttnLayout a = attention_layout(s, q, k, v, o);
  const AttnLayout d = attention_layout(s, dq, dk, dv, dout);
  CGRPO_CHECK(dq.dtype == DType::F32, "attention_bwd: the gradients dq, dk, dv, dout must be f32, got ", dq.str());
  if (q.dtype == DType::BF16) {  // bf16 activations: q, k, v, o widened; the gradients are f32
    attention_bwd(s, stage(q, 0, true, "attention q"), stage(k, 1, true, "attention k"),
                  stage(v, 2, true, "attention v"), key_mask, stage(o, 3, true, "attention o"), lse, dout, dq, dk, dv);
    return;
  }
  const int64_t L = s.L, hd = s.head_dim;
  const float scale = static_cast<float>(1.0 / std::sqrt(double(hd)));
  for (int t = 0; t < pool().size(); ++t) thread_workspace(t, static_cast<size_t>(2 * L * L));
  run_blas_serial(pool(), s.B * s.n_kv_heads, [&](int64_t begin, int64_t end, int tid) {
    float* P = thread_workspace(tid, static_cast<size_t>(2 * L * L));  // [L, L] probabilities, [L, L] dP -> dS
    float* dP = P + L * L;
    for (int64_t bg = begin; bg < end; ++bg) {
      const int64_t b = bg / s.n_kv_heads, g = bg % s.n_kv_heads;
      const uint8_t* km = key_mask ? key_mask + b * L : nullptr;
      for (int64_t i = 0; i < L; ++i)
        for (int64_t c = 0; c < hd; ++c) {
          static_cast<float*>(dk.data)[(b * L + i) * d.ldk + g * hd + c] = 0.0f;
          static_cast<float*>(dv.data)[(b * L + i) * d.ldv + g * hd + c] = 0.0f;
        }
      for (int64_t h = g * a.group; h < (g + 1) * a.group; ++h) {
        const TensorView Q = rows_view(fp(q) + b * L * a.ldq + h * hd, L, hd, a.ldq);      // [L, hd]
        const TensorView K = rows_view(fp(k) + b * L * a.ldk + g * hd, L, hd, a.ldk);      // [L, hd]
        const TensorView V = rows_view(fp(v) + b * L * a.ldv + g * hd, L, hd, a.ldv);      // [L, hd]
        const float* O = fp(o) + b * L * a.ldo + h * hd;                                    // [L, hd]
        const TensorView dO = rows_view(fp(dout) + b * L * d.ldo + h * hd, L, hd, d.ldo);  // [L, hd]
        const TensorView dQ = rows_view(fp(dq) + b * L * d.ldq + h * hd, L, hd, d.ldq);    // [L, hd]
        const TensorView dK = rows_view(fp(dk) + b * L * d.ldk + g * hd, L, hd, d.ldk);    // [L, hd]
        const TensorView dV = rows_view(fp(dv) + b * L * d.ldv + g * hd, L, hd, d.ldv);    // [L, hd]
        const TensorView Pv = rows_view(P, L, L, L), dPv = rows_view(dP, L, L, L);
        gemm(Q, false, K, true, Pv, scale, 0.0f);
        gemm(dO, false, V, true, dPv, 1.0f, 0.0f);  // dP = dO v^T
        const float* lrow = lse + (b * s.n_heads + h) * L;
        for (int64_t i = 0; i < L; ++i) {
          float* pr = P + i * L;
          float* dr = dP + i * L;
          if (lrow[i] == kNegInf) {
            for (int64_t j = 0; j < L; ++j) pr[j] = dr[j] = 0.0f;
            continue;
          }
          if (km)
            for (int64_t j = 0; j < L; ++j) pr[j] = km[j] ? pr[j] : kNegInf;
          simd::exp_sub_sum(pr, lrow[i], pr, L);  // P = exp(S - lse), 0 for masked keys
          const float* dor = fp(dout) + (b * L + i) * d.ldo + h * hd;
          const float Df = static_cast<float>(simd::dot_f64(dor, O + i * a.ldo, hd));
          for (int64_t j = 0; j < L; ++j) dr[j] = pr[j] * (dr[j] - Df);
        }
        gemm(dPv, false, K, false, dQ, scale, 0.0f);  // dq = dS k * scale
        gemm(dPv, true, Q, false, dK, scale, 1.0f);   // dk += dS^T q * scale
        gemm(Pv, true, dO, false, dV, 1.0f, 1.0f);    // dv += P^T dO
      }
    }
  });
}

}  // namespace cgrpo
