// kernel_math: the pure per-element and per-index logic of the CUDA kernels (src/backend/cuda_ops_*.cu),
// written once for host and device so that the CPU unit tests (tests/unit/test_kernel_math.cpp) check the
// very code the GPU runs against the CPU oracle (src/backend/cpu_ops_*.cpp, src/optim/adamw.cpp, core/dtype.h).
//
// Floating-point contraction: nvcc fuses a*b + c into one fma by default (--fmad=true) and GCC does the same
// on x86 with -mfma (-ffp-contract=fast is GCC's C++ default). Where the bits must match across CPU and GPU
// (AdamW, axpby) or where the CPU's choice is known (RMSNorm dx, RoPE), every multiply-add below is written as
// an explicit fma_f32 and the remaining operations leave no multiply feeding an add, so neither compiler has
// anything left to contract: the same operations, each rounded once, on both sides. The fma placement mirrors
// what GCC 12 -O3 -mavx2 -mfma emits for the CPU loops (checked in the disassembly and by the unit tests).
//
// Everything here is header-only, has no CUDA includes, and is plain `inline` outside nvcc.
#pragma once

#include <math.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "cgrpo/core/dtype.h"
#include "cgrpo/core/hd.h"
#include "cgrpo/optim/adamw.h"

namespace cgrpo::kmath {

// ------------------------------------------------------------------------------------------ scalars

using cgrpo::f32_bits;  // core/dtype.h, host and device
using cgrpo::f32_from_bits;

// a*b + c with one rounding (IEEE fma on both sides: FFMA on the device, vfmadd or libm fmaf on the host).
CGRPO_HD float fma_f32(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
CGRPO_HD double fma_f64(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
  return __fma_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
// a*b rounded once and never fused into a later add (the device intrinsic is exempt from contraction).
CGRPO_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

CGRPO_HD constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
CGRPO_HD constexpr int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// dtype casts: core/dtype.h's f32_to_bf16 / bf16_to_f32 / f32_to_f16 / f16_to_f32 are CGRPO_HD and run as they
// are in the cast kernel (bit-exact with the CPU, NaN payloads included).

// ------------------------------------------------------------------------------------------ index math

// The rows [0, rows) of a column reduction split into `blocks` contiguous runs of `per_block` rows (the last
// one shorter): stage 1 of the two-stage deterministic column sums (bias_bwd, RMSNorm dw) gives each run to
// one thread block, stage 2 adds the runs' partial sums in block order. Depends only on (rows, limits), never
// on the device, so the summation order, and hence the bits, are fixed for a given shape.
struct RowPartition {
  int64_t rows = 0, blocks = 0, per_block = 1;
  CGRPO_HD int64_t begin(int64_t b) const { return b * per_block; }
  CGRPO_HD int64_t end(int64_t b) const {
    const int64_t e = (b + 1) * per_block;
    return e < rows ? e : rows;
  }
};
// At most max_blocks runs of at least min_per_block rows each (fewer runs for small inputs); every run is
// non-empty. max_blocks, min_per_block >= 1.
CGRPO_HD RowPartition make_row_partition(int64_t rows, int64_t max_blocks, int64_t min_per_block) {
  RowPartition p;
  p.rows = rows;
  const int64_t spread = ceil_div(rows, max_blocks);
  p.per_block = spread > min_per_block ? spread : min_per_block;
  p.blocks = rows > 0 ? ceil_div(rows, p.per_block) : 0;
  return p;
}

// Element ownership in the row reductions (RMSNorm statistics, log-softmax max/sum) and sumsq: thread t of T
// owns the 4-element groups t, t + T, t + 2T, ... (elements 4g .. 4g+3, clipped to n) and visits its elements
// in increasing order. The float4 and the scalar load paths follow the same order, so a row's bits do not
// depend on the alignment that picked the path.
constexpr int kGroup = 4;
CGRPO_HD int64_t group_count(int64_t n) { return ceil_div(n, kGroup); }

// The 4-element vector path needs the base aligned to a whole group (16 bytes for fp32, 8 for bf16: elem_bytes
// is the element size) and every row start too (row stride and width multiple of 4).
inline bool vec4_ok(const void* p, int64_t ld = 0, size_t elem_bytes = 4) {
  return reinterpret_cast<uintptr_t>(p) % (kGroup * elem_bytes) == 0 && ld % 4 == 0;
}

// Blocks for a grid-stride loop over n items: enough to cover n (capped), at least 1.
inline int64_t grid_blocks(int64_t n, int64_t threads, int64_t max_blocks) {
  const int64_t b = ceil_div(n, threads);
  return b < 1 ? 1 : (b > max_blocks ? max_blocks : b);
}

// ------------------------------------------------------------------------------------------ RMSNorm
// §1.3: rstd = 1 / sqrt(mean(x^2) + eps), statistics in double (cpu_ops_basic.cpp rmsnorm_fwd).
CGRPO_HD float rmsnorm_rstd(double sumsq, int64_t H, float eps) {
  return static_cast<float>(1.0 / sqrt(sumsq / double(H) + double(eps)));
}
// One term of sum_j dy_j w_j (x_j r) in double: dy*w is exact in double, (x*r) is the fp32 xhat.
CGRPO_HD double rmsnorm_dot_term(double acc, float dy, float w, float x, float r) {
  return fma_f64(double(dy) * double(w), double(x * r), acc);
}
// dx += r * (dy*w - xhat*mean), xhat = x*r, with GCC's contraction: fma(r, fma(dy, w, -(xhat*mean)), dx).
CGRPO_HD float rmsnorm_dx(float dx, float dy, float w, float x, float r, float mean) {
  const float xhat = x * r;
  return fma_f32(r, fma_f32(dy, w, -(xhat * mean)), dx);
}

// ------------------------------------------------------------------------------------------ RoPE
// §1.3 half-split RoPE. inv_freq[j] = theta^(-2j/head_dim) computed in double and rounded to fp32 (host only:
// the kernel receives the fp32 table, so it is bit-identical to the CPU's); angle = pos * inv_freq in fp32.
inline float rope_inv_freq(float theta, int64_t j, int64_t head_dim) {
  return static_cast<float>(std::pow(double(theta), -2.0 * double(j) / double(head_dim)));
}
CGRPO_HD float rope_angle(int32_t pos, float inv_freq) { return static_cast<float>(pos) * inv_freq; }
// (x1, x2) = (x_j, x_{j+d/2}) rotated: y1 = x1 c - x2 s, y2 = x2 c + x1 s (s already carries the sign: -sin
// for the backward), fused as GCC fuses the CPU loop.
struct Pair {
  float a, b;
};
CGRPO_HD Pair rope_rotate(float x1, float x2, float c, float s) {
  return {fma_f32(x1, c, -(x2 * s)), fma_f32(x2, c, x1 * s)};
}

// ------------------------------------------------------------------------------------------ SwiGLU
// sigmoid(x) from e = exp(-|x|): 1/(1+e) for x >= 0, e/(1+e) otherwise (no overflow either way). The CPU uses a
// polynomial exp (simd_exp.h, ~1 ulp), the device the precise expf (<= 2 ulp): not bit-identical.
CGRPO_HD float sigmoid_f32(float x) {
  const float e = expf(-fabsf(x));
  const float r = 1.0f / (1.0f + e);
  return x >= 0.0f ? r : e * r;
}
// out = silu(g) * u = g * sigmoid(g) * u
CGRPO_HD float swiglu_out(float g, float u) { return g * sigmoid_f32(g) * u; }
// d silu(g)/dg = sig (1 + g (1 - sig)):  dg = dout u sig (1 + g (1 - sig)),  du = dout g sig
CGRPO_HD Pair swiglu_grads(float d, float g, float u) {
  const float sig = sigmoid_f32(g);
  return {d * u * sig * fma_f32(g, 1.0f - sig, 1.0f), d * g * sig};
}

// ------------------------------------------------------------------------------------------ log-softmax
// Online logsumexp state: running max m and s = sum_j exp(z_j - m) in double. The empty state is (-inf, 0).
struct LseState {
  float m;
  double s;
};
CGRPO_HD LseState lse_empty() { return {-INFINITY, 0.0}; }
// (m, s) (+) (m', s') = (M, s e^(m-M) + s' e^(m'-M)), M = max(m, m'). Two empty states give the empty state
// (no -inf - -inf). Commutative, and associative up to rounding.
CGRPO_HD LseState lse_merge(LseState a, LseState b) {
  const float m = a.m > b.m ? a.m : b.m;
  if (m == -INFINITY) return lse_empty();
  return {m, a.s * exp(double(a.m) - double(m)) + b.s * exp(double(b.m) - double(m))};
}
// logsumexp = m + log(s), -inf for the empty state.
CGRPO_HD float lse_value(LseState a) {
  if (a.m == -INFINITY) return -INFINITY;
  return static_cast<float>(double(a.m) + log(a.s));
}
// exp(z - m) of one logit against a running max (0 when m = -inf: then every z seen is -inf too).
CGRPO_HD float exp_shifted(float z, float m) { return m == -INFINITY ? 0.0f : expf(z - m); }
// dz = dlogp (onehot - softmax): -dlogp * exp(z - lse), plus dlogp at the target (as the CPU: scale, then add;
// the product is rounded before the add).
CGRPO_HD float lsg_dz(float z, float lse, float dlogp, bool is_target) {
  const float d = mul_rn(-dlogp, expf(z - lse));
  return is_target ? d + dlogp : d;
}

// ------------------------------------------------------------------------------------------ flat vectors

// y = a x + b y as GCC compiles cpu_ops_flat.cpp: fma(a, x, b*y).
CGRPO_HD float axpby_f32(float a, float x, float b, float y) { return fma_f32(a, x, b * y); }

// x^2 accumulated in double (the product of two floats is exact in double).
CGRPO_HD double sumsq_term(double acc, float x) { return fma_f64(double(x), double(x), acc); }

// The per-step scalars of optim/adamw.h, computed on the host in double and rounded once, as adamw.cpp does.
struct AdamWConsts {
  float b1, b2, one_minus_b1, one_minus_b2, bc2_sqrt, step_size, eps, keep_decay;
};
inline AdamWConsts adamw_consts(double lr, int64_t step, const AdamWParams& hp) {
  AdamWConsts k;
  k.b1 = static_cast<float>(hp.beta1);
  k.b2 = static_cast<float>(hp.beta2);
  k.one_minus_b1 = 1.0f - k.b1;
  k.one_minus_b2 = 1.0f - k.b2;
  const float bc1 = static_cast<float>(1.0 - std::pow(hp.beta1, double(step)));
  k.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(hp.beta2, double(step))));
  k.step_size = static_cast<float>(lr) / bc1;
  k.eps = static_cast<float>(hp.eps);
  k.keep_decay = static_cast<float>(1.0 - lr * hp.weight_decay);
  return k;
}
// One torch-exact AdamW element (optim/adamw.h), keep = k.keep_decay or 1 (no decay):
//   gi = g scale;  m = b1 m + (1-b1) gi;  v = b2 v + (1-b2) gi^2;  p = p keep - step_size m / (sqrt(v)/bc2 + eps)
// with the multiply-adds fused exactly as GCC fuses the original loop (fma on b1*m, b2*v and p*keep).
struct AdamWElem {
  float p, m, v;
};
CGRPO_HD AdamWElem adamw_element(float p, float g, float m, float v, float keep, float grad_scale,
                                 const AdamWConsts& k) {
  const float gi = g * grad_scale;
  const float m1 = fma_f32(k.b1, m, k.one_minus_b1 * gi);
  const float v1 = fma_f32(k.b2, v, (k.one_minus_b2 * gi) * gi);
#if defined(__CUDA_ARCH__)
  const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v1), k.bc2_sqrt), k.eps);
  const float upd = __fdiv_rn(k.step_size * m1, denom);
#else
  const float denom = std::sqrt(v1) / k.bc2_sqrt + k.eps;
  const float upd = k.step_size * m1 / denom;
#endif
  return {fma_f32(p, keep, -upd), m1, v1};
}

}  // namespace cgrpo::kmath
