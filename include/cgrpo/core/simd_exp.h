// Vectorised exp for the CPU kernels (AVX2 + FMA): exp of non-positive arguments, Cephes expf polynomial
// (about 1 ulp). Shared by the token sampler and the CpuBackend softmax / SwiGLU / log-softmax loops.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define CGRPO_SIMD_EXP 1
#endif

namespace cgrpo::simd {

#if defined(CGRPO_SIMD_EXP)
// exp(x) for x <= 0; x < -87.3 (and -inf) gives 0 (std::exp: a denormal or 0).
inline __m256 exp_neg8(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.33654f);
  const __m256 underflow = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_max_ps(x, lo);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(underflow, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

inline double hsum(__m256d v) {
  alignas(32) double t[4];
  _mm256_store_pd(t, v);
  return (t[0] + t[1]) + (t[2] + t[3]);
}
#endif

// Scalar twin of exp_neg8 for loop tails: the same polynomial, so a row's bits do not depend on where the
// 8-wide blocks end.
inline float exp_neg1(float x) {
#if defined(CGRPO_SIMD_EXP)
  alignas(32) float t[8];
  _mm256_store_ps(t, exp_neg8(_mm256_set1_ps(x)));
  return t[0];
#else
  return std::exp(x);
#endif
}

// max over z[0, n), n >= 1; NaN anywhere may or may not propagate (callers that care check the result).
inline float max_of(const float* z, int64_t n) {
  float m = z[0];
  int64_t v = 0;
#if defined(CGRPO_SIMD_EXP)
  if (n >= 32) {
    __m256 a = _mm256_loadu_ps(z), b = a, c = a, d = a;
    for (; v + 32 <= n; v += 32) {
      a = _mm256_max_ps(a, _mm256_loadu_ps(z + v));
      b = _mm256_max_ps(b, _mm256_loadu_ps(z + v + 8));
      c = _mm256_max_ps(c, _mm256_loadu_ps(z + v + 16));
      d = _mm256_max_ps(d, _mm256_loadu_ps(z + v + 24));
    }
    alignas(32) float t[8];
    _mm256_store_ps(t, _mm256_max_ps(_mm256_max_ps(a, b), _mm256_max_ps(c, d)));
    for (float x : t) m = std::max(m, x);
  }
#endif
  for (; v < n; ++v) m = std::max(m, z[v]);
  return m;
}

// sum_j x[j] y[j] in double, in a fixed order (8 lanes, then the tail): the same bits on every call.
inline double dot_f64(const float* x, const float* y, int64_t n) {
  int64_t j = 0;
  double s = 0;
#if defined(CGRPO_SIMD_EXP)
  __m256d a0 = _mm256_setzero_pd(), a1 = a0;
  for (; j + 8 <= n; j += 8) {
    const __m256 vx = _mm256_loadu_ps(x + j), vy = _mm256_loadu_ps(y + j);
    a0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(vx)), _mm256_cvtps_pd(_mm256_castps256_ps128(vy)), a0);
    a1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(vx, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(vy, 1)),
                         a1);
  }
  s = hsum(_mm256_add_pd(a0, a1));
#endif
  for (; j < n; ++j) s += double(x[j]) * y[j];
  return s;
}

// y[j] = exp(x[j] - m) for x[j] - m <= 0 (x may be -inf); returns sum y in double (fixed order: 8 lanes
// x 2 accumulators, then the tail). y may alias x.
inline double exp_sub_sum(const float* x, float m, float* y, int64_t n) {
  int64_t j = 0;
  double tail = 0;
#if defined(CGRPO_SIMD_EXP)
  const __m256 vm = _mm256_set1_ps(m);
  __m256d s0 = _mm256_setzero_pd(), s1 = s0;
  for (; j + 8 <= n; j += 8) {
    const __m256 e = exp_neg8(_mm256_sub_ps(_mm256_loadu_ps(x + j), vm));
    _mm256_storeu_ps(y + j, e);
    s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  tail = hsum(_mm256_add_pd(s0, s1));
#endif
  for (; j < n; ++j) {
    y[j] = exp_neg1(x[j] - m);
    tail += y[j];
  }
  return tail;
}

}  // namespace cgrpo::simd
