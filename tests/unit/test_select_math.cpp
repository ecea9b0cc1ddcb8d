// The host + device arithmetic of the CUDA token sampler (backend/select_math.h, backend/sample_row.h) on the CPU:
// float keys, rank keys, the exp polynomial against the CPU sampler's SIMD exp, the radix select against
// nth_element and a rank-order scan, the top-p quickselect replay against a transliteration of TokenSampler's,
// and the whole row algorithm (run on the emulated device block, tests/common/sample_emulation.h) against
// TokenSampler itself on random and adversarial rows.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <vector>

#include "../common/sample_emulation.h"
#include "../common/sampler_rows.h"
#include "cgrpo/backend/cpu_backend.h"
#include "cgrpo/core/philox.h"
#include "cgrpo/core/simd_exp.h"
#include "cgrpo/model/dream_model.h"
#include "cgrpo/rollout/sampler.h"
#include "cgrpo/rollout/token_sampler.h"
#include "cgrpo/train/model_denoiser.h"

using namespace cgrpo;
using cgrpo::test::EmulatedBlock;
using cgrpo::test::NamedRow;

namespace {

std::vector<float> special_floats() {
  const float inf = std::numeric_limits<float>::infinity(), mx = std::numeric_limits<float>::max();
  const float tiny = std::numeric_limits<float>::denorm_min(), mn = std::numeric_limits<float>::min();
  return {-inf, -mx, -1e30f, -3.5f, -1.0f, -mn, -tiny, -0.0f, 0.0f, tiny, mn, 1e-30f, 0.5f, 1.0f,
          1.0000001f, 3.5f, 1e30f, mx, inf};
}

// TokenSampler::top_p_filter transliterated (keys, masses, candidates, quickselect): the kept ids in the order the
// draw walks them.
std::vector<int32_t> cpu_top_p_order(const std::vector<float>& z, float top_p, float temperature) {
  const int64_t V = int64_t(z.size());
  std::vector<float> t(z);
  if (temperature > 0.0f)
    for (float& x : t) x /= temperature;
  const float m = simd::max_of(t.data(), V);
  std::vector<float> e(static_cast<size_t>(V));
  double sum = 0.0;
  for (int64_t v = 0; v < V; ++v) sum += e[size_t(v)] = sel::exp_nonpos(t[size_t(v)] - m);
  const double target = double(top_p) * sum;
  std::vector<int32_t> idx;
  const float cut = m - 16.0f;
  for (int64_t v = 0; v < V; ++v)
    if (t[size_t(v)] >= cut) idx.push_back(int32_t(v));
  double cand = 0.0;
  for (int32_t v : idx) cand += e[size_t(v)];
  if (!(cand > target)) {
    idx.resize(size_t(V));
    std::iota(idx.begin(), idx.end(), 0);
  }
  struct R {
    uint64_t key;
    float e;
  };
  std::vector<R> c;
  for (int32_t v : idx) c.push_back({sel::rank_key(sel::float_key(t[size_t(v)]), uint32_t(v)), e[size_t(v)]});
  const int64_t n = int64_t(c.size());
  double acc = 0.0;
  int64_t lo = 0, hi = n, nkeep = n;
  while (lo < hi) {
    std::swap(c[size_t(lo + (hi - lo) / 2)], c[size_t(hi - 1)]);
    const R piv = c[size_t(hi - 1)];
    int64_t g = lo;
    double mass = 0.0;
    for (int64_t i = lo; i < hi - 1; ++i) {
      const R a = c[size_t(i)];
      const bool above = a.key > piv.key;
      c[size_t(i)] = c[size_t(g)];
      c[size_t(g)] = a;
      g += above;
      mass += above ? a.e : 0.0f;
    }
    std::swap(c[size_t(g)], c[size_t(hi - 1)]);
    if (acc + mass > target) {
      hi = g;
      nkeep = g;
      continue;
    }
    acc += mass;
    if (acc + piv.e > target) {
      nkeep = g + 1;
      break;
    }
    acc += piv.e;
    lo = g + 1;
  }
  nkeep = std::max<int64_t>(nkeep, 1);
  std::vector<int32_t> out;
  for (int64_t r = 0; r < nkeep; ++r) out.push_back(int32_t(sel::rank_key_id(c[size_t(r)].key)));
  return out;
}

bool conf_close(Confidence kind, float got, float want) {
  if (std::isnan(want)) return std::isnan(got);  // entropy with -inf logits: 0 * -inf, on both
  const double d = std::abs(double(got) - double(want));
  if (kind == Confidence::NegEntropy) return d <= 1e-6 * (1.0 + std::abs(double(want)));
  return d <= std::ldexp(std::abs(double(want)), -21) + 1e-37;
}

// a sequential radix select by counts over value keys (the pick logic alone), for the k-th largest value
float radix_kth(const std::vector<float>& z, int64_t k) {
  sel::RadixSelect s;
  while (!s.done()) {
    uint32_t cnt[sel::kRadixBuckets] = {};
    for (float x : z)
      if (s.matches(sel::value_key(x))) ++cnt[s.digit(sel::value_key(x))];
    s.pick_count(cnt, k);
  }
  return sel::key_float(s.prefix);
}

}  // namespace

