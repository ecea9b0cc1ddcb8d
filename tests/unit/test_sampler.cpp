// Diffusion sampler (spec §2): schedule, sample_tokens filters and confidences, unmask algorithms, padding,
// batch invariance, custom policies, streaming, and every bad-parameter error.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <sstream>
#include <vector>

#include "cgrpo/config/config.h"
#include "cgrpo/core/error.h"
#include "cgrpo/rollout/canvas_renderer.h"
#include "cgrpo/rollout/sampler.h"

using namespace cgrpo;
using Catch::Contains;

namespace {

uint64_t mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Logits are a hash of (every attended token with its position id, the target's position id): they depend on
// the whole canvas bidirectionally, honour key masks and position ids, and ignore the layout of the batch.
class HashDenoiser final : public Denoiser {
 public:
  HashDenoiser(int64_t vocab, int32_t mask_id, float scale) : V_(vocab), mask_(mask_id), scale_(scale) {}
  int64_t vocab() const override { return V_; }
  int64_t preferred_chunk_rows() const override { return preferred_rows; }
  int64_t preferred_rows = 0;  // the model's wish (0: none); the sampler follows it unless set_chunk_rows
  void forward(int64_t B, int64_t L, const int32_t* tokens, const uint8_t* key_mask, const int32_t* pos) override {
    ++forwards;
    saw_key_mask = key_mask != nullptr;
    L_ = L;
    key_mask_ = key_mask;
    pos_ = pos;
    ctx_.assign(static_cast<size_t>(B), 0);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < L; ++j) {
        if (key_mask && !key_mask[b * L + j]) continue;
        const uint64_t p = pos ? static_cast<uint64_t>(pos[b * L + j]) : static_cast<uint64_t>(j);
        ctx_[static_cast<size_t>(b)] += mix(p * 1000003u + static_cast<uint64_t>(tokens[b * L + j]));
      }
  }
  void logits(int64_t R, const int32_t* rows, const int32_t* cols, float* out) override {
    for (int64_t r = 0; r < R; ++r) {
      const int64_t b = rows[r], j = cols[r];
      REQUIRE((!key_mask_ || key_mask_[b * L_ + j]));
      const uint64_t p = pos_ ? static_cast<uint64_t>(pos_[b * L_ + j]) : static_cast<uint64_t>(j);
      const uint64_t h = mix(ctx_[static_cast<size_t>(b)] ^ mix(p + 77));
      for (int64_t v = 0; v < V_; ++v) {
        const double u = static_cast<double>(mix(h + static_cast<uint64_t>(v)) >> 11) * 0x1.0p-53;
        out[r * V_ + v] = static_cast<float>(scale_ * (u - 0.5) * (1.0 + static_cast<double>(h % 7)));
      }
      out[r * V_ + mask_] = -30.0f;  // a trained model never predicts <|mask|>
    }
  }
  int forwards = 0;
  bool saw_key_mask = false;

 private:
  int64_t V_;
  int32_t mask_;
  float scale_;
  int64_t L_ = 0;
  const uint8_t* key_mask_ = nullptr;
  const int32_t* pos_ = nullptr;
  std::vector<uint64_t> ctx_;
};

// Fixed logits per completion offset (prompt length P), the same for every row and step.
class TableDenoiser final : public Denoiser {
 public:
  TableDenoiser(int64_t P, std::vector<std::vector<float>> table) : P_(P), table_(std::move(table)) {}
  int64_t vocab() const override { return static_cast<int64_t>(table_[0].size()); }
  void forward(int64_t, int64_t, const int32_t*, const uint8_t*, const int32_t*) override {}
  void logits(int64_t R, const int32_t*, const int32_t* cols, float* out) override {
    for (int64_t r = 0; r < R; ++r) std::copy(table_[cols[r] - P_].begin(), table_[cols[r] - P_].end(), out + r * vocab());
  }

