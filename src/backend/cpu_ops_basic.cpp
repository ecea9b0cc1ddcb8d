// CpuBackend element-wise and row-wise model ops (spec/coupled_grpo.md §1.3): embedding, RMSNorm, RoPE,
// SwiGLU, bias. Plain loops; the matmuls of the model are gemm() calls made by the model itself.
#include <cmath>
#include <cstring>

#include "cgrpo/backend/cpu_backend.h"

namespace cgrpo {

namespace {
float* f(const TensorView& t) { return static_cast<float*>(t.data); }
}  // namespace

namespace {
int64_t rows_of(const TensorView& t) { return t.ndim == 1 ? 1 : t.dim(0); }
}  // namespace

void CpuBackend::copy(const TensorView& src, const TensorView& dst) {
  const int64_t N = rows_of(dst), C = dst.dim(-1);
  const int64_t lds = row_stride(src, N, C, "copy src"), ldd = row_stride(dst, N, C, "copy dst");
  for (int64_t n = 0; n < N; ++n) std::memcpy(f(dst) + n * ldd, f(src) + n * lds, static_cast<size_t>(C) * 4);
}

void CpuBackend::zero(const TensorView& t) {
  const int64_t N = rows_of(t), C = t.dim(-1);
  const int64_t ld = row_stride(t, N, C, "zero");
  for (int64_t n = 0; n < N; ++n) std::memset(f(t) + n * ld, 0, static_cast<size_t>(C) * 4);
}

void CpuBackend::embedding_fwd(const TensorView& table, const int32_t* ids, const TensorView& out) {
  const int64_t V = table.dim(0), H = table.dim(-1), N = out.dim(0);
  const int64_t ldt = row_stride(table, V, H, "embedding table");  // [V, H]
  const int64_t ldo = row_stride(out, N, H, "embedding out");      // [N, H]
  for (int64_t n = 0; n < N; ++n) {
    CGRPO_CHECK(ids[n] >= 0 && ids[n] < V, "token id ", ids[n], " at position ", n, " is outside the vocabulary [0, ",
                V, ")", hint("check the tokenizer / vocab_size in config.json"));
    const float* src = f(table) + ids[n] * ldt;
    float* dst = f(out) + n * ldo;
    for (int64_t j = 0; j < H; ++j) dst[j] = src[j];
  }
}

void CpuBackend::embedding_bwd(const TensorView& dout, const int32_t* ids, const TensorView& dtable) {
  const int64_t V = dtable.dim(0), H = dtable.dim(-1), N = dout.dim(0);
  const int64_t ldt = row_stride(dtable, V, H, "embedding dtable");  // [V, H]
  const int64_t ldo = row_stride(dout, N, H, "embedding dout");      // [N, H]
  for (int64_t n = 0; n < N; ++n) {
    CGRPO_CHECK(ids[n] >= 0 && ids[n] < V, "token id ", ids[n], " outside the vocabulary [0, ", V, ")");
    float* dst = f(dtable) + ids[n] * ldt;
    const float* src = f(dout) + n * ldo;
    for (int64_t j = 0; j < H; ++j) dst[j] += src[j];
  }
}

// §1.3 RMSNorm: y = w * x * rsqrt(mean(x^2) + eps); statistics accumulated in double, stored fp32.
void CpuBackend::rmsnorm_fwd(const TensorView& x, const TensorView& w, float eps, const TensorView& y, float* rstd) {
  const int64_t N = x.dim(0), H = x.dim(-1);
  const int64_t ldx = row_stride(x, N, H, "rmsnorm x"), ldy = row_stride(y, N, H, "rmsnorm y");
  row_stride(w, 1, H, "rmsnorm w");
  const float* wp = f(w);
  for (int64_t n = 0; n < N; ++n) {
    const float* xr = f(x) + n * ldx;
    float* yr = f(y) + n * ldy;
    double ss = 0;
    for (int64_t j = 0; j < H; ++j) ss += double(xr[j]) * xr[j];
    const float r = static_cast<float>(1.0 / std::sqrt(ss / double(H) + double(eps)));
    rstd[n] = r;
    for (int64_t j = 0; j < H; ++j) yr[j] = wp[j] * (xr[j] * r);
  }
}

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
  for (int64_t n = 0; n < N; ++n) {
    const float* xr = f(x) + n * ldx;
    const float* dyr = f(dy) + n * ldd;
    float* dxr = f(dx) + n * ldg;
    const float r = rstd[n];
    double dot = 0;
    for (int64_t j = 0; j < H; ++j) dot += double(dyr[j]) * wp[j] * (xr[j] * r);
    const float mean = static_cast<float>(dot / double(H));
    for (int64_t j = 0; j < H; ++j) {
      const float xhat = xr[j] * r;
      dxr[j] += r * (dyr[j] * wp[j] - xhat * mean);
      dwp[j] += dyr[j] * xhat;
    }
  }
}

