#include "cgrpo/rollout/token_sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

#include "cgrpo/core/error.h"
#include "cgrpo/core/simd_exp.h"

namespace cgrpo {

namespace {

#if defined(__AVX2__) && defined(__FMA__)
using simd::exp_neg8;
using simd::hsum;
#endif

using simd::max_of;

// e[v] = exp(z[v] - m); returns sum e (in double) and *ez = sum e (z - m) (for the entropy).
double exp_shifted(const float* z, float m, float* e, int64_t n, double* ez) {
  int64_t v = 0;
  double sum = 0.0, sum_ez = 0.0;
#if defined(__AVX2__) && defined(__FMA__)
  const __m256 vm = _mm256_set1_ps(m);
  __m256d s0 = _mm256_setzero_pd(), s1 = s0, h0 = s0, h1 = s0;
  const auto block = [&](const float* zi, float* ei, __m256 keep) {
    const __m256 d = _mm256_and_ps(keep, _mm256_sub_ps(_mm256_loadu_ps(zi), vm));
    const __m256 x = _mm256_and_ps(keep, exp_neg8(d));
    _mm256_storeu_ps(ei, x);
    const __m256 xd = _mm256_mul_ps(x, d);
    s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(x)));
    s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)));
    h0 = _mm256_add_pd(h0, _mm256_cvtps_pd(_mm256_castps256_ps128(xd)));
    h1 = _mm256_add_pd(h1, _mm256_cvtps_pd(_mm256_extractf128_ps(xd, 1)));
  };
  const __m256 all = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  for (; v + 8 <= n; v += 8) block(z + v, e + v, all);
  if (v < n) {  // the tail through the same polynomial, padded lanes masked to 0
    alignas(32) float zt[8] = {0}, et[8];
    alignas(32) int32_t kt[8] = {0};
    for (int64_t j = 0; j < n - v; ++j) zt[j] = z[v + j], kt[j] = -1;
    block(zt, et, _mm256_castsi256_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(kt))));
    for (int64_t j = 0; j < n - v; ++j) e[v + j] = et[j];
    v = n;
  }
  sum = hsum(_mm256_add_pd(s0, s1));
  sum_ez = hsum(_mm256_add_pd(h0, h1));
#endif
  for (; v < n; ++v) {
    e[v] = std::exp(z[v] - m);
    sum += e[v];
    sum_ez += static_cast<double>(e[v]) * (z[v] - m);
  }
  *ez = sum_ez;
  return sum;
}

}  // namespace

TokenSampler::TokenSampler(int64_t vocab, float temperature, float top_p, int64_t top_k)
    : vocab_(vocab), temperature_(temperature), top_p_(top_p), top_k_(top_k),
      e_(static_cast<size_t>(vocab)), idx_(static_cast<size_t>(vocab)), vals_(static_cast<size_t>(vocab)),
      ranked_(static_cast<size_t>(vocab)) {
  CGRPO_CHECK(vocab >= 1, "token sampler: vocab = ", vocab);
}

