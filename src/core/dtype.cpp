#include "cgrpo/core/dtype.h"

#include "cgrpo/core/error.h"

namespace cgrpo {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
  }
  return "?";
}

DType parse_dtype(std::string_view s) {
  if (s == "f32" || s == "fp32" || s == "float32" || s == "F32") return DType::F32;
  if (s == "bf16" || s == "bfloat16" || s == "BF16") return DType::BF16;
  if (s == "f16" || s == "fp16" || s == "float16" || s == "F16") return DType::F16;
  CGRPO_FAIL("unknown dtype '", s, "'", hint("use one of f32, bf16, f16"));
}

void convert(const void* src, DType st, void* dst, DType dt, size_t n) {
  if (st == dt) {
    std::memcpy(dst, src, n * dtype_size(st));
    return;
  }
  if (st == DType::F32) {
    const float* s = static_cast<const float*>(src);
    uint16_t* d = static_cast<uint16_t*>(dst);
    if (dt == DType::BF16)
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_bf16(s[i]);
    else
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_f16(s[i]);
    return;
  }
  const uint16_t* s = static_cast<const uint16_t*>(src);
  if (dt == DType::F32) {
    float* d = static_cast<float*>(dst);
    if (st == DType::BF16)
      for (size_t i = 0; i < n; ++i) d[i] = bf16_to_f32(s[i]);
    else
      for (size_t i = 0; i < n; ++i) d[i] = f16_to_f32(s[i]);
    return;
  }
  uint16_t* d = static_cast<uint16_t*>(dst);  // bf16 <-> f16 through fp32 (exact widening, one rounding)
  for (size_t i = 0; i < n; ++i)
    d[i] = st == DType::BF16 ? f32_to_f16(bf16_to_f32(s[i])) : f32_to_bf16(f16_to_f32(s[i]));
}

}  // namespace cgrpo