 private:
  int64_t P_;
  std::vector<std::vector<float>> table_;
};

std::vector<float> log_probs(std::vector<float> p, int64_t vocab) {
  std::vector<float> z(static_cast<size_t>(vocab), -1e30f);
  for (size_t v = 0; v < p.size(); ++v) z[v] = std::log(p[v]);
  return z;
}

SamplerConfig small_cfg(UnmaskAlg alg, int64_t n, int64_t steps) {
  SamplerConfig c;
  c.alg = alg;
  c.max_new_tokens = n;
  c.steps = steps;
  c.mask_id = 60;
  c.pad_id = 61;
  c.seed = 1234;
  return c;
}

std::vector<std::vector<int32_t>> prompts5() {
  return {{1, 2, 3}, {4, 5, 6, 7, 8, 9, 10}, {11}, {12, 13, 14, 15, 16}, {17, 18, 19, 20, 21, 22}};
}

std::vector<float> sample_probs(TokenSampler& ts, std::vector<float> z, double u = 0.0,
                                Confidence kind = Confidence::None, SampledToken* st = nullptr) {
  const SampledToken s = ts.sample(z.data(), u, kind);
  if (st) *st = s;
  std::vector<float> p(z.size());
  ts.probs(p.data());
  return p;
}

}  // namespace

TEST_CASE("rollout: schedule counts for 256 new tokens match spec §2.2", "[unit][rollout]") {
  const auto expect = [](int64_t steps, int64_t first, int64_t mid, int64_t last) {
    const Schedule s(steps, 1e-3f);
    CHECK(s.t(0) == 1.0f);
    CHECK(s.t(steps) == 1e-3f);
    const std::vector<int64_t> k = s.counts(256);
    REQUIRE(static_cast<int64_t>(k.size()) == steps);
    CHECK(k.front() == first);
    CHECK(k.back() == last);
    for (int64_t i = 1; i + 1 < steps; ++i) CHECK(k[static_cast<size_t>(i)] == mid);
    CHECK(std::accumulate(k.begin(), k.end(), int64_t{0}) == 256);
  };
  expect(256, 0, 1, 2);
  expect(128, 1, 2, 3);
  expect(64, 3, 4, 5);
  // tokens_per_step resolves steps = max_new_tokens / tokens_per_step
  SamplerConfig c;
  c.tokens_per_step = 4;
  CHECK(c.resolved_steps() == 64);
  CHECK(Sampler(c).schedule().steps() == 64);
}

