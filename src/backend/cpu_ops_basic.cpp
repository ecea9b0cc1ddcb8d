// CpuBackend element-wise and row-wise model ops (spec/coupled_grpo.md §1.3): embedding, RMSNorm, RoPE,
// SwiGLU, bias. Row loops run on the backend's thread pool (rows split statically; reductions over rows are
// split by column instead, so every output element is summed in row order whatever the thread count); the
// matmuls of the model are gemm() calls made by the model itself.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cgrpo/backend/cpu_backend.h"
#include "cgrpo/core/dtype.h"
#include "cgrpo/core/simd_exp.h"
#include "cpu_thread_pool.h"

namespace cgrpo {

namespace {
float* f(const TensorView& t) { return static_cast<float*>(t.data); }
}  // namespace

namespace {
int64_t rows_of(const TensorView& t) { return t.ndim == 1 ? 1 : t.dim(0); }
// Rows per thread range: at least ~32K elements per range, so small ops stay on the calling thread.
int64_t grain_rows(int64_t C) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(C, 1)); }
constexpr int64_t kColGrain = 64;  // columns per range for the column-split reductions
}  // namespace

void CpuBackend::copy(const TensorView& src, const TensorView& dst) {
  const int64_t N = rows_of(dst), C = dst.dim(-1);
  const int64_t lds = row_stride(src, N, C, "copy src"), ldd = row_stride(dst, N, C, "copy dst");
  pool().run(N, [&](int64_t n0, int64_t n1, int) {
    for (int64_t n = n0; n < n1; ++n) std::memcpy(f(dst) + n * ldd, f(src) + n * lds, static_cast<size_t>(C) * 4);
  }, grain_rows(C));
}

void CpuBackend::zero(const TensorView& t) {
  const int64_t N = rows_of(t), C = t.dim(-1);
  const int64_t ld = row_stride(t, N, C, "zero");
  pool().run(N, [&](int64_t n0, int64_t n1, int) {
    for (int64_t n = n0; n < n1; ++n) std::memset(f(t) + n * ld, 0, static_cast<size_t>(C) * 4);
  }, grain_rows(C));
}

void CpuBackend::embedding_fwd(const TensorView& table, const int32_t* ids, const TensorView& out) {
  const int64_t V = table.dim(0), H = table.dim(-1), N = out.dim(0);
  const int64_t ldt = act_row_stride(table, V, H, "embedding table");  // [V, H] f32 | bf16
  const int64_t ldo = row_stride(out, N, H, "embedding out");          // [N, H]
  for (int64_t n = 0; n < N; ++n)
    CGRPO_CHECK(ids[n] >= 0 && ids[n] < V, "token id ", ids[n], " at position ", n, " is outside the vocabulary [0, ",
                V, ")", hint("check the tokenizer / vocab_size in config.json"));
  const bool wide = table.dtype == DType::BF16;
  pool().run(N, [&](int64_t n0, int64_t n1, int) {
    for (int64_t n = n0; n < n1; ++n) {
      float* o = f(out) + n * ldo;
      if (!wide) {
        std::memcpy(o, f(table) + ids[n] * ldt, static_cast<size_t>(H) * sizeof(float));
        continue;
      }
      const uint16_t* t = static_cast<const uint16_t*>(table.data) + ids[n] * ldt;
      for (int64_t j = 0; j < H; ++j) o[j] = bf16_to_f32(t[j]);  // exact
    }
  }, grain_rows(H));
}

void CpuBackend::embedding_bwd(const TensorView& dout, const int32_t* ids, const TensorView& dtable) {
  const int64_t V = dtable.dim(0), H = dtable.dim(-1), N = dout.dim(0);
  const int64_t ldt = row_stride(dtable, V, H, "embedding dtable");  // [V, H]
  const int64_t ldo = row_stride(dout, N, H, "embedding dout");      // [N, H]
  for (int64_t n = 0; n < N; ++n)
    CGRPO_CHECK(ids[n] >= 0 && ids[n] < V, "token id ", ids[n], " outside the vocabulary [0, ", V, ")");
  // Repeated ids add in position order: split by column, not by row.
  pool().run(H, [&](int64_t j0, int64_t j1, int) {
    for (int64_t n = 0; n < N; ++n) {
      float* dst = f(dtable) + ids[n] * ldt;
      const float* src = f(dout) + n * ldo;
      for (int64_t j = j0; j < j1; ++j) dst[j] += src[j];
    }
  }, N * H >= 32768 ? kColGrain : H);
}