// top_p_logits (§2.3): sort descending, remove ranks whose cumulative probability BEFORE them exceeds top_p
// (the first token crossing the threshold and the top-1 stay). Instead of a full sort this runs a quickselect
// that carries the mass of the part ranked above: O(V) expected. Rank order is (logit desc, id asc).
void TokenSampler::top_p_filter(const float* z, float m) {
  const int64_t V = vocab_;
  const float* e = e_.data();
  const double target = static_cast<double>(top_p_) * sum_kept_;  // cum p > top_p  <=>  cum e > top_p * sum e
  // Candidates: z >= m - 16. If they alone carry more than the target mass, the crossing rank is among them
  // (every other token ranks below all of them), so the quickselect need not look at the rest.
  int32_t* idx = idx_.data();
  const float cut = m - 16.0f;
  int64_t n = 0;
  for (int64_t v = 0; v < V; ++v) {
    idx[n] = static_cast<int32_t>(v);
    n += z[v] >= cut;
  }
  double cand_mass = 0.0;
  for (int64_t r = 0; r < n; ++r) cand_mass += e[idx[r]];
  if (!(cand_mass > target)) {
    for (int64_t v = 0; v < V; ++v) idx[v] = static_cast<int32_t>(v);
    n = V;
  }
  // Rank order (logit desc, id asc) as one integer: order-preserving float bits, then ~id. Contiguous
  // (key, e) records keep the partition passes sequential in memory.
  Ranked* c = ranked_.data();
  for (int64_t r = 0; r < n; ++r) {
    const int32_t v = idx[r];
    uint32_t u;
    std::memcpy(&u, z + v, 4);
    u ^= (u >> 31) ? 0xffffffffu : 0x80000000u;
    c[r] = {(static_cast<uint64_t>(u) << 32) | (0xffffffffu - static_cast<uint32_t>(v)), e[v]};
  }
  double acc = 0.0;  // mass of c[0, lo): the top `lo` tokens, not yet crossing
  int64_t lo = 0, hi = n;
  nkeep_ = n;
  while (lo < hi) {
    std::swap(c[lo + (hi - lo) / 2], c[hi - 1]);
    const Ranked piv = c[hi - 1];
    int64_t g = lo;
    double mass0 = 0.0, mass1 = 0.0;
    int64_t i = lo;
    const auto part = [&](double& mass) {  // branchless Lomuto: c[lo, g) ranks above the pivot
      const Ranked a = c[i];
      const bool above = a.key > piv.key;
      c[i] = c[g];
      c[g] = a;
      g += above;
      mass += above ? a.e : 0.0f;
      ++i;
    };
    while (i + 1 < hi - 1) part(mass0), part(mass1);
    if (i < hi - 1) part(mass0);
    const double mass = mass0 + mass1;
    std::swap(c[g], c[hi - 1]);  // pivot at rank g
    if (acc + mass > target) {  // the crossing rank is above the pivot
      hi = g;
      nkeep_ = g;  // if rounding empties the range: keep what ranks above
      continue;
    }
    acc += mass;
    if (acc + piv.e > target) {  // the pivot is the first rank crossing top_p: keep it, drop the rest
      nkeep_ = g + 1;
      break;
    }
    acc += piv.e;
    lo = g + 1;
  }
  nkeep_ = std::max<int64_t>(nkeep_, 1);
  all_ = nkeep_ == V;
  double s = 0.0;
  for (int64_t r = 0; r < nkeep_; ++r) {
    idx[r] = static_cast<int32_t>(0xffffffffu - static_cast<uint32_t>(c[r].key));
    s += c[r].e;
  }
  if (!all_) sum_kept_ = s;
}

// top_k_logits (§2.3): keep logits >= the k-th largest (removed tokens count as finfo.min, so with fewer than
// k survivors of top-p nothing more goes); ties at the k-th value all stay.
void TokenSampler::top_k_filter(const float* z) {
  if (all_) {
    for (int64_t v = 0; v < vocab_; ++v) idx_[static_cast<size_t>(v)] = static_cast<int32_t>(v);
    nkeep_ = vocab_;
  }
  if (top_k_ >= nkeep_) return;
  for (int64_t r = 0; r < nkeep_; ++r) vals_[static_cast<size_t>(r)] = z[idx_[static_cast<size_t>(r)]];
  std::nth_element(vals_.begin(), vals_.begin() + (top_k_ - 1), vals_.begin() + nkeep_, std::greater<float>());
  const float kth = vals_[static_cast<size_t>(top_k_ - 1)];
  int64_t n = 0;
  double s = 0.0;
  for (int64_t r = 0; r < nkeep_; ++r) {
    const int32_t v = idx_[static_cast<size_t>(r)];
    if (z[v] >= kth) {
      idx_[static_cast<size_t>(n++)] = v;
      s += e_[static_cast<size_t>(v)];
    }
  }
  nkeep_ = n;
  all_ = n == vocab_;
  sum_kept_ = s;
}