TEST_CASE("rollout: config from the rollout section and every bad parameter", "[unit][rollout]") {
  RolloutSection r;
  const SamplerConfig ok = SamplerConfig::from_rollout(r, 151666, 151643, 7);
  CHECK(ok.alg == UnmaskAlg::Entropy);
  CHECK(ok.steps == 256);
  CHECK(ok.top_p == 0.95f);
  CHECK(ok.seed == 7);
  // GRPO rollouts: top_p as configured when sampling, off when greedy (spec §2.6); generate keeps it
  CHECK(SamplerConfig::grpo_rollout(r, 151666, 151643, 7).top_p == 0.95f);
  r.temperature = 0.0;
  CHECK(SamplerConfig::grpo_rollout(r, 151666, 151643, 7).top_p == 1.0f);
  CHECK(SamplerConfig::from_rollout(r, 151666, 151643, 7).top_p == 0.95f);
  r.temperature = 1.0;
  r.alg = "maskgit";
  REQUIRE_THROWS_WITH(SamplerConfig::from_rollout(r, 151666, 151643, 7),
                      Contains("unknown alg 'maskgit'") && Contains("maskgit_plus"));
  for (const char* a : {"origin", "maskgit_plus", "topk_margin", "entropy", "confidence_threshold"})
    CHECK(to_string(parse_unmask_alg(a)) == std::string(a));

  const auto bad = [](auto edit, const char* what) {
    SamplerConfig c;
    edit(c);
    REQUIRE_THROWS_WITH(c.validate(), Contains(what));
    REQUIRE_THROWS_WITH(Sampler(c), Contains(what));
  };
  bad([](SamplerConfig& c) { c.steps = 257; }, "steps = 257 exceeds max_new_tokens = 256");
  bad([](SamplerConfig& c) { c.steps = 0; }, "steps = 0");
  bad([](SamplerConfig& c) { c.max_new_tokens = 0; }, "max_new_tokens = 0");
  bad([](SamplerConfig& c) { c.tokens_per_step = 3; }, "tokens_per_step = 3 does not divide max_new_tokens = 256");
  bad([](SamplerConfig& c) { c.tokens_per_step = -1; }, "tokens_per_step = -1");
  bad([](SamplerConfig& c) { c.top_p = 0.0f; }, "top_p = 0 is outside (0, 1]");
  bad([](SamplerConfig& c) { c.top_p = 1.5f; }, "top_p = 1.5 is outside (0, 1]");
  bad([](SamplerConfig& c) { c.top_k = -2; }, "top_k = -2");
  bad([](SamplerConfig& c) { c.temperature = -0.5f; }, "temperature = -0.5");
  bad([](SamplerConfig& c) { c.temperature = NAN; }, "temperature");
  bad([](SamplerConfig& c) { c.alg_temp = -1.0f; }, "alg_temp = -1");
  bad([](SamplerConfig& c) { c.eps = 0.0f; }, "eps = 0 is outside (0, 1)");
  bad([](SamplerConfig& c) { c.eps = 1.0f; }, "eps = 1 is outside (0, 1)");
  bad([](SamplerConfig& c) { c.alg = static_cast<UnmaskAlg>(9); }, "unknown alg value 9");
  bad([](SamplerConfig& c) { c.alg = UnmaskAlg::ConfidenceThreshold; c.confidence_threshold = 0.0f; },
      "confidence_threshold = 0");
  bad([](SamplerConfig& c) { c.pad_id = c.mask_id; }, "must differ");
  // steps > max_new_tokens is fine when tokens_per_step decides the steps
  SamplerConfig c;
  c.steps = 1000;
  c.tokens_per_step = 2;
  CHECK_NOTHROW(c.validate());

  // run-time errors: canvas, sample ids, vocabulary, a policy that breaks its contract
  REQUIRE_THROWS_WITH(Canvas::make({{1, 2}, {}}, 4, 60, 61), Contains("prompt 1 is empty"));
  REQUIRE_THROWS_WITH(Canvas::make({{1, 60}}, 4, 60, 61), Contains("contains the mask id 60"));
  HashDenoiser model(64, 60, 3.0f);
  Sampler s(small_cfg(UnmaskAlg::Entropy, 8, 8));
  REQUIRE_THROWS_WITH(s.generate(model, {{1, 2}}, {0, 1}), Contains("2 sample ids for 1 rows"));
  HashDenoiser tiny(32, 60, 3.0f);
  REQUIRE_THROWS_WITH(s.generate(tiny, {{1, 2}}, {0}), Contains("outside the model vocabulary of 32"));
  struct Dup final : UnmaskPolicy {
    Confidence confidence() const override { return Confidence::Prob; }
    int64_t select(const UnmaskRow&, int32_t* chosen) override {
      chosen[0] = chosen[1] = 0;
      return 2;
    }
  };
  Sampler d(small_cfg(UnmaskAlg::Entropy, 8, 8), std::make_unique<Dup>());
  REQUIRE_THROWS_WITH(d.generate(model, {{1, 2}}, {0}), Contains("unmask policy chose candidate 0"));
}

TEST_CASE("rollout: canvas left padding, key mask and position ids per spec §1.4", "[unit][rollout]") {
  const Canvas c = Canvas::make({{5, 6, 7}, {8}}, 2, 60, 61);
  CHECK(c.prompt_len == 3);
  CHECK(c.len == 5);
  CHECK(c.tokens == std::vector<int32_t>{5, 6, 7, 60, 60, 61, 61, 8, 60, 60});
  CHECK(c.key_mask == std::vector<uint8_t>{1, 1, 1, 1, 1, 0, 0, 1, 1, 1});
  CHECK(c.pos == std::vector<int32_t>{0, 1, 2, 3, 4, 1, 1, 0, 1, 2});
  CHECK(c.masked(1) == 2);
  const Canvas u = Canvas::make({{5, 6}, {7, 8}}, 2, 60, 61);
  CHECK(u.key_mask_or_null() == nullptr);  // "full": no row padded
  CHECK(u.pos_or_null() == nullptr);
}

