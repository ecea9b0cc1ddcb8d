// Element types and IEEE round-to-nearest-even conversions (fp32 <-> bf16, fp32 <-> fp16).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace cgrpo {

enum class DType : uint8_t { F32 = 0, BF16 = 1, F16 = 2 };

constexpr size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }
const char* dtype_name(DType t);        // "f32" | "bf16" | "f16"
DType parse_dtype(std::string_view s);  // accepts f32/fp32/float32, bf16/bfloat16, f16/fp16/float16; fatal otherwise

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// bf16 = top half of an fp32. RNE on the dropped 16 bits; NaN stays NaN (quiet bit forced).
inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float bf16_to_f32(uint16_t h) { return f32_from_bits(static_cast<uint32_t>(h) << 16); }

// IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa. RNE, gradual underflow, overflow -> inf.
uint16_t f32_to_f16(float f);
float f16_to_f32(uint16_t h);

// Bulk conversion between any two dtypes (same dtype = memcpy). n = element count.
void convert(const void* src, DType src_t, void* dst, DType dst_t, size_t n);

}  // namespace cgrpo
