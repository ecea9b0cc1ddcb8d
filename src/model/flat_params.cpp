#include "cgrpo/model/flat_params.h"

#include <algorithm>
#include <vector>

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
  return upload_params(be, numel, dtype,
                       [host](int64_t first, int64_t count, float* out) { std::copy_n(host + first, count, out); });
}

Buffer upload_params(Backend& be, int64_t numel, DType dtype, const ParamFill& fill) {
  CGRPO_CHECK(dtype == DType::F32 || dtype == DType::BF16, "parameter dtype must be f32 or bf16, got ",
              dtype_name(dtype));
  constexpr int64_t kChunkNumel = int64_t(1) << 24;
  const int64_t chunk = std::min(numel, kChunkNumel);
  Buffer p = be.alloc(size_t(numel) * dtype_size(dtype), MemCategory::Params);
  std::vector<float> host(static_cast<size_t>(chunk));  // [chunk]
  Buffer staging;                          // bf16: the chunk in fp32 on the device, cast into p (RNE)
  if (dtype != DType::F32) staging = be.alloc(size_t(chunk) * sizeof(float), MemCategory::Workspace);
  for (int64_t first = 0; first < numel; first += chunk) {
    const int64_t n = std::min(chunk, numel - first);
    fill(first, n, host.data());
    char* into = static_cast<char*>(p.data()) + size_t(first) * dtype_size(dtype);
    if (dtype == DType::F32) {
      be.upload(host.data(), into, size_t(n) * sizeof(float));
      continue;
    }
    be.upload(host.data(), staging.data(), size_t(n) * sizeof(float));  // stream-ordered after the last cast
    be.cast(TensorView(staging.data(), DType::F32, {n}, be.device()), TensorView(into, dtype, {n}, be.device()));
  }
  return p;  // staging is freed on return, stream-ordered after the last cast
}

}  // namespace cgrpo