TEST_CASE("rollout: sample_tokens greedy, ties and confidences", "[unit][rollout]") {
  TokenSampler ts(6, 0.0f, 1.0f, 0);
  SampledToken st;
  std::vector<float> z = {1.0f, 3.0f, 3.0f, 0.0f, -1.0f, 2.0f};
  sample_probs(ts, z, 0.9, Confidence::Prob, &st);
  CHECK(st.token == 1);  // argmax, lowest id on ties; u ignored at temperature 0
  double s = 0;
  for (float v : z) s += std::exp(v - 3.0);
  CHECK(st.confidence == Approx(1.0 / s));
  sample_probs(ts, z, 0.0, Confidence::Margin, &st);
  CHECK(st.confidence == 0.0f);  // p_(1) == p_(2)
  const std::vector<float> q = {0.4f, 0.2f, 0.2f, 0.2f};
  TokenSampler t4(4, 0.0f, 1.0f, 0);
  sample_probs(t4, log_probs(q, 4), 0.0, Confidence::NegEntropy, &st);
  CHECK(st.confidence == Approx(0.4 * std::log(0.4) + 3 * 0.2 * std::log(0.2)).epsilon(1e-5));
  sample_probs(t4, log_probs(q, 4), 0.0, Confidence::Margin, &st);
  CHECK(st.confidence == Approx(0.2).epsilon(1e-5));
  // non-finite logits are an error
  std::vector<float> bad = {NAN, NAN, NAN, NAN};
  REQUIRE_THROWS_WITH(t4.sample(bad.data(), 0.0, Confidence::Prob), Contains("non-finite"));
}

TEST_CASE("rollout: top-p keeps the first token crossing the threshold and the top-1, ties by id",
          "[unit][rollout]") {
  {
    TokenSampler ts(4, 0.0f, 0.7f, 0);
    const auto p = sample_probs(ts, log_probs({0.15f, 0.5f, 0.05f, 0.3f}, 4));
    CHECK(ts.kept() == 2);  // cum 0.5, 0.8: the 0.3 token crosses 0.7 and stays
    CHECK(p[1] == Approx(0.625));
    CHECK(p[3] == Approx(0.375));
    CHECK(p[0] == 0.0f);
    CHECK(p[2] == 0.0f);
  }
  {
    TokenSampler ts(4, 0.0f, 1e-6f, 0);  // top-1 always kept
    const auto p = sample_probs(ts, log_probs({0.15f, 0.5f, 0.05f, 0.3f}, 4));
    CHECK(ts.kept() == 1);
    CHECK(p[1] == 1.0f);
  }
  {
    TokenSampler ts(4, 0.0f, 0.5f, 0);  // four equal logits: cum .25 .5 .75 1 -> ranks 0..2 kept, id 3 goes
    const auto p = sample_probs(ts, {2.0f, 2.0f, 2.0f, 2.0f});
    CHECK(p == std::vector<float>{1.0f / 3, 1.0f / 3, 1.0f / 3, 0.0f});
  }
  // temperature comes first: top-p sees the tempered distribution
  {
    TokenSampler cold(3, 0.5f, 0.6f, 0), hot(3, 2.0f, 0.6f, 0);
    sample_probs(cold, {2.0f, 1.0f, 0.0f});
    sample_probs(hot, {2.0f, 1.0f, 0.0f});
    CHECK(cold.kept() == 1);
    CHECK(hot.kept() == 2);
  }
  // the O(V) quickselect agrees with a full sort on random rows
  const int64_t V = 3000;
  RngStream rng(5, RngPurpose::Test, 0, 0);
  for (float top_p : {0.05f, 0.5f, 0.9f, 0.99f}) {
    for (int rep = 0; rep < 4; ++rep) {
      std::vector<float> z(V);
      rng.fill_normal(z.data(), V, 0.0f, 1.0f + 2.0f * rep, static_cast<uint64_t>(rep) * V);
      for (int64_t v = 0; v < V; v += 97) z[static_cast<size_t>(v)] = z[0];  // ties
      std::vector<int32_t> order(V);
      std::iota(order.begin(), order.end(), 0);
      std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return z[a] > z[b] || (z[a] == z[b] && a < b); });
      double total = 0;
      for (float v : z) total += std::exp(static_cast<double>(v - z[order[0]]));
      std::vector<uint8_t> want(V, 0);
      double cum = 0;
      for (int64_t r = 0; r < V; ++r) {
        want[static_cast<size_t>(order[r])] = 1;
        cum += std::exp(static_cast<double>(z[order[r]] - z[order[0]])) / total;
        if (cum > top_p) break;
      }
      TokenSampler ts(V, 0.0f, top_p, 0);
      const auto p = sample_probs(ts, z);
      int64_t mismatches = 0;
      for (int64_t v = 0; v < V; ++v) mismatches += (p[static_cast<size_t>(v)] > 0.0f) != (want[static_cast<size_t>(v)] == 1);
      CHECK(mismatches == 0);
    }
  }
}

