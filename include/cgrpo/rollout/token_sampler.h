// spec §2.3 sample_tokens for one row of logits: temperature, then top-p on the tempered logits, then top-k,
// softmax, draw (or argmax at temperature 0), and the confidence an unmask algorithm ranks positions by.
// Workspaces are sized once for the vocabulary; sample() allocates nothing.
#pragma once

#include <cstdint>
#include <vector>

#include "cgrpo/backend/sampling.h"  // Confidence, TokenSampling

namespace cgrpo {

struct SampledToken {
  int32_t token;
  float confidence;  // 0 for Confidence::None
};

class TokenSampler {
 public:
  TokenSampler(int64_t vocab, float temperature, float top_p, int64_t top_k);
  TokenSampler(int64_t vocab, const TokenSampling& s) : TokenSampler(vocab, s.temperature, s.top_p, s.top_k) {}

  // logits [vocab] is overwritten (tempered). u in [0, 1) drives the categorical draw (unused at temperature 0).
  // Ties: top-p ranks equal logits by lower token id first; top-k keeps every logit >= the k-th largest;
  // argmax takes the lowest id.
  SampledToken sample(float* logits, double u, Confidence kind);

  // The filtered distribution of the last sample() call, [vocab], 0 for removed tokens (tests, debugging).
  void probs(float* out) const;
  int64_t kept() const { return all_ ? vocab_ : nkeep_; }  // tokens surviving top-p / top-k

 private:
  void top_p_filter(const float* z, float m);
  void top_k_filter(const float* z);

  int64_t vocab_;
  float temperature_, top_p_;
  int64_t top_k_;
  std::vector<float> e_;      // exp(z - max)
  std::vector<int32_t> idx_;  // kept token ids [0, nkeep_) when !all_
  std::vector<float> vals_;   // scratch for the k-th largest
  struct Ranked {
    uint64_t key;  // rank order as an integer
    float e;
  };
  std::vector<Ranked> ranked_;  // top-p quickselect records
  bool all_ = true;
  int64_t nkeep_ = 0;
  double sum_kept_ = 0.0;
};

}  // namespace cgrpo
