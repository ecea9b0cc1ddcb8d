#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "cgrpo/backend/cpu_backend.h"
#include "cgrpo/core/philox.h"
#include "cgrpo/optim/adamw.h"
#include "cgrpo/optim/lr_schedule.h"

using namespace cgrpo;

TEST_CASE("adamw matches a float64 transcription of torch.optim.AdamW", "[unit][optim]") {
  const int64_t n = 19;
  const AdamWParams hp{0.9, 0.99, 1e-8, 0.1};
  const std::vector<DecaySegment> seg = {{0, 7, true}, {7, 5, false}, {12, 7, true}};
  std::vector<float> p(n), m(n, 0), v(n, 0), g(n);
  std::vector<double> P(n), M(n, 0), V(n, 0);
  RngStream rng(1, RngPurpose::Test, 0, 0);
  for (int64_t i = 0; i < n; ++i) P[i] = p[i] = rng.normal(i);
  for (int t = 1; t <= 5; ++t) {
    const double lr = 1e-2 * t;
    const float scale = t == 3 ? 0.5f : 1.0f;
    for (int64_t i = 0; i < n; ++i) g[i] = rng.normal(100 * t + i);
    adamw_step(p.data(), g.data(), m.data(), v.data(), n, seg, lr, t, hp, scale);
    for (int64_t i = 0; i < n; ++i) {
      const bool decay = i < 7 || i >= 12;
      const double gi = double(g[i]) * scale;
      if (decay) P[i] *= 1 - lr * hp.weight_decay;
      M[i] = hp.beta1 * M[i] + (1 - hp.beta1) * gi;
      V[i] = hp.beta2 * V[i] + (1 - hp.beta2) * gi * gi;
      const double bc1 = 1 - std::pow(hp.beta1, t), bc2 = 1 - std::pow(hp.beta2, t);
      P[i] -= lr / bc1 * M[i] / (std::sqrt(V[i]) / std::sqrt(bc2) + hp.eps);
    }
  }
  for (int64_t i = 0; i < n; ++i) REQUIRE(p[i] == Approx(P[i]).epsilon(1e-5).margin(1e-6));
  // a zero gradient with zero moments moves nothing where there is no decay (ZeRO padding)
  float pz = 0, mz = 0, vz = 0, gz = 0;
  adamw_step(&pz, &gz, &mz, &vz, 1, {{0, 1, false}}, 1.0, 1, hp);
  CHECK(pz == 0.0f);
  CHECK_THROWS_WITH(adamw_step(p.data(), g.data(), m.data(), v.data(), n, {{0, 5, true}}, 0.1, 1, hp),
                    Catch::Contains("cover 5 of 19"));
}

TEST_CASE("adamw: CpuBackend splits a large shard over its threads with the single-thread bits", "[unit][optim]") {
  const int64_t n = 400003;  // several of the pool's ranges, decay segments straddling their boundaries
  const AdamWParams hp{0.9, 0.99, 1e-8, 0.1};
  const std::vector<DecaySegment> seg = {{0, 70001, true}, {70001, 130000, false}, {200001, 200002, true}};
  std::vector<float> p(n), m(n), v(n), g(n);
  RngStream rng(2, RngPurpose::Test, 0, 0);
  for (int64_t i = 0; i < n; ++i) p[i] = rng.normal(i), m[i] = 0.1f * rng.normal(n + i), g[i] = rng.normal(2 * n + i);
  for (int64_t i = 0; i < n; ++i) v[i] = 0.01f * std::fabs(rng.normal(3 * n + i));
  auto p1 = p, m1 = m, v1 = v;
  adamw_step(p1.data(), g.data(), m1.data(), v1.data(), n, seg, 1e-2, 3, hp, 0.5f);
  CpuBackend be(2);
  be.adamw(p.data(), g.data(), m.data(), v.data(), n, seg, 1e-2, 3, hp, 0.5f);
  CHECK(p == p1);
  CHECK(m == m1);
  CHECK(v == v1);
  CHECK_THROWS_WITH(be.adamw(p.data(), g.data(), m.data(), v.data(), n, {{0, n - 1, true}}, 0.1, 1, hp, 1.0f),
                    Catch::Contains("cover 400002 of 400003"));
}

TEST_CASE("lr schedules: constant, linear warmup, cosine_with_min_lr (hand-computed)", "[unit][optim]") {
  LrSchedule c("constant", 1e-3, 100, 0.1, 0.1);
  CHECK(c.lr(0) == 1e-3);
  CHECK(c.lr(99) == 1e-3);
  LrSchedule w("linear_warmup", 1.0, 100, 0.1, 0.1);
  CHECK(w.warmup_steps() == 10);
  CHECK(w.lr(0) == 0.0);
  CHECK(w.lr(5) == Approx(0.5));
  CHECK(w.lr(10) == 1.0);
  CHECK(w.lr(90) == 1.0);
  LrSchedule k("cosine_with_min_lr", 2.0, 110, 10.0 / 110, 0.1);
  CHECK(k.warmup_steps() == 10);
  CHECK(k.lr(5) == Approx(1.0));
  CHECK(k.lr(10) == Approx(2.0));                 // progress 0 -> full lr
  CHECK(k.lr(60) == Approx(2.0 * (0.5 * 0.9 + 0.1)));  // progress 0.5 -> f = 0.5
  CHECK(k.lr(110) == Approx(0.2));                // progress 1 -> min_lr_rate * lr
  // the recipe: warmup_ratio 1e-4 over 1000 steps -> ceil(0.1) = 1 warmup step
  LrSchedule r("cosine_with_min_lr", 1e-6, 1000, 1e-4, 0.1);
  CHECK(r.warmup_steps() == 1);
  CHECK(r.lr(0) == 0.0);
  CHECK(r.lr(1) == Approx(1e-6));
  CHECK_THROWS_WITH(LrSchedule("linear", 1, 10, 0, 0), Catch::Contains("unknown lr schedule"));
}
