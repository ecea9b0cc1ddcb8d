// The model as the diffusion sampler sees it (spec §1.3-1.5). The sampler depends on nothing else of the
// transformer; the real model is adapted to this interface, tests use deterministic fakes.
#pragma once

#include <cstdint>

#include "cgrpo/backend/sampling.h"

namespace cgrpo {

class Denoiser {
 public:
  virtual ~Denoiser() = default;
  virtual int64_t vocab() const = 0;
  // Rows per sample() / logits() call that keep the model's device busy (a GPU samples one row per thread
  // block); 0 = no preference (the sampler's default).
  virtual int64_t preferred_chunk_rows() const { return 0; }

  // One bidirectional forward over the canvas (spec §1.3, §1.4).
  //   tokens   [B, L] int32, the mask id where masked
  //   key_mask [B, L] 1 = real token (may be attended), 0 = left pad; nullptr = "full" (no mask at all).
  //            The 4-D mask is the outer product key_mask[b,i] AND key_mask[b,j] (§1.4).
  //   pos      [B, L] position ids (cumsum(key_mask) - 1, pads at 1); nullptr = 0..L-1.
  virtual void forward(int64_t B, int64_t L, const int32_t* tokens, const uint8_t* key_mask, const int32_t* pos) = 0;

  // fp32 logits of the last forward() for R (row, column) pairs, already SHIFTED per spec §1.5: out[r, :] is the
  // distribution of token (rows[r], cols[r]), i.e. the raw logits at column cols[r] - 1 (cols[r] >= 1 always:
  // column 0 is prompt). out is [R, vocab()]. May be called several times after one forward() (the sampler
  // asks in chunks to bound memory).
  virtual void logits(int64_t R, const int32_t* rows, const int32_t* cols, float* out) = 0;

  // Optional fused path: spec §2.3 sample_tokens at the same R (rows[r], cols[r]) pairs without handing the
  // logits to the caller. tokens[r], conf[r] must equal TokenSampler(vocab(), s).sample(<logits of pair r>, u[r],
  // kind) (backend.h sample_rows states how closely a device does). All pointers are host memory; u may be
  // nullptr at temperature 0. Returns false, touching nothing, when unsupported: the sampler then calls logits().
  virtual bool sample(int64_t R, const int32_t* rows, const int32_t* cols, const double* u, const TokenSampling& s,
                      Confidence kind, int32_t* tokens, float* conf) {
    (void)R, (void)rows, (void)cols, (void)u, (void)s, (void)kind, (void)tokens, (void)conf;
    return false;
  }
};

}  // namespace cgrpo
