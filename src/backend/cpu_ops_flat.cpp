// CpuBackend memory and flat-vector ops: host "device" copies, axpby, sum of squares, AdamW, casts.
// These are the oracle the CUDA versions are tested against; AdamW and the reductions keep the exact
// sequential order the ZeRO engine's bit-exactness tests rely on.
#include <algorithm>
#include <cstring>

#include "cgrpo/backend/cpu_backend.h"
#include "cgrpo/backend/kernel_math.h"
#include "cgrpo/core/dtype.h"
#include "cpu_thread_pool.h"

namespace cgrpo {

void CpuBackend::upload(const void* host, void* dev, size_t bytes) {
  if (bytes) std::memcpy(dev, host, bytes);
}
void CpuBackend::download(const void* dev, void* host, size_t bytes) {
  if (bytes) std::memcpy(host, dev, bytes);
}
void CpuBackend::copy_bytes(void* dst, const void* src, size_t bytes) {
  if (bytes && dst != src) std::memmove(dst, src, bytes);
}

void CpuBackend::axpby(int64_t n, float a, const float* x, float b, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = kmath::axpby_f32(a, x[i], b, y[i]);  // fma(a, x, b y), as the CUDA kernel
}

double CpuBackend::sumsq(const float* x, int64_t n) {
  double acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += double(x[i]) * x[i];
  return acc;
}

// Every element's update is kmath::adamw_element of its own values, so ranges of [0, n) can go to the pool's
// threads with the same bits (the ZeRO stages' shard offsets already split the loop anywhere).
void CpuBackend::adamw(float* p, const float* g, float* m, float* v, int64_t n,
                       const std::vector<DecaySegment>& segments, double lr, int64_t step, const AdamWParams& hp,
                       float grad_scale) {
  constexpr int64_t kGrain = int64_t(1) << 16;
  if (n < 2 * kGrain || pool().size() < 2) return adamw_step(p, g, m, v, n, segments, lr, step, hp, grad_scale);
  int64_t covered = 0;  // the tiling adamw_step checks, checked here once (a worker thread must not throw)
  for (const DecaySegment& s : segments) {
    CGRPO_CHECK(s.offset == covered && s.count >= 0, "AdamW decay segments do not tile the shard");
    covered += s.count;
  }
  CGRPO_CHECK(covered == n, "AdamW decay segments cover ", covered, " of ", n, " elements");
  pool().run(n, [&](int64_t i0, int64_t i1, int) {
    std::vector<DecaySegment> part;  // the segments clipped to [i0, i1), relative to i0
    for (const DecaySegment& s : segments) {
      const int64_t lo = std::max(s.offset, i0), hi = std::min(s.offset + s.count, i1);
      if (hi > lo) part.push_back({lo - i0, hi - lo, s.decay});
    }
    adamw_step(p + i0, g + i0, m + i0, v + i0, i1 - i0, part, lr, step, hp, grad_scale);
  }, kGrain);
}

void CpuBackend::cast(const TensorView& src, const TensorView& dst) {
  CGRPO_CHECK(src.numel() == dst.numel() && src.contiguous() && dst.contiguous(), "cast: ", src.str(), " -> ",
              dst.str(), " must be contiguous with the same element count");
  convert(src.data, src.dtype, dst.data, dst.dtype, static_cast<size_t>(src.numel()));
}

}  // namespace cgrpo
