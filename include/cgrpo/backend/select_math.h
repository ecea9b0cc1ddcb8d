// Host + device arithmetic of the token sampler's device path (Backend::sample_rows, spec §2.3): the
// order-preserving integer keys of floats, the 64-bit rank key (logit desc, id asc), the exp polynomial of
// the CPU sampler bit for bit, the radix-select digit / bucket decisions and the position inside a tie group.
// Everything here is exact integer logic or IEEE-rounded arithmetic written out operation by operation (no
// contraction of a*b+c into fma unless an fma is spelled out), so the host and the device compute the same bits.
// Used by the CUDA kernel (src/backend/cuda_sample.cu) and tested on the CPU (tests/unit/test_select_math.cpp).
#pragma once

#include <cstdint>
#include <cstring>
#ifndef __CUDA_ARCH__
#include <cmath>
#endif

#include "cgrpo/backend/kernel_math.h"
#include "cgrpo/core/dtype.h"
#include "cgrpo/core/hd.h"  // CGRPO_HD: __host__ __device__ inline under nvcc, inline elsewhere

namespace cgrpo::sel {

// ------------------------------------------------------------------------------------------------ bits, keys

using cgrpo::f32_bits;  // core/dtype.h, host and device
CGRPO_HD float bits_f32(uint32_t u) { return f32_from_bits(u); }

CGRPO_HD uint64_t f64_bits(double x) {
#ifdef __CUDA_ARCH__
  return static_cast<uint64_t>(__double_as_longlong(x));
#else
  uint64_t u;
  std::memcpy(&u, &x, 8);
  return u;
#endif
}

CGRPO_HD bool finite_f32(float x) { return (f32_bits(x) & 0x7f800000u) != 0x7f800000u; }
CGRPO_HD bool finite_f64(double x) { return (f64_bits(x) & 0x7ff0000000000000ull) != 0x7ff0000000000000ull; }
CGRPO_HD bool is_nan_f32(float x) { return (f32_bits(x) & 0x7fffffffu) > 0x7f800000u; }

// Order-preserving key: for non-NaN a, b: a < b (with -0 < +0) <=> float_key(a) < float_key(b). The same
// transform as TokenSampler's top-p records (flip all bits of negatives, the sign bit of non-negatives).
CGRPO_HD uint32_t float_key(float x) {
  const uint32_t u = f32_bits(x);
  return u ^ ((u >> 31) ? 0xffffffffu : 0x80000000u);
}
CGRPO_HD float key_float(uint32_t k) { return bits_f32((k >> 31) ? (k ^ 0x80000000u) : ~k); }

constexpr uint32_t kKeyNegZero = 0x7fffffffu;  // float_key(-0.0f)
constexpr uint32_t kKeyPosZero = 0x80000000u;  // float_key(+0.0f)

// The key of the float VALUE: -0 and +0 share one key, so key order is exactly float comparison order
// (top-k compares logits with >=, where -0 == +0).
CGRPO_HD uint32_t value_key(float x) {
  const uint32_t k = float_key(x);
  return k == kKeyNegZero ? kKeyPosZero : k;
}
// The smallest float_key whose value key is >= vk: {x : value_key(x) >= vk} == {x : float_key(x) >= this}.
CGRPO_HD uint32_t value_key_floor(uint32_t vk) { return vk == kKeyPosZero ? kKeyNegZero : vk; }

// Rank order of top-p and of the draw (logit desc, id asc) as one integer, larger = ranked first.
CGRPO_HD uint64_t rank_key(uint32_t key, uint32_t id) {
  return (static_cast<uint64_t>(key) << 32) | static_cast<uint64_t>(0xffffffffu - id);
}
CGRPO_HD uint32_t rank_key_id(uint64_t rk) { return 0xffffffffu - static_cast<uint32_t>(rk); }
// The smallest rank key of any token whose float_key is >= key: a lower bound that keeps a whole tie group.
CGRPO_HD uint64_t rank_floor(uint32_t key) { return static_cast<uint64_t>(key) << 32; }

// ------------------------------------------------------------------------------------------------ arithmetic
// Single IEEE operations, never fused with a neighbour (nvcc contracts a*b+c by default; these do not).
using kmath::fma_f32;  // kernel_math.h: a*b + c rounded once
using kmath::fma_f64;
using kmath::mul_rn;

CGRPO_HD float sub_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
CGRPO_HD float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
CGRPO_HD float div_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
CGRPO_HD double dadd(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
CGRPO_HD double dmul(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
CGRPO_HD double log_f64(double x) {
#ifdef __CUDA_ARCH__
  return ::log(x);
#else
  return std::log(x);
#endif
}
CGRPO_HD double floor_f64(double x) {
#ifdef __CUDA_ARCH__
  return ::floor(x);
#else
  return std::floor(x);
#endif
}

// exp(x) for x <= 0, bit-identical to one lane of simd::exp_neg8 (core/simd_exp.h: Cephes expf, max(x, lo),
// round-to-nearest-even range reduction, FMA polynomial, x < -87.33654 gives 0). NaN gives exp(-87.33654) as
// there (max_ps(NaN, lo) = lo).
CGRPO_HD float exp_nonpos(float x) {
  const float lo = -87.33654f;
  const bool underflow = x < lo;  // _CMP_LT_OQ: false for NaN
  x = x > lo ? x : lo;            // _mm256_max_ps(x, lo)
#ifdef __CUDA_ARCH__
  const float n = rintf(mul_rn(x, 1.44269504088896341f));
#else
  const float n = std::nearbyint(mul_rn(x, 1.44269504088896341f));
#endif
  float r = fma_f32(-n, 0.693359375f, x);
  r = fma_f32(-n, -2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = fma_f32(p, r, 1.3981999507e-3f);
  p = fma_f32(p, r, 8.3334519073e-3f);
  p = fma_f32(p, r, 4.1665795894e-2f);
  p = fma_f32(p, r, 1.6666665459e-1f);
  p = fma_f32(p, r, 5.0000001201e-1f);
  p = fma_f32(mul_rn(p, r), r, add_rn(r, 1.0f));
  const float scale = bits_f32(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
  return underflow ? 0.0f : mul_rn(p, scale);
}

// One token's terms of a row's softmax statistics, d = z - m and e = exp(d): s += e and ez += e * d, the latter as
// one fma (`fused`: the pass over the kept tokens) or a rounded product then an add (the pass over all tokens), as
// the CPU sampler computes each. Returns e.
CGRPO_HD float add_stat_terms(float z, float m, bool fused, double& s, double& ez) {
  const float d = sub_rn(z, m);
  const float e = exp_nonpos(d);
  s = dadd(s, double(e));
  ez = fused ? fma_f64(double(e), double(d), ez) : dadd(ez, double(mul_rn(e, d)));
  return e;
}

// ------------------------------------------------------------------------------------------------ radix select
// MSB-first radix select over 32-bit keys, kRadixBits per pass, larger keys first ("above"). A pass histograms
// the candidates whose key starts with `prefix` (the digits chosen so far) by their next digit; pick_* chooses
// the bucket and accumulates what ranks above it. After kRadixPasses passes `prefix` is one whole key.
constexpr int kRadixBits = 4;
constexpr int kRadixBuckets = 1 << kRadixBits;
constexpr int kRadixPasses = 32 / kRadixBits;

struct RadixSelect {
  uint32_t prefix = 0;      // chosen digits in place, lower bits 0
  int pass = 0;             // digits chosen so far
  double above = 0.0;       // mass of the candidates whose key is above every key with this prefix
  int64_t count_above = 0;  // their number
  double mass = 0.0;        // mass of the chosen bucket (after the last pass: of the whole tie group)
  int64_t count = 0;        // candidates in the chosen bucket (after the last pass: the tie group size)
  bool crossed = true;      // false once a mass pick found no bucket crossing the target (rounding; see pick_mass)

  CGRPO_HD bool done() const { return pass == kRadixPasses; }
  CGRPO_HD int shift() const { return 32 - kRadixBits * (pass + 1); }
  // Does key start with the digits chosen so far?
  CGRPO_HD bool matches(uint32_t key) const {
    if (pass == 0) return true;
    const int s = 32 - kRadixBits * pass;
    return (key >> s) == (prefix >> s);
  }
  CGRPO_HD int digit(uint32_t key) const { return static_cast<int>((key >> shift()) & (kRadixBuckets - 1)); }
  // The histogram bucket of token v with logit z in this pass over the tokens of rank key >= lo, keyed by
  // value_key (value_keys) or float_key; -1 when it is not counted (below lo, or outside the chosen prefix).
  CGRPO_HD int bucket_of(float z, uint32_t v, uint64_t lo, bool value_keys) const {
    const uint32_t k = float_key(z);
    if (rank_key(k, v) < lo) return -1;
    const uint32_t kk = value_keys ? value_key(z) : k;
    return matches(kk) ? digit(kk) : -1;
  }

  // Mass select: the bucket holding the first rank whose cumulative mass (in rank order, from the top) exceeds
  // target: the first bucket d, from the top, with above + mass[d] > target. When none does (the cumulative
  // sums disagree with the total by rounding, or target >= total) the lowest bucket with mass > 0 is taken: the
  // last ranked token with mass, the fallback of TokenSampler's draw.
  CGRPO_HD void pick_mass(const double* bmass, const uint32_t* bcount, double target) {
    double acc = above;
    int64_t cnt = count_above;
    int chosen = -1;
    for (int d = kRadixBuckets - 1; d >= 0; --d) {
      const double next = dadd(acc, bmass[d]);
      if (next > target) {
        chosen = d;
        break;
      }
      acc = next;
      cnt += bcount[d];
    }
    if (chosen < 0) {
      crossed = false;
      chosen = 0;
      for (int d = 0; d < kRadixBuckets; ++d)
        if (bmass[d] > 0.0) {
          chosen = d;
          break;
        }
      acc = above;
      cnt = count_above;
      for (int d = kRadixBuckets - 1; d > chosen; --d) {
        acc = dadd(acc, bmass[d]);
        cnt += bcount[d];
      }
    }
    take(chosen, acc, cnt, bmass[chosen], bcount[chosen]);
  }

  // Count select: the bucket holding the k-th largest key (k >= 1, counted with multiplicity): the first
  // bucket d, from the top, with count_above + count[d] >= k. (k beyond the candidates: the lowest non-empty.)
  CGRPO_HD void pick_count(const uint32_t* bcount, int64_t k) {
    int64_t cnt = count_above;
    int chosen = -1;
    for (int d = kRadixBuckets - 1; d >= 0; --d) {
      if (cnt + bcount[d] >= k) {
        chosen = d;
        break;
      }
      cnt += bcount[d];
    }
    if (chosen < 0) {
      chosen = 0;
      for (int d = 0; d < kRadixBuckets; ++d)
        if (bcount[d] > 0) {
          chosen = d;
          break;
        }
      cnt = count_above;
      for (int d = kRadixBuckets - 1; d > chosen; --d) cnt += bcount[d];
    }
    take(chosen, above, cnt, 0.0, bcount[chosen]);
  }

 private:
  CGRPO_HD void take(int d, double acc, int64_t cnt, double m, uint32_t c) {
    prefix |= static_cast<uint32_t>(d) << shift();
    above = acc;
    count_above = cnt;
    mass = m;
    count = c;
    ++pass;
  }
};

// Inside a tie group of n tokens of equal mass e (> 0) ranked after `above`: the smallest j in [0, n) with
// above + (j + 1) e > target (the first crossing rank, in id order within the group); n - 1 when none does.
// (j + 1) e is exact in double (24-bit e times an integer below 2^29), so the test rounds once.
CGRPO_HD int64_t tie_index(double above, double e, int64_t n, double target) {
  if (n <= 1 || !(e > 0.0)) return n > 0 ? n - 1 : 0;
  const double q = (target - above) / e;
  int64_t j = 0;
  if (q >= static_cast<double>(n - 1)) {
    j = n - 1;
  } else if (q > 0.0) {
    j = static_cast<int64_t>(floor_f64(q));
  }
  while (j > 0 && fma_f64(static_cast<double>(j), e, above) > target) --j;
  while (j < n - 1 && !(fma_f64(static_cast<double>(j + 1), e, above) > target)) ++j;
  return j;
}

}  // namespace cgrpo::sel
