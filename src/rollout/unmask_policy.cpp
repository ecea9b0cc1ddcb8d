#include "cgrpo/rollout/unmask_policy.h"

#include <algorithm>
#include <cmath>

namespace cgrpo {

int64_t OriginPolicy::select(const UnmaskRow& row, int32_t* chosen) {
  // spec §2.2: transfer = mask & (rand < p_transfer), p = 1 - s/t (1 at the last step); float32 compare.
  int64_t c = 0;
  for (int64_t j = 0; j < row.n; ++j)
    if (row.uniform(j) < row.fraction) chosen[c++] = static_cast<int32_t>(j);
  return c;
}

int64_t TopKPolicy::select(const UnmaskRow& row, int32_t* chosen) {
  const int64_t k = std::min(row.k, row.n);
  if (k <= 0) return 0;
  for (int64_t j = 0; j < row.n; ++j) chosen[j] = static_cast<int32_t>(j);
  const float* conf = row.confidence;
  if (alg_temp_ == 0.0f) {
    // torch.topk over the row (§2.2); ties by lower position, as [LCPP]
    std::partial_sort(chosen, chosen + k, chosen + row.n, [conf](int32_t a, int32_t b) {
      return conf[a] > conf[b] || (conf[a] == conf[b] && a < b);
    });
    return k;
  }
  // multinomial(softmax(conf / alg_temp), k) without replacement == top-k of conf / alg_temp + Gumbel noise.
  if (static_cast<int64_t>(keys_.size()) < row.n) keys_.resize(static_cast<size_t>(row.n));  // grows once
  double* key = keys_.data();
  const double inv_temp = 1.0 / alg_temp_;
  for (int64_t j = 0; j < row.n; ++j) {
    const double u = (static_cast<double>(row.uniform(j)) * 16777216.0 + 0.5) * 0x1.0p-24;  // (0, 1)
    key[j] = static_cast<double>(conf[j]) * inv_temp - std::log(-std::log(u));
  }
  std::partial_sort(chosen, chosen + k, chosen + row.n, [key](int32_t a, int32_t b) {
    return key[a] > key[b] || (key[a] == key[b] && a < b);
  });
  return k;
}

int64_t ThresholdPolicy::select(const UnmaskRow& row, int32_t* chosen) {
  if (row.n == 0) return 0;
  if (row.step == row.steps - 1) {
    for (int64_t j = 0; j < row.n; ++j) chosen[j] = static_cast<int32_t>(j);
    return row.n;
  }
  int64_t c = 0, best = 0;
  for (int64_t j = 0; j < row.n; ++j) {
    if (row.confidence[j] >= threshold_) chosen[c++] = static_cast<int32_t>(j);
    if (row.confidence[j] > row.confidence[best]) best = j;
  }
  if (c == 0) chosen[c++] = static_cast<int32_t>(best);
  return c;
}

std::unique_ptr<UnmaskPolicy> make_unmask_policy(const SamplerConfig& cfg) {
  switch (cfg.alg) {
    case UnmaskAlg::Origin: return std::make_unique<OriginPolicy>();
    case UnmaskAlg::MaskgitPlus: return std::make_unique<TopKPolicy>(Confidence::Prob, cfg.alg_temp);
    case UnmaskAlg::TopkMargin: return std::make_unique<TopKPolicy>(Confidence::Margin, cfg.alg_temp);
    case UnmaskAlg::Entropy: return std::make_unique<TopKPolicy>(Confidence::NegEntropy, cfg.alg_temp);
    case UnmaskAlg::ConfidenceThreshold: return std::make_unique<ThresholdPolicy>(cfg.confidence_threshold);
  }
  return nullptr;
}

}  // namespace cgrpo