TEST_CASE("select math: float keys order like floats, -0 below +0, and round trip", "[unit][select]") {
  const std::vector<float> f = special_floats();
  for (size_t i = 0; i < f.size(); ++i) {
    const uint32_t ki = sel::float_key(f[i]);
    uint32_t a, b;
    const float back = sel::key_float(ki);
    std::memcpy(&a, &f[i], 4);
    std::memcpy(&b, &back, 4);
    CHECK(a == b);
    for (size_t j = 0; j < f.size(); ++j) {
      INFO(f[i] << " vs " << f[j]);
      CHECK((i < j) == (ki < sel::float_key(f[j])));  // special_floats() is strictly increasing in key order
      CHECK((f[i] < f[j]) == (sel::value_key(f[i]) < sel::value_key(f[j])));
      CHECK((f[i] == f[j]) == (sel::value_key(f[i]) == sel::value_key(f[j])));
      // {x : value_key(x) >= value_key(y)} == {x : float_key(x) >= value_key_floor(value_key(y))}
      CHECK((f[i] >= f[j]) == (ki >= sel::value_key_floor(sel::value_key(f[j]))));
    }
  }
  CHECK(sel::float_key(-0.0f) == sel::kKeyNegZero);
  CHECK(sel::float_key(0.0f) == sel::kKeyPosZero);
  // random pairs
  const RngStream rng(3, RngPurpose::Test, 0, 0);
  std::vector<float> r(20000);
  rng.fill_normal(r.data(), int64_t(r.size()), 0.0f, 100.0f);
  for (size_t i = 0; i + 1 < r.size(); ++i) {
    CHECK((r[i] < r[i + 1]) == (sel::float_key(r[i]) < sel::float_key(r[i + 1])));
  }
}

