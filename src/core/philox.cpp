#include "cgrpo/core/philox.h"

#include <cmath>

#include "cgrpo/core/error.h"

namespace cgrpo {

// One round: (L0, R0, L1, R1) -> (hi(M1*R1) ^ L1... ) per Random123 philox.h: the multipliers
// M0 = 0xD2511F53, M1 = 0xCD9E8D57 and Weyl key increments W0 = 0x9E3779B9, W1 = 0xBB67AE85.
PhiloxCounter philox4x32_10(PhiloxCounter c, PhiloxKey k) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = static_cast<uint64_t>(M0) * c[0];
    const uint64_t p1 = static_cast<uint64_t>(M1) * c[2];
    c = {static_cast<uint32_t>(p1 >> 32) ^ c[1] ^ k[0], static_cast<uint32_t>(p1),
         static_cast<uint32_t>(p0 >> 32) ^ c[3] ^ k[1], static_cast<uint32_t>(p0)};
    k[0] += W0;
    k[1] += W1;
  }
  return c;
}

PhiloxCounter RngStream::block(uint64_t b) const {
  CGRPO_CHECK(b <= 0xFFFFFFFFull, "RNG stream index out of range");
  return philox4x32_10({static_cast<uint32_t>(b), sample_, step_, purpose_}, key_);
}

uint32_t RngStream::u32(uint64_t i) const { return block(i >> 2)[i & 3]; }

float RngStream::uniform(uint64_t i) const { return static_cast<float>(u32(i) >> 8) * 0x1.0p-24f; }

double RngStream::uniform_f64(uint64_t i) const {
  const PhiloxCounter b = block(i >> 1);
  const int o = static_cast<int>(i & 1) * 2;
  const uint64_t bits = (static_cast<uint64_t>(b[o]) << 21) ^ (b[o + 1] >> 11);  // 53 bits
  return static_cast<double>(bits & ((1ull << 53) - 1)) * 0x1.0p-53;
}

float RngStream::normal(uint64_t i) const {
  const PhiloxCounter b = block(i >> 1);
  const int o = static_cast<int>(i & 1) * 2;
  // u1 in (0, 1] so log(u1) is finite; u2 in [0, 1).
  const double u1 = (static_cast<double>(b[o] >> 8) + 1.0) * 0x1.0p-24;
  const double u2 = static_cast<double>(b[o + 1] >> 8) * 0x1.0p-24;
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
}

int64_t RngStream::categorical(const float* probs, int64_t n, uint64_t i) const {
  CGRPO_CHECK(n > 0, "categorical over an empty set");
  double total = 0.0;
  for (int64_t k = 0; k < n; ++k) total += probs[k];
  CGRPO_CHECK(total > 0.0 && std::isfinite(total), "categorical probabilities sum to ", total);
  const double u = uniform_f64(i) * total;
  double acc = 0.0;
  int64_t last_positive = 0;
  for (int64_t k = 0; k < n; ++k) {
    if (probs[k] <= 0.0f) continue;
    acc += probs[k];
    last_positive = k;
    if (u < acc) return k;
  }
  return last_positive;  // rounding at the top end
}

void RngStream::fill_uniform(float* out, int64_t n, uint64_t first) const {
  for (int64_t j = 0; j < n; ++j) out[j] = uniform(first + static_cast<uint64_t>(j));
}

void RngStream::fill_normal(float* out, int64_t n, float mean, float std, uint64_t first) const {
  for (int64_t j = 0; j < n; ++j) out[j] = mean + std * normal(first + static_cast<uint64_t>(j));
}

}  // namespace cgrpo