SampledToken TokenSampler::sample(float* z, double u, Confidence kind) {
  const int64_t V = vocab_;
  float* e = e_.data();
  if (temperature_ > 0.0f)
    for (int64_t v = 0; v < V; ++v) z[v] /= temperature_;
  const float m = max_of(z, V);
  int32_t amax = 0;  // argmax: lowest id
  while (amax < V && !(z[amax] == m)) ++amax;
  CGRPO_CHECK(amax < V && std::isfinite(m), "token sampler: the largest logit is ", m,
              hint("the model produced non-finite logits"));
  double ez = 0.0;
  const double sum = exp_shifted(z, m, e, V, &ez);
  CGRPO_CHECK(std::isfinite(sum), "token sampler: softmax sum is ", sum, hint("the model produced NaN logits"));
  all_ = true;
  nkeep_ = V;
  sum_kept_ = sum;
  if (top_p_ < 1.0f) top_p_filter(z, m);
  if (top_k_ > 0) top_k_filter(z);
  const double inv = 1.0 / sum_kept_;

  // The draw walks the kept tokens in a fixed order (a function of the logits only), so it is reproducible.
  int32_t tok = amax;
  if (temperature_ > 0.0f) {
    const double target = u * sum_kept_;
    double acc = 0.0;
    if (all_) {
      for (int32_t v = 0; v < V; ++v)
        if (e[v] > 0.0f) {
          acc += e[v];
          tok = v;
          if (target < acc) break;
        }
    } else {
      for (int64_t r = 0; r < nkeep_; ++r) {
        const int32_t v = idx_[static_cast<size_t>(r)];
        if (e[v] <= 0.0f) continue;
        acc += e[v];
        tok = v;
        if (target < acc) break;
      }
    }
  }

  float conf = 0.0f;
  switch (kind) {
    case Confidence::None:
      break;
    case Confidence::Prob:
      conf = static_cast<float>(e[tok] * inv);
      break;
    case Confidence::Margin: {  // p_(1) - p_(2); p_(1) = e[amax] = 1 (always kept)
      float second = 0.0f;
      if (all_) {
        for (int32_t v = 0; v < V; ++v)
          if (v != amax) second = std::max(second, e[v]);
      } else {
        for (int64_t r = 0; r < nkeep_; ++r)
          if (idx_[static_cast<size_t>(r)] != amax) second = std::max(second, e[idx_[static_cast<size_t>(r)]]);
      }
      conf = static_cast<float>((1.0 - second) * inv);
      break;
    }
    case Confidence::NegEntropy: {
      // sum_v p log(p + 1e-10) over the kept tokens (removed ones have p = 0 and add 0). With log p = (z - m) -
      // log S: sum p (z - m) - log S + sum p log(1 + 1e-10 / p), the last term taken to first order as
      // 1e-10 per kept token (exact to < 1e-10 per token). No log per token.
      if (!all_) {
        ez = 0.0;
        for (int64_t r = 0; r < nkeep_; ++r) {
          const int32_t v = idx_[static_cast<size_t>(r)];
          ez += static_cast<double>(e[v]) * (z[v] - m);
        }
      }
      conf = static_cast<float>(ez * inv - std::log(sum_kept_) + 1e-10 * static_cast<double>(kept()));
      break;
    }
  }
  return {tok, conf};
}

void TokenSampler::probs(float* out) const {
  const double inv = 1.0 / sum_kept_;
  if (all_) {
    for (int64_t v = 0; v < vocab_; ++v) out[v] = static_cast<float>(e_[static_cast<size_t>(v)] * inv);
    return;
  }
  std::fill(out, out + vocab_, 0.0f);
  for (int64_t r = 0; r < nkeep_; ++r) {
    const int32_t v = idx_[static_cast<size_t>(r)];
    out[v] = static_cast<float>(e_[static_cast<size_t>(v)] * inv);
  }
}

}  // namespace cgrpo