namespace {
// §1.3 RoPE, half-split: for j < d/2, (x_j, x_{j+d/2}) is rotated by angle pos*inv_freq[j]; sign = -1 undoes it.
void rope_apply(const TensorView& x, int64_t head_dim, const int32_t* pos, float theta, float sign) {
  CGRPO_CHECK(head_dim > 0 && head_dim % 2 == 0 && head_dim <= 1024, "rope: head_dim ", head_dim,
              " must be even and <= 1024");
  const int64_t N = x.dim(0), C = x.dim(-1);
  CGRPO_CHECK(C % head_dim == 0, "rope: width ", C, " of ", x.str(), " is not a multiple of head_dim ", head_dim);
  const int64_t ld = row_stride(x, N, C, "rope x"), half = head_dim / 2, heads = C / head_dim;
  float inv_freq[512], c[512], s[512];
  for (int64_t j = 0; j < half; ++j)
    inv_freq[j] = static_cast<float>(std::pow(double(theta), -2.0 * double(j) / double(head_dim)));
  for (int64_t n = 0; n < N; ++n) {
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
}
}  // namespace

void CpuBackend::rope_fwd(const TensorView& x, int64_t head_dim, const int32_t* pos, float theta) {
  rope_apply(x, head_dim, pos, theta, 1.0f);
}
void CpuBackend::rope_bwd(const TensorView& dx, int64_t head_dim, const int32_t* pos, float theta) {
  rope_apply(dx, head_dim, pos, theta, -1.0f);
}

// §1.3 MLP: out = silu(g) * u, silu(g) = g * sigmoid(g).
void CpuBackend::swiglu_fwd(const TensorView& g, const TensorView& u, const TensorView& out) {
  const int64_t N = g.dim(0), I = g.dim(-1);
  const int64_t ldg = row_stride(g, N, I, "swiglu g"), ldu = row_stride(u, N, I, "swiglu u");
  const int64_t ldo = row_stride(out, N, I, "swiglu out");
  for (int64_t n = 0; n < N; ++n) {
    const float* gr = f(g) + n * ldg;
    const float* ur = f(u) + n * ldu;
    float* orow = f(out) + n * ldo;
    for (int64_t j = 0; j < I; ++j) orow[j] = gr[j] / (1.0f + std::exp(-gr[j])) * ur[j];
  }
}

// d silu(g)/dg = sig(g) * (1 + g * (1 - sig(g)))
void CpuBackend::swiglu_bwd(const TensorView& dout, const TensorView& g, const TensorView& u, const TensorView& dg,
                            const TensorView& du) {
  const int64_t N = g.dim(0), I = g.dim(-1);
  const int64_t ldg = row_stride(g, N, I, "swiglu g"), ldu = row_stride(u, N, I, "swiglu u");
  const int64_t ldo = row_stride(dout, N, I, "swiglu dout"), lddg = row_stride(dg, N, I, "swiglu dg");
  const int64_t lddu = row_stride(du, N, I, "swiglu du");
  for (int64_t n = 0; n < N; ++n) {
    const float* gr = f(g) + n * ldg;
    const float* ur = f(u) + n * ldu;
    const float* dor = f(dout) + n * ldo;
    float* dgr = f(dg) + n * lddg;
    float* dur = f(du) + n * lddu;
    for (int64_t j = 0; j < I; ++j) {
      const float sig = 1.0f / (1.0f + std::exp(-gr[j]));
      const float d = dor[j], uu = ur[j];  // read before writing: dg/du may alias g/u
      dur[j] = d * gr[j] * sig;
      dgr[j] = d * uu * sig * (1.0f + gr[j] * (1.0f - sig));
    }
  }
}

void CpuBackend::bias_add(const TensorView& y, const TensorView& b) {
  const int64_t N = y.dim(0), C = y.dim(-1);
  const int64_t ld = row_stride(y, N, C, "bias_add y");
  row_stride(b, 1, C, "bias_add b");
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < C; ++j) f(y)[n * ld + j] += f(b)[j];
}

void CpuBackend::bias_bwd(const TensorView& dy, const TensorView& db) {
  const int64_t N = dy.dim(0), C = dy.dim(-1);
  const int64_t ld = row_stride(dy, N, C, "bias_bwd dy");
  row_stride(db, 1, C, "bias_bwd db");
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < C; ++j) f(db)[j] += f(dy)[n * ld + j];
}

}  // namespace cgrpo