TEST_CASE("rollout: top-k keeps ties at the k-th value and runs after top-p", "[unit][rollout]") {
  {
    TokenSampler ts(4, 0.0f, 1.0f, 2);
    const auto p = sample_probs(ts, {3.0f, 2.0f, 2.0f, 1.0f});
    CHECK(ts.kept() == 3);
    CHECK(p[3] == 0.0f);
  }
  {
    TokenSampler ts(4, 0.0f, 1.0f, 1);
    const auto p = sample_probs(ts, {0.0f, 2.0f, 1.0f, 1.5f});
    CHECK(p == std::vector<float>{0.0f, 1.0f, 0.0f, 0.0f});
  }
  {
    TokenSampler ts(4, 0.0f, 1.0f, 99);  // k clipped to V: no filtering
    sample_probs(ts, {0.0f, 2.0f, 1.0f, 1.5f});
    CHECK(ts.kept() == 4);
  }
  {
    TokenSampler ts(4, 0.0f, 0.7f, 3);  // top-p leaves 2 (< k): top-k removes nothing more
    sample_probs(ts, log_probs({0.15f, 0.5f, 0.05f, 0.3f}, 4));
    CHECK(ts.kept() == 2);
  }
  // the draw only ever returns kept tokens, with the filtered probabilities
  TokenSampler ts(4, 1.0f, 1.0f, 2);
  std::vector<int> hits(4, 0);
  RngStream rng(9, RngPurpose::Test, 0, 0);
  for (int i = 0; i < 20000; ++i) {
    std::vector<float> z = log_probs({0.1f, 0.3f, 0.2f, 0.4f}, 4);
    ++hits[static_cast<size_t>(ts.sample(z.data(), rng.uniform_f64(static_cast<uint64_t>(i)), Confidence::None).token)];
  }
  CHECK(hits[0] == 0);
  CHECK(hits[2] == 0);
  CHECK(hits[3] / 20000.0 == Approx(4.0 / 7).margin(0.02));
}

TEST_CASE("rollout: entropy, margin and maskgit_plus rank hand-made positions differently", "[unit][rollout]") {
  // offset 0: [.5 .5 0 0] margin 0, -H -0.69; offset 1: [.4 .2 .2 .2] margin .2, -H -1.33;
  // offset 2: uniform, margin 0, -H -1.39. N = 3, steps = 2: step 0 commits int(3 (1 - ts1)) = 1.
  const int64_t V = 8;
  TableDenoiser model(2, {log_probs({0.5f, 0.5f}, V), log_probs({0.4f, 0.2f, 0.2f, 0.2f}, V),
                          log_probs({0.25f, 0.25f, 0.25f, 0.25f}, V)});
  const auto first = [&](UnmaskAlg alg) {
    SamplerConfig c = small_cfg(alg, 3, 2);
    c.mask_id = 7;
    c.pad_id = 6;
    Sampler s(c);
    Canvas canvas = Canvas::make({{1, 2}}, 3, 7, 6);
    StepRecord rec;
    REQUIRE(s.step(model, canvas, {0}, 0, &rec) == 1);
    REQUIRE(rec.commits.size() == 1);
    return rec.commits[0];
  };
  const StepCommit e = first(UnmaskAlg::Entropy), m = first(UnmaskAlg::TopkMargin), g = first(UnmaskAlg::MaskgitPlus);
  CHECK(e.col == 2);
  CHECK(e.confidence == Approx(std::log(0.5)).epsilon(1e-5));
  CHECK(m.col == 3);
  CHECK(m.confidence == Approx(0.2).epsilon(1e-5));
  CHECK(m.token == 0);
  CHECK(g.col == 2);
  CHECK(g.confidence == Approx(0.5).epsilon(1e-5));
}

