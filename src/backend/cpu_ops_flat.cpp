// CpuBackend memory and flat-vector ops: host "device" copies, axpby, sum of squares, AdamW, casts.
// These are the oracle the CUDA versions are tested against; AdamW and the reductions keep the exact
// sequential order the ZeRO engine's bit-exactness tests rely on.
#include <cstring>

#include "cgrpo/backend/cpu_backend.h"
#include "cgrpo/backend/kernel_math.h"
#include "cgrpo/core/dtype.h"

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

void CpuBackend::adamw(float* p, const float* g, float* m, float* v, int64_t n,
                       const std::vector<DecaySegment>& segments, double lr, int64_t step, const AdamWParams& hp,
                       float grad_scale) {
  adamw_step(p, g, m, v, n, segments, lr, step, hp, grad_scale);
}

void CpuBackend::cast(const TensorView& src, const TensorView& dst) {
  CGRPO_CHECK(src.numel() == dst.numel() && src.contiguous() && dst.contiguous(), "cast: ", src.str(), " -> ",
              dst.str(), " must be contiguous with the same element count");
  convert(src.data, src.dtype, dst.data, dst.dtype, static_cast<size_t>(src.numel()));
}

}  // namespace cgrpo
