// The coupled log-prob estimator (spec §3.6) through the model: its gradient against central finite
// differences on the tiny model, and its structure (v0 all masked, complementary v1/v2).
#include <catch2/catch.hpp>
#include <cmath>

#include "cgrpo/backend/cpu_backend.h"
#include "cgrpo/core/philox.h"
#include "cgrpo/model/dream_model.h"
#include "cgrpo/train/coupled_scorer.h"

using namespace cgrpo;

namespace {
struct Fixture {
  ModelConfig cfg = ModelConfig::preset("tiny");
  CpuBackend be{1};
  DreamModel model{cfg, be};
  std::vector<float> params, grads;
  std::vector<int32_t> tokens;
  std::vector<int64_t> ids = {40, 41, 42};
  CoupledBatch cb;
  Fixture() {
    params.resize(size_t(model.layout().total()));
    grads.assign(params.size(), 0.0f);
    init_params(model.layout(), params.data(), 5, 0.2f);  // large init: log-probs vary visibly
    model.bind(params.data(), grads.data());
    const int64_t B = 3, P = 4, K = 6;
    for (int64_t i = 0; i < B * (P + K); ++i) tokens.push_back(int32_t((i * 37 + 11) % 500));
    cb.B = B;
    cb.P = P;
    cb.K = K;
    cb.tokens = tokens.data();
    cb.sample_ids = ids.data();
    cb.mask_id = int32_t(cfg.mask_token_id);
    cb.seed = 9;
    cb.mask_step = 3;
  }
  // f = sum_k w_k logp_hat_k with fixed weights
  double f(CoupledScorer& s, const std::vector<float>& w) {
    std::vector<float> lp(w.size());
    s.score(cb, false, lp.data());
    double acc = 0;
    for (size_t i = 0; i < w.size(); ++i) acc += double(w[i]) * lp[i];
    return acc;
  }
};
}  // namespace

TEST_CASE("coupled scorer: gradient matches central finite differences through the model", "[unit][train][model]") {
  Fixture fx;
  CoupledScorer s(fx.model);
  std::vector<float> w(size_t(fx.cb.B * fx.cb.K));
  RngStream r(3, RngPurpose::Test, 0, 0);
  for (size_t i = 0; i < w.size(); ++i) w[i] = r.normal(i);
  std::vector<float> lp(w.size());
  s.score(fx.cb, true, lp.data());
  const double t = s.last_t();
  CHECK(t >= 0.2);
  CHECK(t < 0.8);
  s.backward(w.data());
  const std::vector<float> g = fx.grads;
  const ParamLayout& lay = fx.model.layout();
  int checked = 0;
  for (const ParamInfo& p : lay.params()) {
    for (int64_t j : {int64_t(0), p.numel / 3, p.numel - 1}) {
      const int64_t i = p.offset + j;
      const float keep = fx.params[size_t(i)], h = 1e-2f;
      fx.params[size_t(i)] = keep + h;
      const double fp = fx.f(s, w);
      fx.params[size_t(i)] = keep - h;
      const double fm = fx.f(s, w);
      fx.params[size_t(i)] = keep;
      const double fd = (fp - fm) / (2.0 * h);
      INFO(p.name << "[" << j << "]: analytic " << g[size_t(i)] << ", finite difference " << fd);
      CHECK(g[size_t(i)] == Approx(fd).margin(3e-3).epsilon(3e-2));
      ++checked;
    }
  }
  CHECK(checked > 30);
}

TEST_CASE("coupled scorer: masks are complementary and keyed by sample id, not batch position", "[unit][train][model]") {
  Fixture fx;
  CoupledScorer s(fx.model);
  std::vector<float> all(size_t(fx.cb.B * fx.cb.K)), one(size_t(fx.cb.K));
  s.score(fx.cb, false, all.data());
  // the same row scored alone with the same first sample id gets the same t, masks and log-probs
  CoupledBatch single = fx.cb;
  single.B = 1;
  s.score(single, false, one.data());
  for (int64_t k = 0; k < fx.cb.K; ++k) CHECK(one[size_t(k)] == Approx(all[size_t(k)]).epsilon(1e-5));
  // another mask draw changes the estimate
  CoupledBatch other = fx.cb;
  other.mask_step = 4;
  std::vector<float> o(all.size());
  s.score(other, false, o.data());
  double diff = 0;
  for (size_t i = 0; i < o.size(); ++i) diff += std::fabs(o[i] - all[i]);
  CHECK(diff > 1e-3);
}
