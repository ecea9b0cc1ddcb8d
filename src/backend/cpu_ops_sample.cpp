// CpuBackend::sample_rows: TokenSampler row by row, exactly what the rollout's host path does, the rows split
// over the pool's threads (each row's token and confidence depend on that row and u alone).
#include "cgrpo/backend/cpu_backend.h"
#include "cgrpo/rollout/token_sampler.h"
#include "cpu_thread_pool.h"

namespace cgrpo {

void CpuBackend::sample_rows(const TensorView& logits, const double* u, const TokenSampling& s, Confidence kind,
                             int32_t* tokens, float* confidence) {
  CGRPO_CHECK(logits.device == Device::CPU, "CpuBackend::sample_rows on device memory");
  CGRPO_CHECK(logits.ndim == 2, "sample_rows: logits ", logits.str(), " must be [R, V]");
  const int64_t R = logits.dim(0), V = logits.dim(1);
  const int64_t ld = row_stride(logits, R, V, "sample_rows: logits");
  if (R == 0) return;
  if (samplers_.empty() || sampler_vocab_ != V || sampler_params_.temperature != s.temperature ||
      sampler_params_.top_p != s.top_p || sampler_params_.top_k != s.top_k) {
    samplers_.clear();
    samplers_.resize(size_t(pool().size()));  // made by the first run that uses each thread
    sampler_vocab_ = V;
    sampler_params_ = s;
  }
  float* z = static_cast<float*>(logits.data);
  const bool draw = s.temperature > 0.0f;
  pool().run(R, [&](int64_t r0, int64_t r1, int tid) {
    std::unique_ptr<TokenSampler>& ts = samplers_[size_t(tid)];
    if (!ts) ts = std::make_unique<TokenSampler>(V, s);
    for (int64_t r = r0; r < r1; ++r) {
      const SampledToken st = ts->sample(z + r * ld, draw ? u[r] : 0.0, kind);
      tokens[r] = st.token;
      confidence[r] = st.confidence;
    }
  });
}

}  // namespace cgrpo
