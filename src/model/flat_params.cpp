#include "cgrpo/model/flat_params.h"

namespace cgrpo {

FlatParams::FlatParams(const ParamLayout& layout, const void* params, DType dtype, float* grads)
    : layout_(layout),
      params_(static_cast<const char*>(params)),
      elem_bytes_(dtype_size(dtype)),
      dtype_(dtype),
      grads_(grads) {
  CGRPO_CHECK(params != nullptr, "FlatParams: null parameters");
  CGRPO_CHECK(dtype == DType::F32 || dtype == DType::BF16, "FlatParams: parameters must be f32 or bf16, got ",
              dtype_name(dtype));
}

const void* FlatParams::acquire(int unit) {
  return params_ + size_t(layout_.units()[size_t(unit)].offset) * elem_bytes_;
}

float* FlatParams::grads(int unit) {
  CGRPO_CHECK(grads_ != nullptr, "FlatParams: gradients asked of an inference-only source");
  return grads_ + layout_.units()[size_t(unit)].offset;
}

Buffer upload_params(Backend& be, const float* host, int64_t numel, DType dtype) {
  CGRPO_CHECK(dtype == DType::F32 || dtype == DType::BF16, "parameter dtype must be f32 or bf16, got ",
              dtype_name(dtype));
  Buffer params32 = be.alloc(size_t(numel) * sizeof(float), MemCategory::Params);
  be.upload(host, params32.data(), size_t(numel) * sizeof(float));
  if (dtype == DType::F32) return params32;
  Buffer p = be.alloc(size_t(numel) * dtype_size(dtype), MemCategory::Params);
  be.cast(TensorView(params32.data(), DType::F32, {numel}, be.device()),
          TensorView(p.data(), dtype, {numel}, be.device()));
  return p;  // params32 is freed on return, stream-ordered after the cast
}

}  // namespace cgrpo