TEST_CASE("rollout: greedy generation is deterministic and follows the schedule", "[unit][rollout]") {
  HashDenoiser model(64, 60, 4.0f);
  SamplerConfig c = small_cfg(UnmaskAlg::Entropy, 32, 16);
  Sampler s(c);
  std::vector<StepRecord> rec;
  const Canvas a = s.generate(model, {{1, 2, 3}, {4, 5, 6}}, {0, 1}, &rec);
  const Canvas b = Sampler(c).generate(model, {{1, 2, 3}, {4, 5, 6}}, {0, 1});
  CHECK(a.tokens == b.tokens);
  CHECK(a.masked(0) == 0);
  CHECK(a.masked(1) == 0);
  const std::vector<int64_t> k = s.schedule().counts(32);
  REQUIRE(rec.size() == 16);
  std::set<std::pair<int32_t, int32_t>> seen;
  for (size_t i = 0; i < rec.size(); ++i) {
    CHECK(static_cast<int64_t>(rec[i].commits.size()) == 2 * k[i]);
    for (const StepCommit& cm : rec[i].commits) {
      CHECK(seen.insert({cm.row, cm.col}).second);  // never committed twice, never re-masked
      CHECK(a.tokens[static_cast<size_t>(cm.row * a.len + cm.col)] == cm.token);
    }
  }
  CHECK(seen.size() == 64);
  // temperature 0: no dependence on the seed
  c.seed = 99;
  CHECK(Sampler(c).generate(model, {{1, 2, 3}, {4, 5, 6}}, {0, 1}).tokens == a.tokens);
}

TEST_CASE("rollout: origin commits each masked position with probability 1 - s/t", "[unit][rollout]") {
  HashDenoiser model(64, 60, 2.0f);
  SamplerConfig c = small_cfg(UnmaskAlg::Origin, 256, 4);
  c.temperature = 1.0f;
  Sampler s(c);
  const float p = s.schedule().fraction(0);
  CHECK(p == Approx(1.0 - (1.0 - 0.999 / 4)).epsilon(1e-5));
  int64_t committed = 0;
  const int n_samples = 40;
  for (uint32_t id = 0; id < n_samples; ++id) {
    Canvas canvas = Canvas::make({{1, 2}}, 256, 60, 61);
    const int64_t k = s.step(model, canvas, {id}, 0);
    CHECK(canvas.masked(0) == 256 - k);
    committed += k;
  }
  const double n = 256.0 * n_samples, mean = committed / n;
  CHECK(std::fabs(mean - p) < 5 * std::sqrt(p * (1 - p) / n));
  // the last step commits everything left; one forward per step that samples something
  std::vector<StepRecord> rec;
  const Canvas done = s.generate(model, {{1, 2}}, {3}, &rec);
  CHECK(done.masked(0) == 0);
  CHECK(rec.size() == 4);
}

TEST_CASE("rollout: padded batches equal unpadded single runs", "[unit][rollout]") {
  for (UnmaskAlg alg : {UnmaskAlg::Entropy, UnmaskAlg::Origin, UnmaskAlg::TopkMargin}) {
    SamplerConfig c = small_cfg(alg, 24, 8);
    c.temperature = 0.8f;
    c.top_p = 0.9f;
    c.top_k = 20;
    c.alg_temp = alg == UnmaskAlg::Entropy ? 0.5f : 0.0f;
    HashDenoiser model(64, 60, 4.0f);
    const auto prompts = prompts5();
    const std::vector<uint32_t> ids = {10, 11, 12, 13, 14};
    Sampler s(c);
    const Canvas batch = s.generate(model, prompts, ids);
    CHECK(model.saw_key_mask);
    for (size_t b = 0; b < prompts.size(); ++b) {
      const Canvas one = s.generate(model, {prompts[b]}, {ids[b]});
      CHECK_FALSE(model.saw_key_mask);
      CHECK(one.completion_tokens(0) == batch.completion_tokens(static_cast<int64_t>(b)));
    }
  }
}