// §1.3 RMSNorm: y = w * x * rsqrt(mean(x^2) + eps); statistics accumulated in double, stored fp32.
void CpuBackend::rmsnorm_fwd(const TensorView& x, const TensorView& w, float eps, const TensorView& y, float* rstd) {
  if (y.dtype == DType::BF16) {  // bf16 activations: the f32 op on a stand-in, rounded once (backend.h)
    const TensorView y32 = stage(y, 0, false, "rmsnorm y");
    rmsnorm_fwd(x, w, eps, y32, rstd);
    unstage(y32, y);
    return;
  }
  const int64_t N = x.dim(0), H = x.dim(-1);
  const int64_t ldx = row_stride(x, N, H, "rmsnorm x"), ldy = row_stride(y, N, H, "rmsnorm y");
  row_stride(w, 1, H, "rmsnorm w");
  const float* wp = f(w);
  pool().run(N, [&](int64_t n0, int64_t n1, int) {
    for (int64_t n = n0; n < n1; ++n) {
      const float* xr = f(x) + n * ldx;
      float* yr = f(y) + n * ldy;
      const double ss = simd::dot_f64(xr, xr, H);
      const float r = static_cast<float>(1.0 / std::sqrt(ss / double(H) + double(eps)));
      rstd[n] = r;
      for (int64_t j = 0; j < H; ++j) yr[j] = wp[j] * (xr[j] * r);
    }
  }, grain_rows(H));
}

namespace {
// sum_j dy_j w_j (x_j r) in double, fixed order (8 lanes, then the tail).
double dot_dy_w_xhat(const float* dy, const float* w, const float* x, float r, int64_t H) {
  int64_t j = 0;
  double dot = 0;
#if defined(CGRPO_SIMD_EXP)
  const __m256 vr = _mm256_set1_ps(r);
  __m256d a0 = _mm256_setzero_pd(), a1 = a0;
  for (; j + 8 <= H; j += 8) {
    const __m256 d = _mm256_loadu_ps(dy + j), ww = _mm256_loadu_ps(w + j);
    const __m256 xh = _mm256_mul_ps(_mm256_loadu_ps(x + j), vr);
    const __m256d lo = _mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(d)),
                                     _mm256_cvtps_pd(_mm256_castps256_ps128(ww)));
    const __m256d hi = _mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(d, 1)),
                                     _mm256_cvtps_pd(_mm256_extractf128_ps(ww, 1)));
    a0 = _mm256_fmadd_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(xh)), a0);
    a1 = _mm256_fmadd_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(xh, 1)), a1);
  }
  dot = simd::hsum(_mm256_add_pd(a0, a1));
#endif
  for (; j < H; ++j) dot += double(dy[j]) * w[j] * (x[j] * r);
  return dot;
}
}  // namespace

// xhat = x*rstd, g = dy*w:  dx += rstd * (g - xhat * mean(g * xhat)),  dw += sum_n dy * xhat.
void CpuBackend::rmsnorm_bwd(const TensorView& dy, const TensorView& x, const TensorView& w, const float* rstd,
                             const TensorView& dx, const TensorView& dw) {
  const int64_t N = x.dim(0), H = x.dim(-1);
  const int64_t ldx = row_stride(x, N, H, "rmsnorm x"), ldd = row_stride(dy, N, H, "rmsnorm dy");
  const int64_t ldg = row_stride(dx, N, H, "rmsnorm dx");
  row_stride(w, 1, H, "rmsnorm w");
  row_stride(dw, 1, H, "rmsnorm dw");
  const float* wp = f(w);
  float* dwp = f(dw);
  // dw: column split, each column summed over rows in order.
  pool().run(H, [&](int64_t j0, int64_t j1, int) {
    for (int64_t n = 0; n < N; ++n) {
      const float* xr = f(x) + n * ldx;
      const float* dyr = f(dy) + n * ldd;
      const float r = rstd[n];
      for (int64_t j = j0; j < j1; ++j) dwp[j] += dyr[j] * (xr[j] * r);
    }
  }, N * H >= 32768 ? kColGrain : H);
  pool().run(N, [&](int64_t n0, int64_t n1, int) {
    for (int64_t n = n0; n < n1; ++n) {
      const float* xr = f(x) + n * ldx;
      const float* dyr = f(dy) + n * ldd;
      float* dxr = f(dx) + n * ldg;
      const float r = rstd[n];
      const float mean = static_cast<float>(dot_dy_w_xhat(dyr, wp, xr, r, H) / double(H));
      for (int64_t j = 0; j < H; ++j) {
        const float xhat = xr[j] * r;
        dxr[j] += r * (dyr[j] * wp[j] - xhat * mean);
      }
    }
  }, grain_rows(H));
}

