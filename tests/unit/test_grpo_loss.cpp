#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "cgrpo/core/philox.h"
#include "cgrpo/train/grpo_loss.h"

using namespace cgrpo;

TEST_CASE("grpo loss: a hand-computed 2 x 3 case", "[unit][train]") {
  // row 0: A = +1, row 1: A = -0.5; eps 0.2/0.2, beta 0.1; token (1, 2) is after EOS (c = 0)
  const float logp[6] = {-1.0f, -2.0f, -0.5f, -1.0f, -3.0f, -2.0f};
  const float old[6] = {-1.0f, -2.5f, -0.2f, -1.5f, -3.0f, -9.0f};
  const float ref[6] = {-1.0f, -2.0f, -1.0f, -1.0f, -2.0f, -2.0f};
  const float adv[2] = {1.0f, -0.5f};
  const uint8_t c[6] = {1, 1, 1, 1, 1, 0};
  float d[6];
  const GrpoLossStats s = grpo_loss(2, 3, logp, old, ref, adv, c, 0.2, 0.2, 0.1, d);
  // by hand: ratios r = exp(logp - old)
  const double r1 = std::exp(0.5), r2 = std::exp(-0.3), r3 = std::exp(0.5);
  // pg: (0,0) r=1 -> -1; (0,1) r=e^.5 > 1.2, A>0 -> min(r, 1.2) = 1.2 -> -1.2 (clipped);
  // (0,2) r=e^-.3=0.741 < 0.8, A>0 -> min(0.741, 0.8) = 0.741 -> -0.741 (unclipped);
  // (1,0) r=e^.5, A=-.5 -> min(-.5 r, -.6) = -.5 r -> +.5 r (unclipped); (1,1) r = 1 -> +0.5
  const double pg = -1.0 - 1.2 - r2 + 0.5 * r3 + 0.5;
  auto k3 = [](double d) { return std::exp(d) - d - 1.0; };
  const double kl = k3(0) + k3(0) + k3(-0.5) + k3(0) + k3(1.0);
  CHECK(s.tokens == 5);
  CHECK(s.loss == Approx((pg + 0.1 * kl) / 5).epsilon(1e-6));
  CHECK(s.kl_mean == Approx(kl / 5).epsilon(1e-6));
  CHECK(s.clip_high == Approx(1.0 / 5));  // (0,1)
  CHECK(s.clip_low == Approx(0.0));       // (0,2) is below 0.8 but A > 0: not a low clip
  CHECK(d[5] == 0.0f);
  CHECK(d[1] == Approx(0.1 * (1 - std::exp(0.0)) / 5).margin(1e-7));  // clipped: only the KL term (0 here)
  CHECK(d[0] == Approx(-1.0 / 5));
  (void)r1;
}

TEST_CASE("grpo loss: gradient matches central finite differences", "[unit][train]") {
  const int64_t B = 3, K = 7;
  std::vector<float> logp(B * K), old(B * K), ref(B * K), adv = {0.7f, -1.3f, 0.2f}, d(B * K);
  std::vector<uint8_t> c(B * K, 1);
  c[5] = c[13] = 0;
  RngStream r(5, RngPurpose::Test, 0, 0);
  for (int64_t i = 0; i < B * K; ++i) {
    logp[i] = -1.0f - r.uniform(i);
    old[i] = logp[i] + 0.3f * r.normal(100 + i);  // some ratios inside, some outside [0.8, 1.25]
    ref[i] = logp[i] + 0.5f * r.normal(200 + i);
  }
  grpo_loss(B, K, logp.data(), old.data(), ref.data(), adv.data(), c.data(), 0.2, 0.25, 0.05, d.data());
  std::vector<float> scratch(B * K);
  for (int64_t i = 0; i < B * K; ++i) {
    const double ratio = std::exp(double(logp[i]) - old[i]);
    if (std::fabs(ratio - 0.8) < 1e-2 || std::fabs(ratio - 1.25) < 1e-2) continue;  // kink: skip
    const float h = 1e-3f;
    std::vector<float> lp = logp, lm = logp;
    lp[i] += h;
    lm[i] -= h;
    const double fp = grpo_loss(B, K, lp.data(), old.data(), ref.data(), adv.data(), c.data(), 0.2, 0.25, 0.05, scratch.data()).loss;
    const double fm = grpo_loss(B, K, lm.data(), old.data(), ref.data(), adv.data(), c.data(), 0.2, 0.25, 0.05, scratch.data()).loss;
    INFO("token " << i);
    CHECK(d[i] == Approx((fp - fm) / (2 * h)).margin(2e-4));
  }
}
