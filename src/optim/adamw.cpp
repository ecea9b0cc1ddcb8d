#include "cgrpo/optim/adamw.h"

#include "cgrpo/backend/kernel_math.h"
#include "cgrpo/core/error.h"

namespace cgrpo {

// The per-step scalars and the element update are kmath's (backend/kernel_math.h), shared with the CUDA
// kernel so that CPU and GPU give the same bits: every multiply-add there is an explicit fma, placed where
// GCC -mfma used to fuse this loop, so the compiler cannot choose differently on either side.
void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, const std::vector<DecaySegment>& segments,
                double lr, int64_t step, const AdamWParams& hp, float grad_scale) {
  CGRPO_CHECK(step >= 1, "AdamW step count starts at 1, got ", step);
  const kmath::AdamWConsts k = kmath::adamw_consts(lr, step, hp);
  int64_t covered = 0;
  for (const DecaySegment& s : segments) {
    CGRPO_CHECK(s.offset == covered && s.offset + s.count <= n, "AdamW decay segments do not tile the shard");
    const float keep = s.decay ? k.keep_decay : 1.0f;
    for (int64_t i = s.offset; i < s.offset + s.count; ++i) {
      const kmath::AdamWElem e = kmath::adamw_element(p[i], g[i], m[i], v[i], keep, grad_scale, k);
      p[i] = e.p;
      m[i] = e.m;
      v[i] = e.v;
    }
    covered += s.count;
  }
  CGRPO_CHECK(covered == n, "AdamW decay segments cover ", covered, " of ", n, " elements");
}

}  // namespace cgrpo