TEST_CASE("rollout: a sample's tokens do not depend on batch, order or chunking", "[unit][rollout]") {
  for (UnmaskAlg alg : {UnmaskAlg::Entropy, UnmaskAlg::Origin, UnmaskAlg::MaskgitPlus}) {
    SamplerConfig c = small_cfg(alg, 16, 16);
    c.temperature = 1.0f;
    c.top_p = 0.95f;
    c.alg_temp = alg == UnmaskAlg::MaskgitPlus ? 1.0f : 0.0f;
    HashDenoiser model(64, 60, 3.0f);
    // five prompts of equal length (no padding) so only batch composition changes
    const std::vector<std::vector<int32_t>> prompts = {{1, 2, 3}, {4, 5, 6}, {7, 8, 9}, {10, 11, 12}, {1, 2, 3}};
    const std::vector<uint32_t> ids = {100, 101, 102, 103, 104};
    Sampler s(c);
    const Canvas batch = s.generate(model, prompts, ids);
    const Canvas alone = s.generate(model, {prompts[2]}, {ids[2]});
    CHECK(alone.completion_tokens(0) == batch.completion_tokens(2));
    const Canvas rev = s.generate(model, {prompts.rbegin(), prompts.rend()}, {ids.rbegin(), ids.rend()});
    for (int64_t b = 0; b < 5; ++b) CHECK(rev.completion_tokens(4 - b) == batch.completion_tokens(b));
    // same prompt, different sample id: a different sample
    CHECK(batch.completion_tokens(0) != batch.completion_tokens(4));
    Sampler chunked(c);
    chunked.set_chunk_rows(3);
    CHECK(chunked.generate(model, prompts, ids).tokens == batch.tokens);
    model.preferred_rows = 2;  // the model's preferred chunk (a GPU's 256), used when none is set
    CHECK(Sampler(c).generate(model, prompts, ids).tokens == batch.tokens);
    model.preferred_rows = 0;
    // another seed changes the samples
    c.seed = 4321;
    CHECK(Sampler(c).generate(model, prompts, ids).tokens != batch.tokens);
  }
}

TEST_CASE("rollout: a custom unmask policy decides the order", "[unit][rollout]") {
  struct LeftmostFirst final : UnmaskPolicy {
    Confidence confidence() const override { return Confidence::None; }
    int64_t select(const UnmaskRow& row, int32_t* chosen) override {
      const int64_t k = std::max<int64_t>(1, std::min(row.k, row.n));
      for (int64_t j = 0; j < k; ++j) chosen[j] = static_cast<int32_t>(j);  // candidates ascend by offset
      return k;
    }
  };
  HashDenoiser model(64, 60, 4.0f);
  SamplerConfig c = small_cfg(UnmaskAlg::Entropy, 20, 10);
  c.temperature = 1.0f;
  Sampler s(c, std::make_unique<LeftmostFirst>());
  std::vector<StepRecord> rec;
  const Canvas out = s.generate(model, {{1, 2, 3}, {4, 5}}, {0, 1}, &rec);
  CHECK(out.masked(0) == 0);
  int32_t next[2] = {0, 0};
  for (const StepRecord& r : rec)
    for (const StepCommit& cm : r.commits) {
      CHECK(cm.col - out.prompt_len == next[cm.row]);  // strictly left to right
      ++next[cm.row];
    }
  CHECK(next[0] == 20);
  CHECK(next[1] == 20);
}