namespace {
// §1.3 RoPE, half-split: for j < d/2, (x_j, x_{j+d/2}) is rotated by angle pos*inv_freq[j]; sign = -1 undoes it.
void rope_apply(CpuThreadPool& pool, const TensorView& x, int64_t head_dim, const int32_t* pos, float theta,
                float sign) {
  CGRPO_CHECK(head_dim > 0 && head_dim % 2 == 0 && head_dim <= 1024, "rope: head_dim ", head_dim,
              " must be even and <= 1024");
  const int64_t N = x.dim(0), C = x.dim(-1);
  CGRPO_CHECK(C % head_dim == 0, "rope: width ", C, " of ", x.str(), " is not a multiple of head_dim ", head_dim);
  const int64_t ld = row_stride(x, N, C, "rope x"), half = head_dim / 2, heads = C / head_dim;
  float inv_freq[512];
  for (int64_t j = 0; j < half; ++j)
    inv_freq[j] = static_cast<float>(std::pow(double(theta), -2.0 * double(j) / double(head_dim)));
  pool.run(N, [&](int64_t n0, int64_t n1, int) {
    float c[512], s[512];
    for (int64_t n = n0; n < n1; ++n) {
      const float p = static_cast<float>(pos[n]);
      for (int64_t j = 0; j < half; ++j) {
        const float a = p * inv_freq[j];  // fp32 angle, as the reference computes freqs
        c[j] = std::cos(a);
        s[j] = sign * std::sin(a);
      }
      for (int64_t h = 0; h < heads; ++h) {
        float* xr = static_cast<float*>(x.data) + n * ld + h * head_dim;
        for (int64_t j = 0; j < half; ++j) {
          const float x1 = xr[j], x2 = xr[j + half];
          xr[j] = x1 * c[j] - x2 * s[j];         // x*cos + (-x2)*sin
          xr[j + half] = x2 * c[j] + x1 * s[j];  // x*cos + ( x1)*sin
        }
      }
    }
  }, grain_rows(C));
}
}  // namespace

void CpuBackend::rope_fwd(const TensorView& x, int64_t head_dim, const int32_t* pos, float theta) {
  const TensorView x32 = stage(x, 0, true, "rope x");
  rope_apply(pool(), x32, head_dim, pos, theta, 1.0f);
  unstage(x32, x);
}
void CpuBackend::rope_bwd(const TensorView& dx, int64_t head_dim, const int32_t* pos, float theta) {
  rope_apply(pool(), dx, head_dim, pos, theta, -1.0f);
}

namespace {
// sigmoid(x) from e = exp(-|x|): 1 / (1 + e) for x >= 0, e / (1 + e) otherwise (no overflow either way).
#if defined(CGRPO_SIMD_EXP)
inline __m256 sigmoid8(__m256 x) {
  const __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
  const __m256 e = simd::exp_neg8(_mm256_sub_ps(_mm256_setzero_ps(), ax));
  const __m256 r = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
  return _mm256_blendv_ps(_mm256_mul_ps(e, r), r, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ));
}
#endif
inline float sigmoid1(float x) {
  const float e = simd::exp_neg1(-std::fabs(x));
  const float r = 1.0f / (1.0f + e);
  return x >= 0.0f ? r : e * r;
}
}  // namespace

// §1.3 MLP: out = silu(g) * u, silu(g) = g * sigmoid(g).
void CpuBackend::swiglu_fwd(const TensorView& g, const TensorView& u, const TensorView& out) {
  if (g.dtype == DType::BF16) {  // bf16 activations: g, u widened, out rounded once (backend.h)
    CGRPO_CHECK(u.dtype == DType::BF16 && out.dtype == DType::BF16, "swiglu: g ", g.str(), ", u ", u.str(),
                " and out ", out.str(), " must share one dtype");
    const TensorView out32 = stage(out, 2, false, "swiglu out");
    swiglu_fwd(stage(g, 0, true, "swiglu g"), stage(u, 1, true, "swiglu u"), out32);
    unstage(out32, out);
    return;
  }
  const int64_t N = g.dim(0), I = g.dim(-1);
  const int64_t ldg = row_stride(g, N, I, "swiglu g"), ldu = row_stride(u, N, I, "swiglu u");
  const int64_t ldo = row_stride(out, N, I, "swiglu out");
  pool().run(N, [&](int64_t n0, int64_t n1, int) {
    for (int64_t n = n0; n < n1; ++n) {
      const float* gr = f(g) + n * ldg;
      const float* ur = f(u) + n * ldu;
      float* orow = f(out) + n * ldo;
      int64_t j = 0;
#if defined(CGRPO_SIMD_EXP)
      for (; j + 8 <= I; j += 8) {
        const __m256 x = _mm256_loadu_ps(gr + j);
        _mm256_storeu_ps(orow + j, _mm256_mul_ps(_mm256_mul_ps(x, sigmoid8(x)), _mm256_loadu_ps(ur + j)));
      }
#endif
      for (; j < I; ++j) orow[j] = gr[j] * sigmoid1(gr[j]) * ur[j];
    }
  }, grain_rows(I));
}

