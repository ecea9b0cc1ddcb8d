#include <immintrin.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

#include "cgrpo/core/dtype.h"
#include "cgrpo/core/philox.h"

using namespace cgrpo;

namespace {
// float64 oracle for RNE to a grid: pick the nearer of the two neighbours, ties to the even one.
uint16_t bf16_oracle(float x) {
  const uint32_t u = f32_bits(x);
  const uint16_t lo = static_cast<uint16_t>(u >> 16);
  const uint16_t hi = static_cast<uint16_t>(lo + 1);
  const double dx = x, dlo = bf16_to_f32(lo);
  // IEEE overflow: the grid continues past the largest finite value with 2^128, which rounds to inf
  const double dhi = (hi & 0x7FFF) == 0x7F80 ? std::copysign(std::ldexp(1.0, 128), dx) : bf16_to_f32(hi);
  const double elo = std::fabs(dx - dlo), ehi = std::fabs(dhi - dx);
  if (elo < ehi) return lo;
  if (ehi < elo) return hi;
  return (lo & 1) ? hi : lo;
}
}  // namespace

TEST_CASE("bf16: every bf16 value survives f32 and back", "[unit][dtype]") {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = bf16_to_f32(static_cast<uint16_t>(h));
    const uint16_t back = f32_to_bf16(f);
    if (std::isnan(f))
      REQUIRE(std::isnan(bf16_to_f32(back)));
    else
      REQUIRE(back == h);
  }
}

TEST_CASE("bf16: RNE matches a float64 oracle, including exact ties", "[unit][dtype]") {
  RngStream rng(7, RngPurpose::Test, 0, 0);
  for (uint64_t i = 0; i < 200000; ++i) {
    uint32_t u = rng.u32(i);
    if ((u & 0x7F800000u) == 0x7F800000u) continue;  // skip inf/nan here
    const float x = f32_from_bits(u);
    const uint16_t want = bf16_oracle(x);
    // values that round past the largest finite become inf, which the oracle's neighbour already is
    REQUIRE(f32_to_bf16(x) == want);
  }
  CHECK(f32_to_bf16(f32_from_bits(0x3F808000u)) == 0x3F80);  // tie, even stays
  CHECK(f32_to_bf16(f32_from_bits(0x3F818000u)) == 0x3F82);  // tie, odd rounds up
  CHECK(f32_to_bf16(f32_from_bits(0x3F808001u)) == 0x3F81);  // just above the tie
  CHECK(f32_to_bf16(std::numeric_limits<float>::infinity()) == 0x7F80);
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(f32_from_bits(0x7F800001u)))));  // sNaN with low payload stays NaN
}

TEST_CASE("f16: every f16 value survives f32 and back", "[unit][dtype]") {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    const uint16_t back = f32_to_f16(f);
    if (std::isnan(f))
      REQUIRE(std::isnan(f16_to_f32(back)));
    else
      REQUIRE(back == h);
  }
  CHECK(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(f16_to_f32(0x7BFF) == 65504.0f);
  CHECK(f16_to_f32(0xFC00) == -std::numeric_limits<float>::infinity());
}

TEST_CASE("f16: RNE matches the F16C hardware conversion", "[unit][dtype]") {
  RngStream rng(11, RngPurpose::Test, 1, 0);
  auto hw = [](float x) { return static_cast<uint16_t>(_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT)); };
  for (uint64_t i = 0; i < 300000; ++i) {
    // concentrate on the f16 range (exponents 2^-30..2^17) where the interesting cases are
    const uint32_t u = rng.u32(i);
    const uint32_t exp = 97 + (u >> 24) % 48;
    const float x = f32_from_bits((u & 0x807FFFFFu) | (exp << 23));
    REQUIRE(f32_to_f16(x) == hw(x));
  }
  for (float x : {65504.0f, 65519.99f, 65520.0f, 1e9f, 5.9604645e-08f, 2.9802322e-08f, 2.9802326e-08f, 6.1035156e-05f,
                  6.1035152e-05f, 0.0f, -0.0f, 1.0f / 3.0f})
    CHECK(f32_to_f16(x) == hw(x));
}

TEST_CASE("convert: bulk paths agree with the scalar conversions", "[unit][dtype]") {
  float src[5] = {1.0f, -2.5f, 3.14159f, 1e-6f, 65000.0f};
  uint16_t b[5], h[5], hb[5];
  float back[5];
  convert(src, DType::F32, b, DType::BF16, 5);
  convert(src, DType::F32, h, DType::F16, 5);
  convert(h, DType::F16, hb, DType::BF16, 5);
  convert(b, DType::BF16, back, DType::F32, 5);
  for (int i = 0; i < 5; ++i) {
    CHECK(b[i] == f32_to_bf16(src[i]));
    CHECK(h[i] == f32_to_f16(src[i]));
    CHECK(hb[i] == f32_to_bf16(f16_to_f32(h[i])));
    CHECK(back[i] == bf16_to_f32(b[i]));
  }
  CHECK(dtype_size(DType::F32) == 4);
  CHECK(parse_dtype("bfloat16") == DType::BF16);
}
