// FlatParams: a ParamSource over one flat parameter buffer in the backend's memory, in f32 or bf16, with an
// optional flat fp32 gradient buffer: what inference (generate, eval, benchmarks) and single-process tests bind
// when no sharding layer is involved. upload_params() puts fp32 host parameters on the device in either dtype
// (bf16: Backend::cast, round to nearest even, the same rounding the ZeRO engine applies to its master weights).
#pragma once

#include "cgrpo/backend/backend.h"
#include "cgrpo/core/buffer.h"
#include "cgrpo/model/param_layout.h"
#include "cgrpo/model/param_source.h"

namespace cgrpo {

class FlatParams final : public ParamSource {
 public:
  // params: [layout.total()] of `dtype` (f32 or bf16); grads: [layout.total()] fp32 or nullptr (inference).
  // Neither is owned; both stay valid while the model is bound.
  FlatParams(const ParamLayout& layout, const void* params, DType dtype, float* grads = nullptr);
  const void* acquire(int unit) override;
  void release(int) override {}
  float* grads(int unit) override;
  void grads_done(int) override {}
  DType dtype() const { return dtype_; }

 private:
  const ParamLayout& layout_;
  const char* params_;
  size_t elem_bytes_;
  DType dtype_;
  float* grads_;
};

// [numel] parameters in `dtype` (f32 or bf16) in the backend's memory, from fp32 host values.
Buffer upload_params(Backend& be, const float* host, int64_t numel, DType dtype);
// The same, filled chunk by chunk from fill (init_params_range, ModelWeights::read): host and device staging are
// one chunk (64 MiB of fp32), not the model.
Buffer upload_params(Backend& be, int64_t numel, DType dtype, const ParamFill& fill);

}  // namespace cgrpo
