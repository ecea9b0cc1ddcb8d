// bench_model: forward+backward tokens/s of a DreamModel preset on a backend, and the fraction of the
// measured GEMM peak it reaches (model FLOPs utilisation against the same backend's best square GEMM in the
// same math).
// Then, for the fastest step, where its time went: forward, the log-softmax head, backward (each synchronised, with
// its own share of the model FLOPs and the rate it reached), and one AdamW step over every parameter (fp32 master
// and moments: 28 bytes moved per parameter, as the ZeRO engine's step moves them, plus the bf16 cast), which the
// training step adds once per optimizer step.
// Usage: bench_model [preset=small] [B=4] [L=256] [iters=3] [recompute=0] [backend=cpu|cuda] [math=fp32]
//   math: fp32 | tf32 (fp32 GEMMs on TF32 tensor cores, CUDA only) | bf16 (parallel.param_dtype = compute_dtype =
//   bf16: bf16 weights and saved activations, fp32 accumulation, statistics and gradients); 0 / 1 mean fp32 / tf32
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "cgrpo/backend/backend.h"
#include "cgrpo/core/philox.h"
#include "cgrpo/core/timer.h"
#include "cgrpo/model/dream_model.h"
#include "cgrpo/model/flat_params.h"

using namespace cgrpo;


