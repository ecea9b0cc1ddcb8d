// Philox4x32-10 counter-based RNG (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11).
// Checked against Random123's published known-answer vectors (tests/unit/test_philox.cpp).
//
// All randomness in cgrpo is a pure function of (seed, purpose, step, global sample id, element index):
// key = seed, counter = {index / 4, sample, step, purpose}. Nothing depends on rank count or batch layout.
#pragma once

#include <array>
#include <cstdint>

namespace cgrpo {

using PhiloxCounter = std::array<uint32_t, 4>;
using PhiloxKey = std::array<uint32_t, 2>;

PhiloxCounter philox4x32_10(PhiloxCounter ctr, PhiloxKey key);

// Named purposes keep streams for different uses disjoint.
enum class RngPurpose : uint32_t {
  Init = 1,        // parameter initialisation (sample = tensor index)
  Sampler = 2,     // diffusion sampling (sample = global sample id, step = denoising step)
  Mask = 3,        // coupled-GRPO masks (sample = global sample id, step = iteration)
  Timestep = 4,    // t ~ U(t_min, t_max) per micro-batch
  Data = 5,        // dataset shuffle (step = epoch)
  Toy = 6,         // synthetic task generation
  Test = 99,
};

class RngStream {
 public:
  RngStream(uint64_t seed, RngPurpose purpose, uint32_t step, uint32_t sample)
      : key_{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)},
        sample_(sample), step_(step), purpose_(static_cast<uint32_t>(purpose)) {}

  uint32_t u32(uint64_t i) const;  // i-th 32-bit word of the stream
  float uniform(uint64_t i) const;  // [0, 1), 24 random bits
  double uniform_f64(uint64_t i) const;  // [0, 1), 53 bits from words 2i, 2i+1
  float normal(uint64_t i) const;   // N(0,1) by Box-Muller on words 2i, 2i+1 (cosine branch)
  // Index k with probability probs[k] / sum(probs), by inverse CDF on uniform_f64(i).
  // probs must be >= 0 with a positive finite sum.
  int64_t categorical(const float* probs, int64_t n, uint64_t i) const;

  void fill_uniform(float* out, int64_t n, uint64_t first = 0) const;
  void fill_normal(float* out, int64_t n, float mean, float std, uint64_t first = 0) const;

 private:
  PhiloxCounter block(uint64_t b) const;
  PhiloxKey key_;
  uint32_t sample_, step_, purpose_;
};

}  // namespace cgrpo
