// CudaBackend::sample_rows against CpuBackend::sample_rows (TokenSampler, the oracle: identical tokens, confidences
// within 2^-21 relative (Prob, Margin) or 1e-6 (1 + |c|) (NegEntropy)) and against the host emulation of the kernel
// (tests/common/sample_emulation.h: the same bits); determinism; fatal inputs; and a whole generation with
// DreamModel on CUDA against the CPU backend.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <vector>

#include "../common/sample_emulation.h"
#include "../common/sampler_rows.h"
#include "cgrpo/backend/cpu_backend.h"
#include "cgrpo/backend/cuda_backend.h"
#include "cgrpo/core/philox.h"
#include "cgrpo/model/dream_model.h"
#include "cgrpo/rollout/sampler.h"
#include "cgrpo/train/model_denoiser.h"
#include "gpu_sampler_util.h"
#include "gpu_test_util.h"

using namespace cgrpo;
using Catch::Contains;

namespace {

using gpu_test::gpu;  // the process's one CudaBackend

bool conf_close(Confidence kind, float got, float want) {
  if (std::isnan(want)) return std::isnan(got);  // entropy with -inf logits: 0 * -inf on both
  const double d = std::abs(double(got) - double(want));
  if (kind == Confidence::NegEntropy) return d <= 1e-6 * (1.0 + std::abs(double(want)));
  return d <= std::ldexp(std::abs(double(want)), -21) + 1e-37;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

std::vector<double> uniforms(int64_t R, uint32_t seed) {
  std::vector<double> u(static_cast<size_t>(R));
  const RngStream rng(seed, RngPurpose::Test, 0, 7);
  for (int64_t r = 0; r < R; ++r)
    u[size_t(r)] = r % 5 == 0 ? 0.0 : r % 5 == 1 ? 0.999999 : rng.uniform_f64(uint64_t(r));
  return u;
}

const char* kind_name(Confidence k) {
  switch (k) {
    case Confidence::None: return "none";
    case Confidence::Prob: return "prob";
    case Confidence::Margin: return "margin";
    case Confidence::NegEntropy: return "neg-entropy";
  }
  return "?";
}

}  // namespace

TEST_CASE("cuda sample_rows: same tokens as the CPU backend, same bits as the emulated kernel", "[gpu][sampler]") {
  CpuBackend cpu(1);
  int64_t checked = 0, rank_draws = 0;
  for (int64_t V : {int64_t(1), int64_t(7), int64_t(1000), int64_t(151936)}) {
    std::vector<std::vector<float>> rows;
    std::vector<std::string> names;
    for (uint32_t seed : {31u, 32u})
      for (const test::NamedRow& nr : test::sampler_rows(V, seed)) rows.push_back(nr.z), names.push_back(nr.name);
    const int64_t R = int64_t(rows.size());
    const std::vector<double> u = uniforms(R, uint32_t(V));
    for (float T : {0.0f, 0.7f, 1.0f})
      for (float top_p : {0.95f, 1.0f})
        for (int64_t top_k : {int64_t(0), int64_t(1), int64_t(50)})
          for (Confidence kind : {Confidence::None, Confidence::Prob, Confidence::Margin, Confidence::NegEntropy}) {
            const TokenSampling s{T, top_p, top_k};
            const int64_t ld = (top_k == 1) ? V + 3 : V;  // a padded row stride too
            const test::SampledRows want = test::sample_on(cpu, rows, V, u, s, kind);
            const test::SampledRows got = test::sample_on(gpu(), rows, ld, u, s, kind);
            // the emulated kernel: every row for small V, a few for the big vocabulary (it is slow on the host)
            for (int64_t r = 0; r < R; ++r) {
              INFO("V " << V << " row " << r << " (" << names[size_t(r)] << ") T " << T << " top_p " << top_p
                        << " top_k " << top_k << " " << kind_name(kind) << " u " << u[size_t(r)] << ": token "
                        << got.tokens[size_t(r)] << " vs cpu " << want.tokens[size_t(r)] << ", confidence "
                        << got.conf[size_t(r)] << " vs cpu " << want.conf[size_t(r)]);
              CHECK(got.tokens[size_t(r)] == want.tokens[size_t(r)]);
              CHECK(conf_close(kind, got.conf[size_t(r)], want.conf[size_t(r)]));
              CHECK(std::memcmp(got.logits.data() + r * V, want.logits.data() + r * V, size_t(V) * 4) == 0);
              if (V < 151936 || (r % 7 == 0 && kind != Confidence::Margin)) {
                std::vector<float> z = rows[size_t(r)];
                const sel::SampleRowResult e = test::emulate_sample_row(z.data(), V, s, kind, u[size_t(r)]);
                CHECK(e.token == got.tokens[size_t(r)]);
                CHECK(same_bits(e.confidence, got.conf[size_t(r)]));
              }
              ++checked;
            }
            if (T > 0.0f && top_p < 1.0f) rank_draws += R;
          }
  }
  CHECK(checked > 5000);
  CHECK(rank_draws > 1000);
}

TEST_CASE("cuda sample_rows: deterministic run to run, any number of rows per launch", "[gpu][sampler]") {
  // 120 rows: more than the blocks the quickselect scratch budget allows (256 MiB / (4 V + 2) ints = 110), so
  // blocks run several rows in turn
  const int64_t V = 151936, R = 120;
  std::vector<std::vector<float>> rows;
  for (int64_t r = 0; r < R; ++r) {
    std::vector<float> z(static_cast<size_t>(V));
    RngStream(41, RngPurpose::Test, 1, uint32_t(r)).fill_normal(z.data(), V, 0.0f, 0.5f + float(r % 4));
    rows.push_back(std::move(z));
  }
  const std::vector<double> u = uniforms(R, 5);
  const TokenSampling s{1.0f, 0.95f, 0};
  const test::SampledRows first = test::sample_on(gpu(), rows, V, u, s, Confidence::NegEntropy);
  for (int rep = 0; rep < 3; ++rep) {
    const test::SampledRows again = test::sample_on(gpu(), rows, V, u, s, Confidence::NegEntropy);
    CHECK(again.tokens == first.tokens);
    for (int64_t r = 0; r < R; ++r) CHECK(same_bits(again.conf[size_t(r)], first.conf[size_t(r)]));
  }
  // one row at a time gives the same as all at once
  for (int64_t r = 0; r < R; r += 13) {
    const test::SampledRows one =
        test::sample_on(gpu(), {rows[size_t(r)]}, V, {u[size_t(r)]}, s, Confidence::NegEntropy);
    CHECK(one.tokens[0] == first.tokens[size_t(r)]);
    CHECK(same_bits(one.conf[0], first.conf[size_t(r)]));
  }
  CpuBackend cpu(1);
  const test::SampledRows want = test::sample_on(cpu, rows, V, u, s, Confidence::NegEntropy);
  CHECK(first.tokens == want.tokens);
}

TEST_CASE("cuda sample_rows: NaN and infinite logits are fatal, naming the row, host logits are rejected",
          "[gpu][sampler]") {
  const std::vector<double> u = {0.5, 0.5};
  const std::vector<float> ok = {0.0f, 1.0f, 2.0f};
  REQUIRE_THROWS_WITH(test::sample_on(gpu(), {ok, {0.0f, NAN, 1.0f}}, 3, u, {1.0f, 1.0f, 0}, Confidence::Prob),
                      Contains("row 1 of 2 has NaN logits"));
  REQUIRE_THROWS_WITH(test::sample_on(gpu(), {{INFINITY, 0.0f, 1.0f}, ok}, 3, u, {}, Confidence::Prob),
                      Contains("the largest logit is inf (row 0 of 2)"));
  REQUIRE_THROWS_WITH(test::sample_on(gpu(), {ok, {-INFINITY, -INFINITY, -INFINITY}}, 3, u, {}, Confidence::None),
                      Contains("the largest logit is -inf (row 1 of 2)"));
  std::vector<float> host = ok;
  int32_t tok = 0;
  float conf = 0;
  REQUIRE_THROWS_WITH(
      gpu().sample_rows(TensorView::of(host.data(), {1, 3}), u.data(), {}, Confidence::None, &tok, &conf),
      Contains("needs device logits"));
  // a valid call after the errors still works
  const test::SampledRows r = test::sample_on(gpu(), {ok}, 3, {0.0}, {}, Confidence::Prob);
  CHECK(r.tokens[0] == 2);
}

namespace {


struct Generation {
  Canvas canvas;
  std::vector<StepRecord> records;
};

Generation generate_on(Backend& be, const ModelConfig& c, const std::vector<float>& params, const SamplerConfig& sc) {
  const ParamLayout layout(c);
  Buffer p = be.alloc(params.size() * 4, MemCategory::Params);
  be.upload(params.data(), p.data(), params.size() * 4);
  DreamModel m(c, be);
  m.bind(p.as<float>(), nullptr);
  ModelDenoiser den(m);
  Sampler s(sc);
  s.set_chunk_rows(8);
  const std::vector<std::vector<int32_t>> prompts = {{5, 6, 7, 8}, {9}, {10, 11, 12, 13, 14, 15}};
  Generation g;
  g.canvas = s.generate(den, prompts, {11, 12, 13}, &g.records);
  return g;
}

}  // namespace

TEST_CASE("cuda generation: DreamModel on CUDA and on the CPU give identical completions", "[gpu][sampler]") {
  const ModelConfig c = gpu_test::small_model_config();
  const ParamLayout layout(c);
  std::vector<float> params(size_t(layout.total()));
  init_params(layout, params.data(), 4321, 0.2f);  // large std: peaked distributions, no near-ties
  CpuBackend cpu(1);
  for (UnmaskAlg alg : {UnmaskAlg::Entropy, UnmaskAlg::MaskgitPlus, UnmaskAlg::Origin})
    for (float T : {0.0f, 1.0f}) {
      SamplerConfig sc;
      sc.alg = alg;
      sc.max_new_tokens = 16;
      sc.steps = 8;
      sc.temperature = T;
      sc.top_p = T > 0.0f ? 0.95f : 1.0f;
      sc.mask_id = 300;
      sc.pad_id = 299;
      sc.seed = 5;
      const Generation want = generate_on(cpu, c, params, sc);
      const Generation got = generate_on(gpu(), c, params, sc);
      INFO(to_string(alg) << " T " << T);
      CHECK(got.canvas.tokens == want.canvas.tokens);
      REQUIRE(got.records.size() == want.records.size());
      for (size_t i = 0; i < want.records.size(); ++i) {
        REQUIRE(got.records[i].commits.size() == want.records[i].commits.size());
        for (size_t j = 0; j < want.records[i].commits.size(); ++j) {
          const StepCommit &a = got.records[i].commits[j], &b = want.records[i].commits[j];
          CHECK(a.row == b.row);
          CHECK(a.col == b.col);
          CHECK(a.token == b.token);
          CHECK(std::abs(a.confidence - b.confidence) <= 1e-4f * (1.0f + std::abs(b.confidence)));
        }
      }
    }
}

TEST_CASE("cuda sample_rows: the host path of small-shared-memory GPUs gives the kernel's tokens", "[gpu][sampler]") {
  // sm_86 / sm_89 cannot hold the kernel's shared memory, so sample_rows downloads the rows and runs the oracle;
  // forced here, it must agree with the kernel (same tokens, confidences as close as kernel vs CPU), also on a
  // strided [R, V] view.
  const int64_t V = 4099, R = 9, ld = V + 5;
  std::vector<float> host(size_t(R * ld), 0.0f);
  RngStream(43, RngPurpose::Test, 2, 0).fill_normal(host.data(), R * ld, 0.0f, 2.0f);
  const std::vector<double> u = uniforms(R, 11);
  Buffer dev = gpu().alloc(host.size() * 4, MemCategory::Workspace);
  for (const Confidence kind : {Confidence::Prob, Confidence::Margin, Confidence::NegEntropy}) {
    for (const TokenSampling s : {TokenSampling{1.0f, 0.95f, 0}, TokenSampling{0.0f, 1.0f, 0}, TokenSampling{0.7f, 1.0f, 17}}) {
      INFO(kind_name(kind) << " T " << s.temperature << " top_p " << s.top_p << " top_k " << s.top_k);
      std::vector<int32_t> tk(static_cast<size_t>(R)), th(static_cast<size_t>(R));
      std::vector<float> ck(static_cast<size_t>(R)), ch(static_cast<size_t>(R));
      TensorView view(dev.data(), DType::F32, {R, V}, Device::CUDA);
      view.strides[0] = ld;
      gpu().upload(host.data(), dev.data(), host.size() * 4);  // sample_rows overwrites its rows
      gpu().sample_rows(view, u.data(), s, kind, tk.data(), ck.data());
      gpu().upload(host.data(), dev.data(), host.size() * 4);
      gpu().set_sample_impl(CudaBackend::SampleImpl::Host);
      gpu().sample_rows(view, u.data(), s, kind, th.data(), ch.data());
      gpu().set_sample_impl(CudaBackend::SampleImpl::Auto);
      CHECK(th == tk);
      for (int64_t r = 0; r < R; ++r) CHECK(conf_close(kind, ck[size_t(r)], ch[size_t(r)]));
    }
  }
}
