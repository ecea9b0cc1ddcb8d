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

TEST_CASE("coupled scorer: logp_hat equals spec 3.6 built by hand from three separately scored versions",
          "[unit][train][model]") {
  Fixture fx;
  CoupledScorer s(fx.model);
  const int64_t B = fx.cb.B, P = fx.cb.P, K = fx.cb.K, L = P + K;
  std::vector<float> got(size_t(B * K));
  s.score(fx.cb, false, got.data());
  const double t = s.last_t();
  REQUIRE(t >= 0.2);
  REQUIRE(t < 0.8);
  // R_bk as documented in coupled_scorer.h: RngStream(seed, Mask, mask_step, sample id b) at index k
  std::vector<int32_t> x0 = fx.tokens, x1 = fx.tokens, x2 = fx.tokens;
  std::vector<uint8_t> in_v1(size_t(B * K));
  int n1 = 0, n2 = 0;
  for (int64_t b = 0; b < B; ++b) {
    const RngStream r(fx.cb.seed, RngPurpose::Mask, fx.cb.mask_step, uint32_t(fx.ids[size_t(b)]));
    for (int64_t k = 0; k < K; ++k) {
      const size_t at = size_t(b * L + P + k);
      in_v1[size_t(b * K + k)] = double(r.uniform(uint64_t(k))) < t;
      x0[at] = fx.cb.mask_id;                                      // v0: every completion token
      (in_v1[size_t(b * K + k)] ? x1 : x2)[at] = fx.cb.mask_id;   // v1: R < t, v2: the complement
      (in_v1[size_t(b * K + k)] ? n1 : n2)++;
    }
    for (int64_t j = 0; j < P; ++j)  // the prompt is never masked
      CHECK((x0[size_t(b * L + j)] != fx.cb.mask_id && x1[size_t(b * L + j)] != fx.cb.mask_id &&
             x2[size_t(b * L + j)] != fx.cb.mask_id));
  }
  CHECK(n1 > 0);  // both versions mask something in this fixture
  CHECK(n2 > 0);
  // l_v[b, k] = log p(y_bk | version v) read at raw row P + k - 1 (shift, spec §1.5); each version its own forward
  auto score_version = [&](const std::vector<int32_t>& x) {
    std::vector<int32_t> rows, tg;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t k = 0; k < K; ++k) {
        rows.push_back(int32_t(b * L + P + k - 1));
        tg.push_back(fx.tokens[size_t(b * L + P + k)]);
      }
    std::vector<float> lp(rows.size());
    const ModelInput in{B, L, x.data(), nullptr, nullptr};
    fx.model.forward(in, false);
    fx.model.logprobs(int64_t(rows.size()), rows.data(), tg.data(), lp.data());
    fx.model.release_held();
    return lp;
  };
  const std::vector<float> l0 = score_version(x0), l1 = score_version(x1), l2 = score_version(x2);
  for (int64_t i = 0; i < B * K; ++i) {
    const double coupled = in_v1[size_t(i)] ? double(l1[size_t(i)]) / t : double(l2[size_t(i)]) / (1.0 - t);
    INFO("row " << i / K << ", token " << i % K << (in_v1[size_t(i)] ? " (masked in v1)" : " (masked in v2)"));
    CHECK(got[size_t(i)] == Approx(0.5 * (double(l0[size_t(i)]) + coupled)).epsilon(1e-5).margin(1e-5));
  }
}
