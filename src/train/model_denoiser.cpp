#include "cgrpo/train/model_denoiser.h"

namespace cgrpo {

void ModelDenoiser::forward(int64_t B, int64_t L, const int32_t* tokens, const uint8_t* key_mask, const int32_t* pos) {
  L_ = L;
  const ModelInput in{B, L, tokens, pos, key_mask};
  m_.forward(in, false);
}

const int32_t* ModelDenoiser::raw_rows(int64_t R, const int32_t* rows, const int32_t* cols) {
  raw_.resize(size_t(R));
  for (int64_t r = 0; r < R; ++r) {
    CGRPO_CHECK(cols[r] >= 1, "logits requested for column 0, which has no shifted prediction");
    raw_[size_t(r)] = int32_t(rows[r] * L_ + cols[r] - 1);  // raw logits at j - 1 predict token j (spec §1.5)
  }
  return raw_.data();
}

void ModelDenoiser::logits(int64_t R, const int32_t* rows, const int32_t* cols, float* out) {
  m_.logits(R, raw_rows(R, rows, cols), out);
}

bool ModelDenoiser::sample(int64_t R, const int32_t* rows, const int32_t* cols, const double* u,
                           const TokenSampling& s, Confidence kind, int32_t* tokens, float* conf) {
  m_.sample(R, raw_rows(R, rows, cols), u, s, kind, tokens, conf);
  return true;
}

PinnedSource::PinnedSource(ZeroEngine& e) : e_(e) {
  for (int u = 0; u < e_.num_units(); ++u) e_.acquire(u);
}

PinnedSource::~PinnedSource() {
  for (int u = 0; u < e_.num_units(); ++u) e_.release(u);
}

float* PinnedSource::grads(int) { CGRPO_FAIL("PinnedSource serves inference only"); }

}  // namespace cgrpo
