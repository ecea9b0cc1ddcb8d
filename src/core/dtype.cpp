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

uint16_t f32_to_f16(float f) {
  const uint32_t x = f32_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t ax = x & 0x7FFFFFFFu;
  if (ax >= 0x7F800000u)  // inf, or NaN with the top payload bits kept and the quiet bit set
    return static_cast<uint16_t>(sign | 0x7C00u | (ax > 0x7F800000u ? (0x0200u | ((ax >> 13) & 0x3FFu)) : 0u));
  if (ax >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65520 rounds to inf
  if (ax < 0x38800000u) {                                               // below 2^-14: subnormal or 0
    const uint32_t e = ax >> 23;
    if (e < 102) return static_cast<uint16_t>(sign);  // < 2^-25 (2^-25 itself ties to even = 0)
    const uint32_t m = (ax & 0x7FFFFFu) | 0x800000u;  // value = m * 2^(e-150); want round(value * 2^24)
    const uint32_t shift = 126 - e;                   // 14..24
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u))) ++r;  // may carry into the smallest normal: still right
    return static_cast<uint16_t>(sign | r);
  }
  uint32_t r = ax - 0x38000000u;  // rebias exponent 127 -> 15
  const uint32_t rem = r & 0x1FFFu;
  r >>= 13;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  return static_cast<uint16_t>(sign | r);
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
  if (e == 0) {  // zero or subnormal: m * 2^-24, exact in fp32
    const float v = static_cast<float>(m) * 5.9604644775390625e-08f;
    return f32_from_bits(f32_bits(v) | sign);
  }
  if (e == 31) return f32_from_bits(sign | 0x7F800000u | (m << 13));
  return f32_from_bits(sign | ((e + 112u) << 23) | (m << 13));
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
