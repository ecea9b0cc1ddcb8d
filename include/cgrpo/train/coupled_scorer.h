// Coupled per-token log-prob estimator of Coupled-GRPO (spec/coupled_grpo.md §3.6) for one micro-batch.
//
// For rows b with prompt columns < P and completion tokens y_k at columns P + k, k < K, one scalar
// t ~ U(t_min, t_max) per micro-batch and R_bk ~ U[0, 1):
//   v0: every completion token masked       v1: masked where R < t       v2: masked where R >= t
//   logp_hat_k = ( l0_k + (R_k < t ? l1_k / t : l2_k / (1 - t)) ) / 2,   l_v = log p(y_k | v)
// The three versions run as ONE forward of 3B rows (as the reference concatenates them). Log-probs are read
// at the shifted rows (raw logits at column j - 1 predict token j, §1.5), only where a version is used.
// Randomness: t from RngStream(seed, Timestep, mask_step, first sample id of the micro-batch), R_bk from
// RngStream(seed, Mask, mask_step, sample id b) indexed by k: nothing depends on rank count or batch layout.
// Unlike the reference, the key mask and position ids of left-padded prompts are kept (as in generation).
#pragma once

#include <cstdint>
#include <vector>

#include "cgrpo/model/dream_model.h"

namespace cgrpo {

struct CoupledBatch {
  int64_t B = 0, P = 0, K = 0;         // rows, prompt columns (left-padded), completion tokens
  const int32_t* tokens = nullptr;     // [B, P + K] prompt + completion
  const uint8_t* key_mask = nullptr;   // [B, P + K] or nullptr
  const int32_t* pos = nullptr;        // [B, P + K] or nullptr
  const int64_t* sample_ids = nullptr; // [B] global sample ids
  int32_t mask_id = 0;
  uint64_t seed = 0;
  uint32_t mask_step = 0;              // which mask draw: the round's iteration (spec §3.7, fixed quirk)
  double t_min = 0.2, t_max = 0.8;
};

class CoupledScorer {
 public:
  explicit CoupledScorer(DreamModel& m) : m_(m) {}
  // logp_hat [B, K]. grad = true keeps what backward() needs (call it before the next score()).
  void score(const CoupledBatch& b, bool grad, float* logp_hat);
  // d(sum_k g_bk logp_hat_bk) / dθ, += into the model's gradients.
  void backward(const float* g);
  double last_t() const { return t_; }

 private:
  DreamModel& m_;
  int64_t B_ = 0, K_ = 0, L_ = 0;
  double t_ = 0;
  std::vector<int32_t> ids_, pos_, rows_, tgt_;
  std::vector<uint8_t> kmask_, m1_;  // m1_[b, k]: token masked in v1
  std::vector<float> lp_, dlp_;
};

}  // namespace cgrpo
