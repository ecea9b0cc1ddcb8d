#include "cgrpo/rollout/token_sampler.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "cgrpo/core/error.h"

namespace cgrpo {

TokenSampler::TokenSampler(int64_t vocab, float temperature, float top_p, int64_t top_k)
    : vocab_(vocab), temperature_(temperature), top_p_(top_p), top_k_(top_k),
      e_(static_cast<size_t>(vocab)), idx_(static_cast<size_t>(vocab)), vals_(static_cast<size_t>(vocab)) {
  CGRPO_CHECK(vocab >= 1, "token sampler: vocab = ", vocab);
}

// top_p_logits (§2.3): sort descending, remove ranks whose cumulative probability BEFORE them exceeds top_p
// (the first token crossing the threshold and the top-1 stay). Instead of a full sort this runs a quickselect
// that carries the mass of the part ranked above: O(V) expected. Rank order is (logit desc, id asc).
void TokenSampler::top_p_filter(const float* z) {
  const int64_t V = vocab_;
  int32_t* idx = idx_.data();
  const float* e = e_.data();
  for (int64_t v = 0; v < V; ++v) idx[v] = static_cast<int32_t>(v);
  const auto above = [z](int32_t a, int32_t b) { return z[a] > z[b] || (z[a] == z[b] && a < b); };
  const double target = static_cast<double>(top_p_) * sum_kept_;  // cum p > top_p  <=>  cum e > top_p * sum e
  double acc = 0.0;  // mass of idx[0, lo): the top `lo` tokens, not yet crossing
  int64_t lo = 0, hi = V;
  nkeep_ = V;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    std::swap(idx[mid], idx[hi - 1]);
    const int32_t piv = idx[hi - 1];
    int64_t g = lo;
    double mass = 0.0;
    for (int64_t i = lo; i < hi - 1; ++i)
      if (above(idx[i], piv)) {
        mass += e[idx[i]];
        std::swap(idx[i], idx[g++]);
      }
    std::swap(idx[g], idx[hi - 1]);  // pivot at rank g; idx[lo, g) rank above it
    if (acc + mass > target) {  // the crossing rank is above the pivot
      hi = g;
      nkeep_ = g;  // fallback if rounding empties the range: keep what ranks above
      continue;
    }
    acc += mass;
    if (acc + e[piv] > target) {  // the pivot is the first rank crossing top_p: keep it, drop the rest
      nkeep_ = g + 1;
      break;
    }
    acc += e[piv];
    lo = g + 1;
  }
  nkeep_ = std::max<int64_t>(nkeep_, 1);
  all_ = nkeep_ == V;
  if (!all_) {
    double s = 0.0;
    for (int64_t r = 0; r < nkeep_; ++r) s += e[idx[r]];
    sum_kept_ = s;
  }
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
  int32_t amax = 0;
  for (int32_t v = 1; v < V; ++v)
    if (z[v] > z[amax]) amax = v;
  CGRPO_CHECK(std::isfinite(z[amax]), "token sampler: the largest logit is ", z[amax],
              hint("the model produced non-finite logits"));
  const float m = z[amax];
  double sum = 0.0;
  for (int64_t v = 0; v < V; ++v) {
    e[v] = std::exp(z[v] - m);
    sum += e[v];
  }
  all_ = true;
  nkeep_ = V;
  sum_kept_ = sum;
  if (top_p_ < 1.0f) top_p_filter(z);
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
    case Confidence::NegEntropy: {  // sum p log(p + 1e-10); removed tokens have p = 0 and add 0
      double h = 0.0;
      const int64_t n = all_ ? V : nkeep_;
      for (int64_t r = 0; r < n; ++r) {
        const double p = e[all_ ? r : idx_[static_cast<size_t>(r)]] * inv;
        h += p * std::log(p + 1e-10);
      }
      conf = static_cast<float>(h);
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
