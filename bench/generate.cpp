// bench_generate: diffusion generation throughput of a preset on a backend at batch 1..16, and the sampler's
// overhead: time per denoising step against one bare forward of the same canvas.
// Usage: bench_generate [preset=small] [new_tokens=32] [prompt_len=32] [backend=cpu|cuda] [dtype=f32|bf16]
//   dtype bf16: bf16 weights and activations (parallel.param_dtype = compute_dtype = bf16)
#include <cstdio>
#include <cstdlib>

#include <memory>

#include "cgrpo/backend/backend.h"
#include "cgrpo/config/config.h"
#include "cgrpo/core/timer.h"
#include "cgrpo/model/flat_params.h"
#include "cgrpo/rollout/sampler.h"
#include "cgrpo/train/model_denoiser.h"

using namespace cgrpo;

int main(int argc, char** argv) {
  const std::string preset = argc > 1 ? argv[1] : "small";
  const int64_t K = argc > 2 ? std::atoll(argv[2]) : 32, P = argc > 3 ? std::atoll(argv[3]) : 32;
  const ModelConfig cfg = ModelConfig::preset(preset);
  const std::unique_ptr<Backend> bep = make_backend(argc > 4 ? argv[4] : "cpu", 0, 0);
  Backend& be = *bep;
  const DType dtype = parse_dtype(argc > 5 ? argv[5] : "f32");
  DreamModel model(cfg, be);
  std::vector<float> host(size_t(model.layout().total()));
  init_params(model.layout(), host.data(), 1);
  const Buffer params = upload_params(be, host.data(), int64_t(host.size()), dtype);
  FlatParams source(model.layout(), params.data(), dtype);
  model.set_param_dtype(dtype);
  model.set_compute_dtype(dtype);
  model.bind(&source, false);
  ModelDenoiser den(model);
  RolloutSection rs;
  rs.steps = K;
  rs.max_new_tokens = K;
  rs.temperature = 1.0;
  rs.top_p = 0.95;
  rs.alg = "entropy";
  const SamplerConfig sc = SamplerConfig::from_rollout(rs, int32_t(cfg.mask_token_id), int32_t(cfg.pad_token_id), 1);
  std::printf("preset %s (%lld params), prompt %lld + %lld new tokens, %lld steps, backend %s, %s\n", preset.c_str(),
              (long long)model.layout().total(), (long long)P, (long long)K, (long long)K, be.name(), dtype_name(dtype));
  std::printf("%6s %12s %14s %14s %12s\n", "batch", "tokens/s", "ms/step", "ms/forward", "overhead");
  for (int64_t B : {1, 2, 4, 8, 16}) {
    std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(B));
    std::vector<uint32_t> ids(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t i = 0; i < P; ++i) prompts[size_t(b)].push_back(int32_t((b * 131 + i * 7) % (cfg.vocab_size - 2)));
      ids[size_t(b)] = uint32_t(b);
    }
    Sampler s(sc);
    Timer t;
    Canvas c = s.generate(den, prompts, ids);
    const double gen_s = t.elapsed_s();
    // one bare forward of the same canvas (all masks): the model's share of a step
    Timer f;
    const int reps = 3;
    for (int r = 0; r < reps; ++r) den.forward(c.batch, c.len, c.tokens.data(), c.key_mask_or_null(), c.pos_or_null());
    be.synchronize();
    const double fwd_ms = f.elapsed_ms() / reps, step_ms = gen_s * 1e3 / double(K);
    std::printf("%6lld %12.1f %14.1f %14.1f %11.0f%%\n", (long long)B, double(B * K) / gen_s, step_ms, fwd_ms,
                100.0 * (step_ms - fwd_ms) / step_ms);
  }
  return 0;
}
