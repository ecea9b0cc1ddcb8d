// CpuBackend bidirectional GQA attention (spec/coupled_grpo.md §1.3, §1.4), one (batch, head) at a time:
// at most one [L, L] score matrix (two in backward) exists at once; the row logsumexp is saved for backward.
// No causal mask (is_causal=False in the reference). Keys with key_mask == 0 are excluded; a query with no
// attendable key outputs zeros (safe softmax, §1.4), never NaN.
#include <cmath>
#include <limits>

#include "cgrpo/backend/cpu_backend.h"

namespace cgrpo {

namespace {
struct AttnViews {
  int64_t ldq, ldk, ldv, ldo, group;
};
AttnViews check_attn(const AttnShape& s, const TensorView& q, const TensorView& k, const TensorView& v,
                     const TensorView& o) {
  CGRPO_CHECK(s.B > 0 && s.L > 0 && s.head_dim > 0 && s.n_kv_heads > 0 && s.n_heads % s.n_kv_heads == 0,
              "attention: bad shape B=", s.B, " L=", s.L, " heads=", s.n_heads, " kv_heads=", s.n_kv_heads,
              " head_dim=", s.head_dim, hint("num_attention_heads must be a multiple of num_key_value_heads"));
  const int64_t N = s.B * s.L;
  AttnViews a;
  a.ldq = row_stride(q, N, s.n_heads * s.head_dim, "attention q");     // [B*L, heads*hd]
  a.ldk = row_stride(k, N, s.n_kv_heads * s.head_dim, "attention k");  // [B*L, kv_heads*hd]
  a.ldv = row_stride(v, N, s.n_kv_heads * s.head_dim, "attention v");  // [B*L, kv_heads*hd]
  a.ldo = row_stride(o, N, s.n_heads * s.head_dim, "attention o");     // [B*L, heads*hd]
  a.group = s.n_heads / s.n_kv_heads;
  return a;
}
const float* fp(const TensorView& t) { return static_cast<const float*>(t.data); }
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
}  // namespace

void CpuBackend::attention_fwd(const AttnShape& s, const TensorView& q, const TensorView& k, const TensorView& v,
                               const uint8_t* key_mask, const TensorView& o, float* lse) {
  const AttnViews a = check_attn(s, q, k, v, o);
  const int64_t L = s.L, hd = s.head_dim;
  const float scale = static_cast<float>(1.0 / std::sqrt(double(hd)));
  float* S = workspace(static_cast<size_t>(L * L));  // [L, L] scores -> probabilities
  for (int64_t b = 0; b < s.B; ++b) {
    const uint8_t* km = key_mask ? key_mask + b * L : nullptr;
    for (int64_t h = 0; h < s.n_heads; ++h) {
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
        float m = kNegInf;
        for (int64_t j = 0; j < L; ++j) {
          if (km && !km[j]) sr[j] = kNegInf;
          m = std::max(m, sr[j]);
        }
        if (m == kNegInf) {  // every key masked: zero probabilities -> o = 0
          for (int64_t j = 0; j < L; ++j) sr[j] = 0.0f;
          lrow[i] = kNegInf;
          continue;
        }
        double sum = 0;
        for (int64_t j = 0; j < L; ++j) {
          sr[j] = std::exp(sr[j] - m);  // exp(-inf) = 0 for masked keys
          sum += sr[j];
        }
        const float inv = static_cast<float>(1.0 / sum);
        for (int64_t j = 0; j < L; ++j) sr[j] *= inv;
        lrow[i] = m + static_cast<float>(std::log(sum));
      }
      gemm(Sv, false, V, false, O, 1.0f, 0.0f);  // o = P v
    }
  }
}

// P = exp(S - lse), dP = dO v^T, D_i = sum_d dO_id O_id, dS = P (dP - D), dq = dS k / sqrt(hd),
// dk += dS^T q / sqrt(hd), dv += P^T dO (query heads of one group add into the same kv head).
void CpuBackend::attention_bwd(const AttnShape& s, const TensorView& q, const TensorView& k, const TensorView& v,
                               const uint8_t* key_mask, const TensorView& o, const float* lse, const TensorView& dout,
                               const TensorView& dq, const TensorView& dk, const TensorView& dv) {
  const AttnViews a = check_attn(s, q, k, v, o);
  const AttnViews d = check_attn(s, dq, dk, dv, dout);
  const int64_t L = s.L, hd = s.head_dim, N = s.B * L, kvw = s.n_kv_heads * hd;
  const float scale = static_cast<float>(1.0 / std::sqrt(double(hd)));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < kvw; ++j) {
      static_cast<float*>(dk.data)[n * d.ldk + j] = 0.0f;
      static_cast<float*>(dv.data)[n * d.ldv + j] = 0.0f;
    }
  float* P = workspace(static_cast<size_t>(2 * L * L));  // [L, L] probabilities, then [L, L] dP -> dS
  float* dP = P + L * L;
  for (int64_t b = 0; b < s.B; ++b) {
    const uint8_t* km = key_mask ? key_mask + b * L : nullptr;
    for (int64_t h = 0; h < s.n_heads; ++h) {
      const int64_t g = h / a.group;
      const TensorView Q = rows_view(fp(q) + b * L * a.ldq + h * hd, L, hd, a.ldq);       // [L, hd]
      const TensorView K = rows_view(fp(k) + b * L * a.ldk + g * hd, L, hd, a.ldk);       // [L, hd]
      const TensorView V = rows_view(fp(v) + b * L * a.ldv + g * hd, L, hd, a.ldv);       // [L, hd]
      const float* O = fp(o) + b * L * a.ldo + h * hd;                                     // [L, hd]
      const TensorView dO = rows_view(fp(dout) + b * L * d.ldo + h * hd, L, hd, d.ldo);   // [L, hd]
      const TensorView dQ = rows_view(fp(dq) + b * L * d.ldq + h * hd, L, hd, d.ldq);     // [L, hd]
      const TensorView dK = rows_view(fp(dk) + b * L * d.ldk + g * hd, L, hd, d.ldk);     // [L, hd]
      const TensorView dV = rows_view(fp(dv) + b * L * d.ldv + g * hd, L, hd, d.ldv);     // [L, hd]
      const TensorView Pv = rows_view(P, L, L, L), dPv = rows_view(dP, L, L, L);
      gemm(Q, false, K, true, Pv, scale, 0.0f);
      const float* lrow = lse + (b * s.n_heads + h) * L;
      for (int64_t i = 0; i < L; ++i) {
        float* pr = P + i * L;
        for (int64_t j = 0; j < L; ++j)
          pr[j] = (lrow[i] == kNegInf || (km && !km[j])) ? 0.0f : std::exp(pr[j] - lrow[i]);
      }
      gemm(dO, false, V, true, dPv, 1.0f, 0.0f);  // dP = dO v^T
      for (int64_t i = 0; i < L; ++i) {
        const float* dor = fp(dout) + (b * L + i) * d.ldo + h * hd;
        double D = 0;
        for (int64_t c = 0; c < hd; ++c) D += double(dor[c]) * O[i * a.ldo + c];
        float* pr = P + i * L;
        float* dr = dP + i * L;
        for (int64_t j = 0; j < L; ++j) dr[j] = pr[j] * (dr[j] - static_cast<float>(D));
      }
      gemm(dPv, false, K, false, dQ, scale, 0.0f);  // dq = dS k * scale
      gemm(dPv, true, Q, false, dK, scale, 1.0f);   // dk += dS^T q * scale
      gemm(Pv, true, dO, false, dV, 1.0f, 1.0f);    // dv += P^T dO
    }
  }
}

}  // namespace cgrpo
