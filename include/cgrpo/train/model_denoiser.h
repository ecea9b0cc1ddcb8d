// The Dream model as the diffusion sampler sees it (rollout/denoiser.h): one no-grad forward over the canvas,
// then shifted logits (spec §1.5: the distribution of token j is the raw logits at j - 1).
// With ZeRO-3, `PinnedSource` keeps every unit gathered for a whole rollout (parallel.zero3_rollout_gather =
// once: Ψ gathered once per rollout, full parameters resident); the plain EngineParamSource gathers unit by
// unit in every denoising forward (per_unit: Ψ per forward, one unit resident).
#pragma once

#include <vector>

#include "cgrpo/model/dream_model.h"
#include "cgrpo/rollout/denoiser.h"
#include "cgrpo/shard/zero_engine.h"

namespace cgrpo {

class ModelDenoiser final : public Denoiser {
 public:
  explicit ModelDenoiser(DreamModel& m) : m_(m) {}
  int64_t vocab() const override { return m_.config().vocab_size; }
  // On a GPU: 256 rows per call, about two sampler blocks per SM of an H100 (132 SMs); the CPU keeps the default.
  int64_t preferred_chunk_rows() const override { return m_.backend().device() == Device::CPU ? 0 : 256; }
  void forward(int64_t B, int64_t L, const int32_t* tokens, const uint8_t* key_mask, const int32_t* pos) override;
  void logits(int64_t R, const int32_t* rows, const int32_t* cols, float* out) override;
  // DreamModel::sample: the logits stay in the backend's memory, Backend::sample_rows draws there
  bool sample(int64_t R, const int32_t* rows, const int32_t* cols, const double* u, const TokenSampling& s,
              Confidence kind, int32_t* tokens, float* conf) override;

 private:
  const int32_t* raw_rows(int64_t R, const int32_t* rows, const int32_t* cols);
  DreamModel& m_;
  int64_t L_ = 0;
  std::vector<int32_t> raw_;
};

// Holds every unit of an engine acquired until destroyed (ZeRO-3 "once" rollouts); a no-op below stage 3.
class PinnedSource final : public ParamSource {
 public:
  explicit PinnedSource(ZeroEngine& e);
  ~PinnedSource() override;
  PinnedSource(const PinnedSource&) = delete;
  PinnedSource& operator=(const PinnedSource&) = delete;
  const void* acquire(int u) override { return e_.param_data(u); }
  void release(int) override {}
  float* grads(int) override;
  void grads_done(int) override {}

 private:
  ZeroEngine& e_;
};

}  // namespace cgrpo
