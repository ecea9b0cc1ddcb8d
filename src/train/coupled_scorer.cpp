#include "cgrpo/train/coupled_scorer.h"

#include <algorithm>

#include "cgrpo/core/philox.h"

namespace cgrpo {

void CoupledScorer::score(const CoupledBatch& b, bool grad, float* logp_hat) {
  CGRPO_CHECK(b.B > 0 && b.K > 0 && b.P > 0, "coupled scorer: empty micro-batch");
  B_ = b.B, K_ = b.K, L_ = b.P + b.K;
  const int64_t L = L_, B = B_, K = K_;
  t_ = b.t_min + (b.t_max - b.t_min) * RngStream(b.seed, RngPurpose::Timestep, b.mask_step, uint32_t(b.sample_ids[0])).uniform_f64(0);

  // three versions, stacked: rows [v * B + i]
  ids_.resize(size_t(3 * B * L));
  m1_.resize(size_t(B * K));
  for (int64_t i = 0; i < B; ++i) {
    const RngStream r(b.seed, RngPurpose::Mask, b.mask_step, uint32_t(b.sample_ids[i]));
    for (int64_t v = 0; v < 3; ++v) std::copy_n(b.tokens + i * L, L, ids_.data() + (v * B + i) * L);
    for (int64_t k = 0; k < K; ++k) {
      const bool in_v1 = r.uniform(uint64_t(k)) < float(t_);
      m1_[size_t(i * K + k)] = in_v1;
      ids_[size_t((0 * B + i) * L + b.P + k)] = b.mask_id;
      ids_[size_t(((in_v1 ? 1 : 2) * B + i) * L + b.P + k)] = b.mask_id;
    }
  }
  if (b.key_mask) {
    kmask_.resize(size_t(3 * B * L));
    pos_.resize(size_t(3 * B * L));
    for (int64_t v = 0; v < 3; ++v) {
      std::copy_n(b.key_mask, B * L, kmask_.data() + v * B * L);
      std::copy_n(b.pos, B * L, pos_.data() + v * B * L);
    }
  }
  const ModelInput in{3 * B, L, ids_.data(), b.key_mask ? pos_.data() : nullptr, b.key_mask ? kmask_.data() : nullptr};
  m_.forward(in, grad);

  // requests: v0 at every k, then v1 where masked in v1, v2 where masked in v2 -> 2 B K rows
  rows_.clear();
  tgt_.clear();
  for (int64_t i = 0; i < B; ++i)
    for (int64_t k = 0; k < K; ++k) {
      const int32_t y = b.tokens[i * L + b.P + k];
      rows_.push_back(int32_t((0 * B + i) * L + b.P + k - 1));
      tgt_.push_back(y);
      rows_.push_back(int32_t(((m1_[size_t(i * K + k)] ? 1 : 2) * B + i) * L + b.P + k - 1));
      tgt_.push_back(y);
    }
  lp_.resize(rows_.size());
  m_.logprobs(int64_t(rows_.size()), rows_.data(), tgt_.data(), lp_.data());
  for (int64_t i = 0; i < B * K; ++i) {
    const double w = m1_[size_t(i)] ? 1.0 / t_ : 1.0 / (1.0 - t_);
    logp_hat[i] = static_cast<float>(0.5 * (double(lp_[size_t(2 * i)]) + w * double(lp_[size_t(2 * i + 1)])));
  }
  if (!grad) m_.release_held();
}

void CoupledScorer::backward(const float* g) {
  dlp_.resize(lp_.size());
  for (int64_t i = 0; i < B_ * K_; ++i) {
    const double w = m1_[size_t(i)] ? 1.0 / t_ : 1.0 / (1.0 - t_);
    dlp_[size_t(2 * i)] = static_cast<float>(0.5 * g[i]);
    dlp_[size_t(2 * i + 1)] = static_cast<float>(0.5 * w * g[i]);
  }
  m_.backward(dlp_.data());
}

}  // namespace cgrpo