TEST_CASE("select math: rank keys order by logit desc then id asc", "[unit][select]") {
  const std::vector<float> z = {1.0f, 3.0f, 3.0f, -0.0f, 0.0f, -2.0f, 3.0f, 0.0f};
  std::vector<int32_t> ids(z.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::vector<int32_t> by_key = ids;
  std::sort(by_key.begin(), by_key.end(), [&](int32_t a, int32_t b) {
    return sel::rank_key(sel::float_key(z[size_t(a)]), uint32_t(a)) >
           sel::rank_key(sel::float_key(z[size_t(b)]), uint32_t(b));
  });
  CHECK(by_key == std::vector<int32_t>{1, 2, 6, 0, 4, 7, 3, 5});  // +0 ranks above -0 (TokenSampler's bits)
  for (int32_t v : ids)
    CHECK(sel::rank_key_id(sel::rank_key(sel::float_key(z[size_t(v)]), uint32_t(v))) == uint32_t(v));
  CHECK(sel::rank_floor(sel::float_key(3.0f)) < sel::rank_key(sel::float_key(3.0f), 0xfffffffeu));
  CHECK(sel::rank_floor(sel::float_key(3.0f)) > sel::rank_key(sel::float_key(2.9999998f), 0u));
}

TEST_CASE("select math: exp_nonpos is the CPU sampler's SIMD exp bit for bit", "[unit][select]") {
#if defined(CGRPO_SIMD_EXP)
  std::vector<float> xs = {0.0f, -0.0f, -1e-30f, -std::numeric_limits<float>::denorm_min(), -87.33654f, -87.336533f,
                           -87.33655f, -88.0f, -103.0f, -1e30f, -std::numeric_limits<float>::infinity(),
                           std::numeric_limits<float>::quiet_NaN()};
  const RngStream rng(5, RngPurpose::Test, 0, 1);
  std::vector<float> r(200000);
  rng.fill_uniform(r.data(), int64_t(r.size()));
  for (size_t i = 0; i < r.size(); ++i) xs.push_back(-95.0f * r[i] * (i % 3 == 0 ? 0.01f : 1.0f));
  for (float x = 0.0f; x > -0.5f; x = std::nextafter(x, -1.0f) - 1e-6f) xs.push_back(x);
  size_t bad = 0;
  for (float x : xs) {
    const float a = sel::exp_nonpos(x), b = simd::exp_neg1(x);
    uint32_t ua, ub;
    std::memcpy(&ua, &a, 4);
    std::memcpy(&ub, &b, 4);
    if (ua != ub && ++bad < 5) FAIL_CHECK("exp(" << x << "): " << a << " vs SIMD " << b);
  }
  CHECK(bad == 0);
  CHECK(sel::exp_nonpos(0.0f) == 1.0f);
  CHECK(sel::exp_nonpos(-std::numeric_limits<float>::infinity()) == 0.0f);
#else
  WARN("built without AVX2/FMA: TokenSampler uses std::exp, the device its polynomial (results differ by ~1 ulp)");
#endif
}

TEST_CASE("select math: tie_index is the first crossing inside a group of equal masses", "[unit][select]") {
  const auto scan = [](double above, double e, int64_t n, double target) {
    for (int64_t j = 0; j < n; ++j)
      if (std::fma(double(j + 1), e, above) > target) return j;
    return n - 1;
  };
  const RngStream rng(9, RngPurpose::Test, 0, 2);
  for (uint64_t i = 0; i < 20000; ++i) {
    const int64_t n = 1 + int64_t(rng.uniform(4 * i) * (i % 2 ? 7.0f : 3000.0f));
    const double e = i % 5 == 0 ? 1.0 : double(rng.uniform(4 * i + 1)) + 1e-3;
    const double above = i % 3 == 0 ? 0.0 : rng.uniform_f64(4 * i + 2) * 10.0;
    const double target = above + rng.uniform_f64(4 * i + 3) * e * double(n) * 1.1;
    INFO("n " << n << " e " << e << " above " << above << " target " << target);
    REQUIRE(sel::tie_index(above, e, n, target) == scan(above, e, n, target));
  }
  // exact boundaries: four equal tokens, target 2 -> cum 1, 2, 3: the third (j = 2) is the first above 2
  CHECK(sel::tie_index(0.0, 1.0, 4, 2.0) == 2);
  CHECK(sel::tie_index(0.0, 1.0, 4, 0.0) == 0);
  CHECK(sel::tie_index(0.0, 1.0, 4, 10.0) == 3);  // none crosses: the last
  CHECK(sel::tie_index(5.0, 1.0, 1, 0.0) == 0);
}

TEST_CASE("select math: radix count select finds nth_element's k-th largest value", "[unit][select]") {
  for (int64_t V : {1, 2, 7, 1000, 4099}) {
    for (const NamedRow& row : test::sampler_rows(V, 11)) {
      for (int64_t k : {int64_t(1), int64_t(2), int64_t(50), V / 2 + 1, V}) {
        if (k < 1 || k > V) continue;
        std::vector<float> vals = row.z;
        std::nth_element(vals.begin(), vals.begin() + (k - 1), vals.end(), std::greater<float>());
        INFO(row.name << " V " << V << " k " << k);
        CHECK(radix_kth(row.z, k) == vals[size_t(k - 1)]);  // == : -0 and +0 are the same value here
      }
    }
  }
}

TEST_CASE("select math: radix mass select and the tie index give TokenSampler's top-p cut", "[unit][select]") {
  for (int64_t V : {1, 2, 7, 1000, 151936}) {
    for (const NamedRow& row : test::sampler_rows(V, 12)) {
      for (float top_p : {0.95f, 0.5f, 1e-6f, 0.999f}) {
        INFO(row.name << " V " << V << " top_p " << top_p);
        std::vector<float> a = row.z, b = row.z;
        TokenSampler ts(V, 0.0f, top_p, 0);
        ts.sample(a.data(), 0.0, Confidence::None);
        EmulatedBlock x(b.data(), V);
        const sel::ArgMax am = x.temper_argmax(0.0f);
        const sel::RowStats st = x.all_stats(am.m, am.amax);
        const sel::RankCross c = sel::rank_crossing(x, double(top_p) * st.sum, 0, am.m);
        CHECK(c.count_above + c.j + 1 == ts.kept());
        // the kept set: the first kept() ranks
        std::vector<float> p(static_cast<size_t>(V));
        ts.probs(p.data());
        const int32_t last = x.id_search(0, am.m, double(c.j), true, c.key);
        const uint64_t lo = sel::rank_key(c.key, uint32_t(last));
        int64_t mismatches = 0;
        for (int64_t v = 0; v < V; ++v) {
          const bool kept = sel::rank_key(sel::float_key(b[size_t(v)]), uint32_t(v)) >= lo;
          mismatches += kept ? false : p[size_t(v)] > 0.0f;
        }
        CHECK(mismatches == 0);
      }
      if (V <= 1000)  // top-k: the count select over the value keys
        for (int64_t k : {1, 2, 50}) {
          std::vector<float> a = row.z;
          TokenSampler ts(V, 0.0f, 1.0f, k);
          ts.sample(a.data(), 0.0, Confidence::None);
          std::vector<float> b = row.z;
          const float kth = radix_kth(b, std::min(k, V));
          int64_t n = 0;
          for (float v : b) n += v >= kth;
          INFO(row.name << " V " << V << " k " << k);
          CHECK(n == ts.kept());
        }
    }
  }
}

TEST_CASE("select math: the replayed top-p quickselect leaves TokenSampler's draw order", "[unit][select]") {
  for (int64_t V : {2, 7, 1000, 20000}) {
    for (const NamedRow& row : test::sampler_rows(V, 13)) {
      for (float T : {1.0f, 0.7f})
        for (float top_p : {0.95f, 0.5f, 0.9999f}) {
          INFO(row.name << " V " << V << " T " << T << " top_p " << top_p);
          const std::vector<int32_t> want = cpu_top_p_order(row.z, top_p, T);
          if (int64_t(want.size()) == V) continue;  // top-p kept everything: the draw walks ids
          std::vector<float> z = row.z;
          EmulatedBlock x(z.data(), V);
          sel::sample_row(x, V, TokenSampling{T, top_p, 0}, Confidence::None, 0.5);
          REQUIRE(int64_t(x.arrangement().size()) >= int64_t(want.size()));
          const std::vector<int32_t> got(x.arrangement().begin(), x.arrangement().begin() + int64_t(want.size()));
          CHECK(got == want);
        }
    }
  }
}

TEST_CASE("select math: the device row algorithm equals TokenSampler on adversarial rows", "[unit][select]") {
  int64_t rows = 0;
  for (int64_t V : {1, 7, 1000, 151936}) {
    const std::vector<NamedRow> named = test::sampler_rows(V, 14);
    for (const NamedRow& row : named) {
      for (float T : {0.0f, 0.7f, 1.0f})
        for (float top_p : {0.95f, 1.0f})
          for (int64_t top_k : {int64_t(0), int64_t(1), int64_t(50)}) {
            if (V == 151936 && (top_k == 1 || T == 0.7f)) continue;  // keep the big rows affordable
            const TokenSampling p{T, top_p, top_k};
            TokenSampler ts(V, p);
            for (Confidence kind : {Confidence::None, Confidence::Prob, Confidence::Margin, Confidence::NegEntropy})
              for (double u : {0.0, 0.37, 0.999999, 0.5 + 0.49 * std::sin(double(rows))}) {
                if (T == 0.0f && u != 0.0) continue;
                if (V == 151936 && kind != Confidence::NegEntropy && kind != Confidence::Prob) continue;
                std::vector<float> a = row.z, b = row.z;
                const SampledToken want = ts.sample(a.data(), u, kind);
                const sel::SampleRowResult got = test::emulate_sample_row(b.data(), V, p, kind, u);
                INFO(row.name << " V " << V << " T " << T << " top_p " << top_p << " top_k " << top_k << " kind "
                              << int(kind) << " u " << u << ": token " << got.token << " vs " << want.token
                              << ", confidence " << got.confidence << " vs " << want.confidence);
                REQUIRE(got.status == sel::kSampleOk);
                CHECK(got.token == want.token);
                CHECK(conf_close(kind, got.confidence, want.confidence));
                CHECK(std::memcmp(a.data(), b.data(), a.size() * 4) == 0);  // the same tempered logits
                ++rows;
              }
          }
    }
  }
  CHECK(rows > 1000);
}

TEST_CASE("select math: the device row algorithm on random rows and its error statuses", "[unit][select]") {
  const RngStream rng(21, RngPurpose::Test, 0, 3);
  for (uint32_t i = 0; i < 300; ++i) {
    const int64_t V = 1 + int64_t(rng.uniform(8 * i) * 3000.0f);
    std::vector<float> z(static_cast<size_t>(V));
    const float scale = 0.05f + 8.0f * rng.uniform(8 * i + 1);
    RngStream(21, RngPurpose::Test, 1, i).fill_normal(z.data(), V, 0.0f, scale);
    if (i % 4 == 0)  // quantised: ties everywhere
      for (float& v : z) v = std::round(v);
    const float T = i % 3 == 0 ? 0.0f : 0.3f + rng.uniform(8 * i + 2);
    const float top_p = i % 2 ? 0.95f : 0.3f + 0.7f * rng.uniform(8 * i + 3);
    const TokenSampling p{T, top_p, int64_t(i % 5 == 0 ? 0 : 1 + rng.uniform(8 * i + 4) * float(V))};
    const Confidence kind = static_cast<Confidence>(i % 4);
    const double u = rng.uniform_f64(8 * i + 5);
    std::vector<float> a = z, b = z;
    TokenSampler ts(V, p);
    const SampledToken want = ts.sample(a.data(), u, kind);
    const sel::SampleRowResult got = test::emulate_sample_row(b.data(), V, p, kind, u);
    INFO("row " << i << " V " << V << " T " << p.temperature << " top_p " << p.top_p << " top_k " << p.top_k);
    CHECK(got.token == want.token);
    CHECK(conf_close(kind, got.confidence, want.confidence));
  }
  std::vector<float> nan = {1.0f, NAN, 0.0f};
  CHECK(test::emulate_sample_row(nan.data(), 3, {}, Confidence::Prob, 0.0).status == sel::kSampleNaN);
  std::vector<float> inf = {1.0f, INFINITY, 0.0f};
  CHECK(test::emulate_sample_row(inf.data(), 3, {}, Confidence::Prob, 0.0).status == sel::kSampleNonFiniteMax);
  std::vector<float> ninf = {-INFINITY, -INFINITY};
  CHECK(test::emulate_sample_row(ninf.data(), 2, {}, Confidence::Prob, 0.0).status == sel::kSampleNonFiniteMax);
}

// ------------------------------------------------------------------------------------------- the fused path wiring

namespace {

// The model's logits only: the sampler's host path (logits() + TokenSampler), as before Denoiser::sample existed.
class LogitsOnly final : public Denoiser {
 public:
  explicit LogitsOnly(Denoiser& d) : d_(d) {}
  int64_t vocab() const override { return d_.vocab(); }
  void forward(int64_t B, int64_t L, const int32_t* t, const uint8_t* k, const int32_t* p) override {
    d_.forward(B, L, t, k, p);
  }
  void logits(int64_t R, const int32_t* rows, const int32_t* cols, float* out) override {
    d_.logits(R, rows, cols, out);
  }

 private:
  Denoiser& d_;
};

}  // namespace

TEST_CASE("select math: the model samples on its backend with the host path's exact results", "[unit][select]") {
  ModelConfig c = ModelConfig::preset("tiny");
  c.vocab_size = 301;
  c.mask_token_id = 300;
  c.pad_token_id = c.bos_token_id = c.eos_token_id = 299;
  const ParamLayout layout(c);
  std::vector<float> params(size_t(layout.total()));
  init_params(layout, params.data(), 77, 0.2f);
  const std::vector<std::vector<int32_t>> prompts = {{5, 6, 7}, {8}, {9, 10, 11, 12, 13}};
  const std::vector<uint32_t> ids = {3, 4, 5};
  int64_t calls = 0;
  for (int threads : {1, 3}) {  // 3: sample_rows splits each chunk's rows over the pool
    CpuBackend be(threads);
    DreamModel m(c, be);
    m.bind(params.data(), nullptr);
    ModelDenoiser fused(m);
    LogitsOnly host(fused);
    for (UnmaskAlg alg : {UnmaskAlg::Entropy, UnmaskAlg::Origin, UnmaskAlg::TopkMargin, UnmaskAlg::MaskgitPlus})
      for (float T : {0.0f, 1.0f})
        for (float top_p : {1.0f, 0.95f}) {
          SamplerConfig sc;
          sc.alg = alg;
          sc.max_new_tokens = 10;
          sc.steps = 5;
          sc.temperature = T;
          sc.top_p = top_p;
          sc.top_k = alg == UnmaskAlg::TopkMargin ? 20 : 0;
          sc.mask_id = 300;
          sc.pad_id = 299;
          sc.seed = 9;
          Sampler a(sc), b(sc);
          a.set_chunk_rows(4);
          b.set_chunk_rows(4);
          std::vector<StepRecord> ra, rb;
          const Canvas ca = a.generate(fused, prompts, ids, &ra);
          const Canvas cb = b.generate(host, prompts, ids, &rb);
          INFO(threads << " threads, " << to_string(alg) << " T " << T << " top_p " << top_p);
          CHECK(ca.tokens == cb.tokens);
          REQUIRE(ra.size() == rb.size());
          for (size_t s = 0; s < ra.size(); ++s) {
            REQUIRE(ra[s].commits.size() == rb[s].commits.size());
            for (size_t j = 0; j < ra[s].commits.size(); ++j) {
              CHECK(ra[s].commits[j].token == rb[s].commits[j].token);
              CHECK(ra[s].commits[j].col == rb[s].commits[j].col);
              CHECK(std::memcmp(&ra[s].commits[j].confidence, &rb[s].commits[j].confidence, 4) == 0);
            }
          }
          ++calls;
        }
  }
  CHECK(calls == 32);
}
