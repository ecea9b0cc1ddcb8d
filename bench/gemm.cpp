// bench_gemm: CpuBackend (OpenBLAS) sgemm GFLOP/s for square and transformer-shaped problems, as a fraction
// of this CPU's measured fp32 peak (an FMA loop with 12 independent accumulators per thread, AVX2 and, where the
// CPU has it, AVX-512, whichever is faster; run on as many threads as BLAS uses).  Usage: bench_gemm [threads]
#include <immintrin.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "cgrpo/backend/cpu_backend.h"
#include "cgrpo/core/philox.h"
#include "cgrpo/core/timer.h"

using namespace cgrpo;

// 12 chains x 8 (AVX2) or 16 (AVX-512) lanes x 2 flops per FMA; latency 4-5 cycles x 2 ports needs >= 10 chains.
constexpr int64_t kPeakIters = 200'000'000 / 12;

static float fma_chains_avx2(double* secs) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(float(i) * 1e-3f);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  Timer tm;
  for (int64_t it = 0; it < kPeakIters; ++it)
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  *secs = tm.elapsed_s();
  __m256 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, acc[i]);
  return _mm256_cvtss_f32(s);
}

__attribute__((target("avx512f"))) static float fma_chains_avx512(double* secs) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(float(i) * 1e-3f);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  Timer tm;
  for (int64_t it = 0; it < kPeakIters; ++it)
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  *secs = tm.elapsed_s();
  __m512 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, acc[i]);
  float lanes[16];
  _mm512_storeu_ps(lanes, s);
  return lanes[0];
}

// GFLOP/s of `threads` threads each running chains(): lanes per FMA vector.
static double fma_peak_gflops(int threads, float (*chains)(double*), int lanes) {
  std::vector<double> secs(threads);
  std::vector<float> sink(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back([&, t] { sink[t] = chains(&secs[t]); });
  for (auto& th : pool) th.join();
  const double flops = double(kPeakIters) * 12 * lanes * 2 * threads;
  return flops / *std::max_element(secs.begin(), secs.end()) * 1e-9 + 0 * sink[0];
}

// The best of three runs of each ISA (a run of ~0.1-0.2 s is easily cut into by the scheduler on a shared VM).
static double fma_peak_gflops(int threads) {
  const bool avx512 = __builtin_cpu_supports("avx512f");
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    best = std::max(best, fma_peak_gflops(threads, fma_chains_avx2, 8));
    if (avx512) best = std::max(best, fma_peak_gflops(threads, fma_chains_avx512, 16));  // 1 or 2 512-bit FMA units
  }
  return best;
}

static double gemm_gflops(CpuBackend& be, int64_t m, int64_t n, int64_t k, bool tb) {
  std::vector<float> a(m * k), b(k * n), c(m * n);
  RngStream rng(1, RngPurpose::Test, 0, 0);
  rng.fill_uniform(a.data(), m * k);
  rng.fill_uniform(b.data(), k * n, uint64_t(m * k));
  auto A = TensorView::of(a.data(), {m, k});
  auto B = tb ? TensorView::of(b.data(), {n, k}) : TensorView::of(b.data(), {k, n});
  auto C = TensorView::of(c.data(), {m, n});
  be.gemm(A, false, B, tb, C);  // warm-up
  const double flops = 2.0 * m * n * k;
  const int reps = std::max(3, int(2e10 / flops));
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    Timer t;
    be.gemm(A, false, B, tb, C);
    best = std::min(best, t.elapsed_s());
  }
  return flops / best * 1e-9;
}

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : int(std::thread::hardware_concurrency());
  CpuBackend be(threads);
  const double peak = fma_peak_gflops(be.threads());
  std::printf("CPU fp32 FMA peak, %d threads: %.1f GFLOP/s (measured)\n\n", be.threads(), peak);
  std::printf("%-44s %10s %8s\n", "shape (M x N x K)", "GFLOP/s", "of peak");
  struct Case { const char* what; int64_t m, n, k; bool tb; };
  const Case cases[] = {
      {"square 256", 256, 256, 256, false},
      {"square 512", 512, 512, 512, false},
      {"square 1024", 1024, 1024, 1024, false},
      {"square 2048", 2048, 2048, 2048, false},
      {"small preset QKV  (tokens 2048, H 512 -> 768)", 2048, 768, 512, true},
      {"small preset MLP up (2048 x 1408 x 512)", 2048, 1408, 512, true},
      {"small preset MLP down (2048 x 512 x 1408)", 2048, 512, 1408, true},
      {"1b-like MLP up (1024 x 5504 x 2048)", 1024, 5504, 2048, true},
      {"tiny LM head chunk (512 x 4096 x 128)", 512, 4096, 128, true},
  };
  for (const Case& c : cases) {
    const double g = gemm_gflops(be, c.m, c.n, c.k, c.tb);
    char shape[64];
    std::snprintf(shape, sizeof(shape), "%s", c.what);
    std::printf("%-44s %10.1f %7.0f%%\n", shape, g, 100.0 * g / peak);
  }
  return 0;
}