int main(int argc, char** argv) {
  const std::string preset = argc > 1 ? argv[1] : "small";
  const int64_t B = argc > 2 ? std::atoll(argv[2]) : 4, L = argc > 3 ? std::atoll(argv[3]) : 256;
  const int iters = argc > 4 ? std::atoi(argv[4]) : 3;
  const bool recompute = argc > 5 && std::atoi(argv[5]) != 0;
  const std::string kind = argc > 6 ? argv[6] : "cpu";
  std::unique_ptr<Backend> bep = make_backend(kind, 0, 0);
  Backend& be = *bep;
  std::string math = argc > 7 ? argv[7] : "fp32";
  if (math == "0" || math == "1") math = math == "1" ? "tf32" : "fp32";
  if (math != "fp32" && math != "tf32" && math != "bf16") {
    std::fprintf(stderr, "bench_model: math must be fp32, tf32 or bf16, got '%s'\n", math.c_str());
    return 2;
  }
  const bool tf32 = math == "tf32";
  const DType mm_dtype = math == "bf16" ? DType::BF16 : DType::F32;
  be.allow_tf32(tf32);
  auto dev = [&](const std::vector<float>& h, MemCategory cat) {
    Buffer d = be.alloc(h.size() * 4, cat);
    be.upload(h.data(), d.data(), h.size() * 4);
    return d;
  };

  // GEMM peak: best of 5 square gemms in the model's matmul dtype (1024^3 on the CPU, 8192^3 on a GPU).
  const int64_t n = be.device() == Device::CPU ? 1024 : 8192;
  Buffer a32 = dev(std::vector<float>(size_t(n * n), 0.5f), MemCategory::Workspace);
  Buffer b32 = dev(std::vector<float>(size_t(n * n), 0.25f), MemCategory::Workspace);
  Buffer c = be.alloc(size_t(n * n) * 4, MemCategory::Workspace);
  Buffer a = be.alloc(size_t(n * n) * dtype_size(mm_dtype), MemCategory::Workspace);
  Buffer b = be.alloc(size_t(n * n) * dtype_size(mm_dtype), MemCategory::Workspace);
  const TensorView A(a.data(), mm_dtype, {n, n}, be.device()), Bm(b.data(), mm_dtype, {n, n}, be.device()),
      C(c.data(), DType::F32, {n, n}, be.device());
  be.cast(TensorView(a32.data(), DType::F32, {n, n}, be.device()), A);
  be.cast(TensorView(b32.data(), DType::F32, {n, n}, be.device()), Bm);
  a32.reset(), b32.reset();
  double peak = 0;
  for (int i = 0; i < 6; ++i) {
    be.synchronize();
    Timer t;
    be.gemm(A, false, Bm, true, C);
    be.synchronize();
    if (i > 0) peak = std::max(peak, 2.0 * n * n * n / t.elapsed_s());
  }
  a.reset(), b.reset(), c.reset();

  const ModelConfig cfg = ModelConfig::preset(preset);
  DreamModel model(cfg, be);
  model.set_recompute(recompute);
  std::vector<float> host(size_t(model.layout().total()));
  init_params(model.layout(), host.data(), 1);
  // bf16: bf16 working parameters and activations (the fp32 master stays out of the step here)
  const Buffer params = upload_params(be, host.data(), int64_t(host.size()), mm_dtype);
  Buffer grads = dev(std::vector<float>(host.size(), 0.0f), MemCategory::Grads);
  host = {};
  FlatParams units(model.layout(), params.data(), mm_dtype, grads.as<float>());
  model.set_param_dtype(mm_dtype);
  model.set_compute_dtype(mm_dtype);
  model.bind(&units, true);
  const int64_t N = B * L;
  std::vector<int32_t> ids(N), rows(N), targets(N);
  RngStream rng(1, RngPurpose::Test, 0, 0);
  for (int64_t i = 0; i < N; ++i) {
    ids[i] = int32_t(rng.u32(i) % uint32_t(cfg.vocab_size));
    rows[i] = int32_t(i);
    targets[i] = int32_t(rng.u32(N + i) % uint32_t(cfg.vocab_size));
  }
  std::vector<float> logp(N), dlogp(N, -1.0f / float(N));
  const double fwd_flops = double(N) * model.forward_flops_per_token(L);
  // MFU counts the model's FLOPs (bwd = 2 x fwd); HFU also the recompute forward the hardware runs
  const double step_flops = fwd_flops * 3.0, hw_flops = fwd_flops * (recompute ? 4.0 : 3.0);
  double best = 1e30, phase_s[3] = {0, 0, 0};  // the fastest step's forward, log-probs (head), backward
  for (int it = 0; it < iters + 1; ++it) {  // first iteration warms up (allocations)
    Timer t;
    double at[3];
    model.forward({B, L, ids.data()}, true);
    be.synchronize();
    at[0] = t.elapsed_s();
    model.logprobs(N, rows.data(), targets.data(), logp.data());
    be.synchronize();
    at[1] = t.elapsed_s();
    model.backward(dlogp.data());
    be.synchronize();
    at[2] = t.elapsed_s();
    if (it > 0 && at[2] < best) {
      best = at[2];
      phase_s[0] = at[0], phase_s[1] = at[1] - at[0], phase_s[2] = at[2] - at[1];
    }
  }
  std::printf("preset %s (%lld params), B=%lld L=%lld, recompute %d, backend %s, math %s\n", preset.c_str(),
              (long long)model.layout().total(), (long long)B, (long long)L, int(recompute), be.name(), math.c_str());
  std::printf("gemm peak (%lld^3, %s): %.1f GFLOP/s\n", (long long)n, math.c_str(), peak / 1e9);
  std::printf("forward+backward: %.3f s/step, %.0f tokens/s, %.1f model GFLOP/s = %.0f%% of gemm peak\n", best,
              double(N) / best, step_flops / best / 1e9, 100.0 * step_flops / best / peak);
  if (be.peak_flops() > 0) {
    const double nominal = be.peak_flops(mm_dtype);
    std::printf("MFU: %.1f%% of the device's nominal %.0f TFLOP/s (%s math)", 100.0 * step_flops / best / nominal,
                nominal / 1e12, math.c_str());
    if (recompute) std::printf("; HFU (with the recompute forward): %.1f%%", 100.0 * hw_flops / best / nominal);
    std::printf("\n");
  }
  // where the step's time went: body forward, head forward (inside logprobs), backward of both (2x, + recompute)
  const double body = double(N) * model.body_flops_per_token(L), head = double(N) * model.head_flops_per_row();
  const double phase_flops[3] = {body, head, 2.0 * (body + head)};
  const char* phase_name[3] = {"forward (body)", "log-probs (head)", "backward"};
  for (int p = 0; p < 3; ++p)
    std::printf("  %-17s %8.2f ms  %5.1f%% of the step  %8.1f GFLOP/s (model FLOPs)\n", phase_name[p],
                phase_s[p] * 1e3, 100.0 * phase_s[p] / best, phase_flops[p] / phase_s[p] / 1e9);
  // one optimizer step over every parameter, as ZeroEngine::step runs it at stage 0 (fp32 master, moments)
  const int64_t P = model.layout().total();
  Buffer master = be.alloc(size_t(P) * 4, MemCategory::Master), m1 = be.alloc(size_t(P) * 4, MemCategory::Moments),
         m2 = be.alloc(size_t(P) * 4, MemCategory::Moments);
  for (Buffer* x : {&master, &m1, &m2}) be.zero(TensorView(x->data(), DType::F32, {P}, be.device()));
  const std::vector<DecaySegment> all{{0, P, true}};
  double opt = 1e30;
  for (int it = 0; it < 3; ++it) {
    be.synchronize();
    Timer t;
    be.adamw(master.as<float>(), grads.as<float>(), m1.as<float>(), m2.as<float>(), P, all, 1e-6, it + 1,
             AdamWParams{0.9, 0.99, 1e-8, 0.1}, 1.0f);
    if (mm_dtype != DType::F32)  // the working copy from the master
      be.cast(TensorView(master.data(), DType::F32, {P}, be.device()), TensorView(params.data(), mm_dtype, {P}, be.device()));
    be.synchronize();
    opt = std::min(opt, t.elapsed_s());
  }
  const double moved = double(P) * (28.0 + (mm_dtype != DType::F32 ? 4.0 + double(dtype_size(mm_dtype)) : 0.0));
  std::printf("  AdamW step, all %lld parameters: %.2f ms (%.1f GB/s moved; %.1f%% of one forward+backward)\n",
              (long long)P, opt * 1e3, moved / opt / 1e9, 100.0 * opt / best);
  return 0;
}