// d silu(g)/dg = sig(g) * (1 + g * (1 - sig(g)))
void CpuBackend::swiglu_bwd(const TensorView& dout, const TensorView& g, const TensorView& u, const TensorView& dg,
                            const TensorView& du) {
  if (g.dtype == DType::BF16) {  // bf16 activations: g, u widened; the gradients are f32
    CGRPO_CHECK(u.dtype == DType::BF16, "swiglu_bwd: g ", g.str(), " and u ", u.str(), " must share one dtype");
    swiglu_bwd(dout, stage(g, 0, true, "swiglu g"), stage(u, 1, true, "swiglu u"), dg, du);
    return;
  }
  const int64_t N = g.dim(0), I = g.dim(-1);
  const int64_t ldg = row_stride(g, N, I, "swiglu g"), ldu = row_stride(u, N, I, "swiglu u");
  const int64_t ldo = row_stride(dout, N, I, "swiglu dout"), lddg = row_stride(dg, N, I, "swiglu dg");
  const int64_t lddu = row_stride(du, N, I, "swiglu du");
  pool().run(N, [&](int64_t n0, int64_t n1, int) {
    for (int64_t n = n0; n < n1; ++n) {
      const float* gr = f(g) + n * ldg;
      const float* ur = f(u) + n * ldu;
      const float* dor = f(dout) + n * ldo;
      float* dgr = f(dg) + n * lddg;
      float* dur = f(du) + n * lddu;
      int64_t j = 0;
#if defined(CGRPO_SIMD_EXP)
      const __m256 one = _mm256_set1_ps(1.0f);
      for (; j + 8 <= I; j += 8) {  // all loads before the stores: dg/du may alias g/u
        const __m256 x = _mm256_loadu_ps(gr + j), uu = _mm256_loadu_ps(ur + j), d = _mm256_loadu_ps(dor + j);
        const __m256 sig = sigmoid8(x);
        _mm256_storeu_ps(dur + j, _mm256_mul_ps(_mm256_mul_ps(d, x), sig));
        _mm256_storeu_ps(dgr + j, _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(d, uu), sig),
                                                _mm256_fmadd_ps(x, _mm256_sub_ps(one, sig), one)));
      }
#endif
      for (; j < I; ++j) {
        const float sig = sigmoid1(gr[j]);
        const float d = dor[j], uu = ur[j], x = gr[j];  // read before writing: dg/du may alias g/u
        dur[j] = d * x * sig;
        dgr[j] = d * uu * sig * std::fma(x, 1.0f - sig, 1.0f);
      }
    }
  }, grain_rows(I));
}

void CpuBackend::bias_add(const TensorView& y, const TensorView& b) {
  if (y.dtype == DType::BF16) {
    const TensorView y32 = stage(y, 0, true, "bias_add y");
    bias_add(y32, b);
    unstage(y32, y);
    return;
  }
  const int64_t N = y.dim(0), C = y.dim(-1);
  const int64_t ld = row_stride(y, N, C, "bias_add y");
  row_stride(b, 1, C, "bias_add b");
  pool().run(N, [&](int64_t n0, int64_t n1, int) {
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t j = 0; j < C; ++j) f(y)[n * ld + j] += f(b)[j];
  }, grain_rows(C));
}

void CpuBackend::bias_bwd(const TensorView& dy, const TensorView& db) {
  const int64_t N = dy.dim(0), C = dy.dim(-1);
  const int64_t ld = row_stride(dy, N, C, "bias_bwd dy");
  row_stride(db, 1, C, "bias_bwd db");
  pool().run(C, [&](int64_t j0, int64_t j1, int) {  // column split: each column sums its rows in order
    for (int64_t n = 0; n < N; ++n)
      for (int64_t j = j0; j < j1; ++j) f(db)[j] += f(dy)[n * ld + j];
  }, N * C >= 32768 ? kColGrain : C);
}

}  // namespace cgrpo