TEST_CASE("rollout: confidence_threshold commits every confident position, at least one", "[unit][rollout]") {
  // offsets 0..3 near-certain; 4..7 uncertain, confidence rising with the offset (offset 4 is a 50/50 tie)
  const int64_t V = 8;
  std::vector<std::vector<float>> table;
  for (int o = 0; o < 4; ++o) table.push_back(log_probs({0.01f, 0.97f, 0.01f, 0.01f}, V));
  for (int o = 0; o < 4; ++o) table.push_back(log_probs({0.5f - 0.05f * o, 0.5f + 0.05f * o}, V));
  TableDenoiser model(1, table);
  SamplerConfig c = small_cfg(UnmaskAlg::ConfidenceThreshold, 8, 8);
  c.mask_id = 7;
  c.pad_id = 6;
  c.confidence_threshold = 0.9f;
  std::vector<StepRecord> rec;
  const Canvas out = Sampler(c).generate(model, {{3}}, {0}, &rec);
  REQUIRE(rec.size() == 5);  // 4 confident at once, then one per step; stops when nothing is masked
  std::vector<int32_t> cols;
  for (const StepCommit& cm : rec[0].commits) cols.push_back(cm.col);
  CHECK(cols == std::vector<int32_t>{1, 2, 3, 4});
  for (size_t i = 1; i < 5; ++i) {
    REQUIRE(rec[i].commits.size() == 1);
    CHECK(rec[i].commits[0].col == static_cast<int32_t>(9 - i));  // the most confident of the rest
  }
  CHECK(out.completion_tokens(0) == std::vector<int32_t>{1, 1, 1, 1, 0, 1, 1, 1});  // argmax tie -> id 0
}

TEST_CASE("rollout: streaming callback and terminal renderer", "[unit][rollout]") {
  HashDenoiser model(64, 60, 4.0f);
  Sampler s(small_cfg(UnmaskAlg::Entropy, 8, 4));
  std::ostringstream term;
  CanvasRenderer r([](int32_t t) { return std::string(1, static_cast<char>('a' + t % 26)); }, 60, term, "_");
  std::vector<int64_t> masks, steps;
  const Canvas out = s.generate(model, {{1, 2}}, {0}, nullptr, [&](int64_t i, const Canvas& c) {
    steps.push_back(i);
    masks.push_back(c.masked(0));
    r.draw(i, c);
  });
  CHECK(steps == std::vector<int64_t>{0, 1, 2, 3});
  CHECK(std::is_sorted(masks.rbegin(), masks.rend()));
  CHECK(masks.back() == 0);
  const std::string t = term.str();
  CHECK(t.rfind("\r\x1b[J", 0) == 0);                      // first frame: no cursor movement
  CHECK(t.find("\x1b[2A\r\x1b[J") != std::string::npos);   // later frames erase the two lines drawn
  const std::string frame0 = t.substr(0, t.find("\x1b[2A"));  // "step 0\n" + 8 slots
  CHECK(std::count(frame0.begin(), frame0.end(), '_') == masks[0]);
  CHECK(r.text(out, 0).find('_') == std::string::npos);
  Canvas fresh = Canvas::make({{1, 2}}, 3, 60, 61);
  CHECK(r.text(fresh, 0) == "___");
}

TEST_CASE("sampler: lockstep runs one forward per step, also for steps that unmask nothing", "[unit][sampler]") {
  // At ZeRO-3 every forward gathers each unit collectively, so the number of forwards must not depend on this
  // rank's canvas. origin with 6 tokens in 6 steps unmasks int(6 (1 - s/t)) = 0 tokens at step 0; a canvas with
  // nothing masked (all prompts' completions done) still steps.
  HashDenoiser den(64, 60, 4.0f);
  SamplerConfig cfg = small_cfg(UnmaskAlg::Origin, 6, 6);
  cfg.lockstep = true;
  Sampler s(cfg);
  const std::vector<uint32_t> ids = {0, 1, 2, 3, 4};
  std::vector<StepRecord> rec;
  Canvas c = s.generate(den, prompts5(), ids, &rec);
  CHECK(den.forwards == 6);
  CHECK(rec.size() == 6);
  for (int64_t b = 0; b < c.batch; ++b) CHECK(c.masked(b) == 0);
  den.forwards = 0;
  s.run(den, c, ids);  // nothing left to unmask
  CHECK(den.forwards == 6);
  Sampler free_running(small_cfg(UnmaskAlg::Origin, 6, 6));  // inference: stops once nothing is masked
  den.forwards = 0;
  free_running.run(den, c, ids);
  CHECK(den.forwards == 0);
}
