// bench_model: forward+backward tokens/s of a DreamModel preset on the CPU backend, and the fraction of the
// measured GEMM peak it reaches. Usage: bench_model [preset=small] [B=4] [L=256] [iters=3] [recompute=0]
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cgrpo/backend/cpu_backend.h"
#include "cgrpo/core/philox.h"
#include "cgrpo/core/timer.h"
#include "cgrpo/model/dream_model.h"

using namespace cgrpo;

int main(int argc, char** argv) {
  const std::string preset = argc > 1 ? argv[1] : "small";
  const int64_t B = argc > 2 ? std::atoll(argv[2]) : 4, L = argc > 3 ? std::atoll(argv[3]) : 256;
  const int iters = argc > 4 ? std::atoi(argv[4]) : 3;
  const bool recompute = argc > 5 && std::atoi(argv[5]) != 0;
  CpuBackend be;

  // GEMM peak: best of 3 square sgemms at a size like the model's projections.
  const int64_t n = 1024;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  double peak = 0;
  for (int i = 0; i < 3; ++i) {
    Timer t;
    be.gemm(TensorView::of(a.data(), {n, n}), false, TensorView::of(b.data(), {n, n}), true,
            TensorView::of(c.data(), {n, n}));
    peak = std::max(peak, 2.0 * n * n * n / t.elapsed_s());
  }

  const ModelConfig cfg = ModelConfig::preset(preset);
  DreamModel model(cfg, be);
  model.set_recompute(recompute);
  std::vector<float> params(model.layout().total()), grads(model.layout().total(), 0.0f);
  init_params(model.layout(), params.data(), 1);
  model.bind(params.data(), grads.data());
  const int64_t N = B * L;
  std::vector<int32_t> ids(N), rows(N), targets(N);
  RngStream rng(1, RngPurpose::Test, 0, 0);
  for (int64_t i = 0; i < N; ++i) {
    ids[i] = int32_t(rng.u32(i) % uint32_t(cfg.vocab_size));
    rows[i] = int32_t(i);
    targets[i] = int32_t(rng.u32(N + i) % uint32_t(cfg.vocab_size));
  }
  std::vector<float> logp(N), dlogp(N, -1.0f / float(N));
  // matmul FLOPs per token, forward: 2 * (linear params incl. head) + attention 4 * L * QW per layer.
  const double lin = double(model.layout().total()) - double(cfg.vocab_size * cfg.hidden_size) *
                                                          (cfg.tie_word_embeddings ? 0 : 1);
  const double attn = 4.0 * double(L) * double(cfg.num_attention_heads * cfg.head_dim()) * cfg.num_hidden_layers;
  const double fwd_flops = double(N) * (2.0 * lin + attn);
  const double step_flops = fwd_flops * (recompute ? 4.0 : 3.0);  // bwd = 2 x fwd (+1 fwd when recomputing)
  double best = 1e30;
  for (int it = 0; it < iters + 1; ++it) {  // first iteration warms up (allocations)
    Timer t;
    model.forward({B, L, ids.data()}, true);
    model.logprobs(N, rows.data(), targets.data(), logp.data());
    model.backward(dlogp.data());
    if (it > 0) best = std::min(best, t.elapsed_s());
  }
  std::printf("preset %s (%lld params), B=%lld L=%lld, recompute %d, %d BLAS threads\n", preset.c_str(),
              (long long)model.layout().total(), (long long)B, (long long)L, int(recompute), be.threads());
  std::printf("gemm peak (%lld^3): %.1f GFLOP/s\n", (long long)n, peak / 1e9);
  std::printf("forward+backward: %.3f s/step, %.0f tokens/s, %.1f GFLOP/s = %.0f%% of gemm peak\n", best,
              double(N) / best, step_flops / best / 1e9, 100.0 * step_flops / best / peak);
  return 0;
}
