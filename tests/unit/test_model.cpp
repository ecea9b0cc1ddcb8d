// DreamModel: whole-model finite-difference gradient check on a tiny config, bidirectionality, the fully
// masked pass, activation recompute, += accumulation; ModelConfig parsing; ParamLayout (names, units, 7B count).
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "../common/ref_check.h"
#include "cgrpo/backend/cpu_backend.h"
#include <nlohmann/json.hpp>

#include "cgrpo/model/dream_model.h"
#include "cgrpo/model/flat_params.h"

using namespace cgrpo;
using namespace cgrpo::test;

namespace {

// V = 37, H = 12, 3 heads on 1 kv head (head_dim 4), I = 20, 2 layers.
ModelConfig test_config(bool tied = false) {
  ModelConfig c;
  c.vocab_size = 37;
  c.hidden_size = 12;
  c.intermediate_size = 20;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 3;
  c.num_key_value_heads = 1;
  c.max_position_embeddings = 64;
  c.rope_theta = 10000.0;
  c.rms_norm_eps = 1e-6;
  c.tie_word_embeddings = tied;
  c.mask_token_id = 36;
  c.pad_token_id = c.bos_token_id = c.eos_token_id = 35;
  return c;
}

std::vector<int32_t> rand_ids(int64_t n, int64_t V, uint32_t sample) {
  std::vector<int32_t> ids(n);
  RngStream rng(3, RngPurpose::Test, 0, sample);
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>(rng.u32(i) % V);
  return ids;
}

// A model with random parameters (std 0.3 so that every path carries O(1) signal) and norms perturbed from 1.
struct Fixture {
  CpuBackend be;
  ModelConfig cfg;
  DreamModel model;
  std::vector<float> params, grads;
  explicit Fixture(const ModelConfig& c) : cfg(c), model(c, be) {
    params.resize(model.layout().total());
    grads.assign(model.layout().total(), 0.0f);
    init_params(model.layout(), params.data(), 7, 0.3f);
    auto jitter = randn(params.size(), 77, 0.1f);
    for (const ParamInfo& p : model.layout().params())
      for (int64_t j = 0; j < p.numel; ++j) params[p.offset + j] += jitter[p.offset + j];  // biases, norms != 0/1
    model.bind(params.data(), grads.data());
  }
};

}  // namespace

TEST_CASE("model: whole-model gradient matches finite differences for every tensor kind", "[model]") {
  for (bool tied : {false, true}) {
    INFO("tie_word_embeddings " << tied);
    Fixture f(test_config(tied));
    const int64_t B = 2, L = 5, N = B * L;
    const auto ids = rand_ids(N, 37, 1);
    std::vector<uint8_t> mask(N, 1);
    mask[L + 3] = 0;  // row 1 cannot attend to its key 3
    std::vector<int32_t> rows, targets;
    for (int64_t r = 0; r < N; ++r) rows.push_back(int32_t(N - 1 - r)), targets.push_back(int32_t((7 * r + 3) % 37));
    const auto dlogp = randn(N, 5);
    const ModelInput in{B, L, ids.data(), nullptr, mask.data()};
    f.model.set_vocab_chunk(8);
    auto loss = [&]() {
      std::vector<float> lp(N);
      f.model.forward(in, true);
      f.model.logprobs(N, rows.data(), targets.data(), lp.data());
      double s = 0;
      for (int64_t r = 0; r < N; ++r) s += double(dlogp[r]) * lp[r];
      return s;
    };
    loss();
    f.model.backward(dlogp.data());
    std::set<ParamKind> kinds;
    int checked = 0;
    for (size_t t = 0; t < f.model.layout().params().size(); ++t) {
      const ParamInfo& p = f.model.layout().params()[t];
      kinds.insert(p.kind);
      RngStream pick(9, RngPurpose::Test, 1, uint32_t(t));
      for (int k = 0; k < 3; ++k) {
        const int64_t i = p.offset + int64_t(pick.u32(k) % uint32_t(p.numel));
        const float x0 = f.params[i], eps = 1e-2f;
        f.params[i] = x0 + eps;
        const double lp = loss();
        f.params[i] = x0 - eps;
        const double lm = loss();
        f.params[i] = x0;
        const double fd = (lp - lm) / (2.0 * double(eps));
        INFO(p.name << " [" << (i - p.offset) << "]: backward " << f.grads[i] << " vs finite difference " << fd);
        REQUIRE(std::fabs(f.grads[i] - fd) <= 2e-3 + 1e-2 * std::fabs(fd));
        ++checked;
      }
    }
    REQUIRE(kinds.size() == (tied ? 7u : 8u));
    REQUIRE(checked == 3 * int(f.model.layout().params().size()));
  }
}

TEST_CASE("model: attention is bidirectional (a later token changes earlier log-probs)", "[model]") {
  Fixture f(test_config());
  const int64_t L = 6;
  auto ids = rand_ids(L, 37, 2);
  const std::vector<int32_t> rows = {0, 1}, targets = {4, 5};
  std::vector<float> a(2), b(2);
  f.model.forward({1, L, ids.data()}, false);
  f.model.logprobs(2, rows.data(), targets.data(), a.data());
  ids[L - 1] = (ids[L - 1] + 1) % 37;
  f.model.forward({1, L, ids.data()}, false);
  f.model.logprobs(2, rows.data(), targets.data(), b.data());
  REQUIRE(a[0] != b[0]);
  REQUIRE(a[1] != b[1]);
}

TEST_CASE("model: a fully masked completion's log-probs do not depend on the completion tokens", "[model]") {
  Fixture f(test_config());
  const int64_t P = 3, K = 4, L = P + K;
  auto x = rand_ids(2 * L, 35, 3);  // two sequences: same prompt, different completions
  for (int64_t i = 0; i < P; ++i) x[L + i] = x[i];
  REQUIRE(std::memcmp(x.data() + P, x.data() + L + P, K * 4) != 0);
  auto x0 = x;  // X0 = where(pos >= P, MASK, x)  (spec §3.6)
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t i = P; i < L; ++i) x0[b * L + i] = int32_t(f.cfg.mask_token_id);
  // raw rows P-1 .. L-2 predict completion tokens P .. L-1 (shift, spec §1.5); score sequence 0's tokens
  std::vector<int32_t> rows0, rows1, y;
  for (int64_t k = 0; k < K; ++k) rows0.push_back(int32_t(P - 1 + k)), rows1.push_back(int32_t(L + P - 1 + k));
  for (int64_t k = 0; k < K; ++k) y.push_back(x[P + k]);
  std::vector<float> l0(K), l1(K);
  f.model.forward({2, L, x0.data()}, false);
  f.model.logprobs(K, rows0.data(), y.data(), l0.data());
  f.model.logprobs(K, rows1.data(), y.data(), l1.data());
  for (int64_t k = 0; k < K; ++k) REQUIRE(l0[k] == l1[k]);  // bit-identical
  // control: with the completions visible the two rows do differ
  f.model.forward({2, L, x.data()}, false);
  f.model.logprobs(K, rows0.data(), y.data(), l0.data());
  f.model.logprobs(K, rows1.data(), y.data(), l1.data());
  REQUIRE(l0[0] != l1[0]);
}

TEST_CASE("model: activation recompute gives bit-identical gradients with less memory, grads accumulate (+=)",
          "[model]") {
  Fixture f(test_config());
  const int64_t B = 2, L = 7, N = B * L;
  const auto ids = rand_ids(N, 37, 4);
  std::vector<int32_t> rows, targets;
  for (int64_t r = 0; r < N; r += 2) rows.push_back(int32_t(r)), targets.push_back(int32_t(r % 37));
  const int64_t R = int64_t(rows.size());
  const auto dlogp = randn(R, 6);
  std::vector<int32_t> pos(N);
  for (int64_t r = 0; r < N; ++r) pos[r] = int32_t((r * 5) % 11);  // explicit, non-monotone positions
  const ModelInput in{B, L, ids.data(), pos.data(), nullptr};
  auto run = [&](bool recompute) {
    std::fill(f.grads.begin(), f.grads.end(), 0.0f);
    f.model.set_recompute(recompute);
    std::vector<float> lp(R);
    f.model.forward(in, true);
    f.model.logprobs(R, rows.data(), targets.data(), lp.data());
    f.model.backward(dlogp.data());
    return std::make_pair(lp, f.grads);
  };
  const auto [lp_full, g_full] = run(false);
  const auto [lp_rc, g_rc] = run(true);
  REQUIRE(std::memcmp(lp_full.data(), lp_rc.data(), R * 4) == 0);
  REQUIRE(std::memcmp(g_full.data(), g_rc.data(), g_full.size() * 4) == 0);
  f.model.set_recompute(true);
  const size_t m_rc = f.model.activation_bytes(B, L, true);
  f.model.set_recompute(false);
  REQUIRE(m_rc < f.model.activation_bytes(B, L, true));

  // accumulation: start from random gradients c, expect c + g
  const auto c = randn(f.grads.size(), 8);
  f.grads = c;
  f.model.bind(f.params.data(), f.grads.data());
  std::vector<float> lp(R);
  f.model.forward(in, true);
  f.model.logprobs(R, rows.data(), targets.data(), lp.data());
  f.model.backward(dlogp.data());
  std::vector<double> want(c.size());
  for (size_t i = 0; i < c.size(); ++i) want[i] = double(c[i]) + g_full[i];
  require_close(f.grads, want, 1e-6, 1e-6, "accumulated gradients");
}

TEST_CASE("model: ParamLayout names, units and the DiffuCoder-7B parameter count", "[model]") {
  const ModelConfig c7 = ModelConfig::preset("diffucoder-7b");
  const ParamLayout lay(c7);
  REQUIRE(lay.total() == 7615616512LL);  // spec §1.1
  REQUIRE(c7.num_params() == 7615616512LL);
  REQUIRE(lay.units().size() == 30u);
  REQUIRE(lay.units()[0].numel == 544997376LL);
  for (int l = 1; l <= 28; ++l) REQUIRE(lay.units()[l].numel == 233057792LL);
  REQUIRE(lay.units()[29].numel == 544997376LL + 3584);
  int64_t off = 0;
  for (const ParamUnit& u : lay.units()) {
    REQUIRE(u.offset == off);
    off += u.numel;
  }
  REQUIRE(off == lay.total());
  std::set<std::string> names;
  for (const ParamInfo& p : lay.params()) names.insert(p.name);
  REQUIRE(names.size() == lay.params().size());
  REQUIRE(lay.find("model.layers.27.self_attn.k_proj.bias")->shape == std::vector<int64_t>{512});
  REQUIRE(lay.find("model.layers.0.mlp.down_proj.weight")->shape == std::vector<int64_t>{3584, 18944});
  REQUIRE(lay.find("lm_head.weight")->shape == std::vector<int64_t>{152064, 3584});
  REQUIRE(lay.params().size() == 1 + 28 * 12 + 2u);

  const ParamLayout tied(ModelConfig::preset("1b"));
  REQUIRE(tied.find("lm_head.weight") == nullptr);
  REQUIRE(tied.head() == tied.embed());
  for (const auto& name : ModelConfig::preset_names()) REQUIRE(ModelConfig::preset(name).num_params() > 0);
  REQUIRE_THROWS_WITH(ModelConfig::preset("13b"), Catch::Contains("unknown model preset '13b'"));
}

TEST_CASE("model: init_params_range draws exactly init_params' values in any range", "[model]") {
  const ModelConfig c = ModelConfig::preset("tiny");
  const ParamLayout lay(c);
  const int64_t T = lay.total();
  std::vector<float> whole(static_cast<size_t>(T));
  init_params(lay, whole.data(), 11, 0.3f);
  // starts and ends inside tensors (a norm, a bias, a weight), across unit boundaries, empty, the whole model
  const ParamInfo& bias = *lay.find("model.layers.0.self_attn.q_proj.bias");
  for (const auto& [first, count] : std::vector<std::pair<int64_t, int64_t>>{
           {0, T}, {bias.offset - 5, bias.numel + 10}, {lay.units()[1].offset - 1, 2}, {T - 3, 3}, {T / 2, 0},
           {lay.final_norm() + 1, 7}, {12345, 54321}}) {
    std::vector<float> got(size_t(count) + 1, -9.0f);
    init_params_range(lay, first, count, got.data(), 11, 0.3f);
    INFO("range [" << first << ", " << first + count << ")");
    REQUIRE(std::memcmp(got.data(), whole.data() + first, size_t(count) * 4) == 0);
    REQUIRE(got[size_t(count)] == -9.0f);
  }
  std::vector<float> two(2);
  REQUIRE_THROWS_WITH(init_params_range(lay, T - 1, 2, two.data(), 11), Catch::Contains("outside the model's"));
  // a range of several 1M-value pieces (threaded) equals the same values drawn in small serial ranges
  const ParamLayout big(ModelConfig::preset("small"));
  const int64_t first = big.units()[1].offset - 12345, count = (int64_t(3) << 20) + 777;
  std::vector<float> threaded(static_cast<size_t>(count)), serial(static_cast<size_t>(count));
  init_params_range(big, first, count, threaded.data(), 11);
  for (int64_t a = 0; a < count; a += 100003)
    init_params_range(big, first + a, std::min<int64_t>(100003, count - a), serial.data() + a, 11);
  REQUIRE(std::memcmp(threaded.data(), serial.data(), size_t(count) * 4) == 0);
}

TEST_CASE("model: MFU accounting, the body per token, the head per scored row, training work only", "[model]") {
  for (const char* preset : {"tiny", "1b"}) {  // untied head, tied head
    const ModelConfig c = ModelConfig::preset(preset);
    const DreamModel m(c, host_backend());
    const ParamLayout lay(c);
    const double V = double(c.vocab_size), H = double(c.hidden_size), L = 96;
    const double body = 2.0 * (double(lay.total()) - V * H * (c.tie_word_embeddings ? 1 : 2)) +
                        4.0 * L * double(c.num_attention_heads * c.head_dim()) * double(c.num_hidden_layers);
    INFO(preset);
    CHECK(m.body_flops_per_token(96) == body);
    CHECK(m.head_flops_per_row() == 2.0 * V * H);
    // every position scored: 2 x the matmul parameters, the head once (PaLM appendix B)
    CHECK(m.forward_flops_per_token(96) ==
          2.0 * (double(lay.total()) - (c.tie_word_embeddings ? 0.0 : V * H)) +
              4.0 * L * double(c.num_attention_heads * c.head_dim()) * double(c.num_hidden_layers));
  }
  Fixture f(test_config());
  const int64_t B = 2, L = 7;
  const auto ids = rand_ids(B * L, f.cfg.vocab_size, 1);
  const std::vector<int32_t> rows = {0, 3, 9}, tgt = {1, 2, 3};
  std::vector<float> logp(3), dlogp(3, -1.0f);
  f.model.forward({B, L, ids.data()}, false);  // inference: not training work
  f.model.logprobs(3, rows.data(), tgt.data(), logp.data());
  f.model.forward({B, L, ids.data()}, true);
  f.model.logprobs(3, rows.data(), tgt.data(), logp.data());
  f.model.backward(dlogp.data());
  f.model.set_recompute(true);  // a recompute forward is not model work either
  f.model.forward({B, L, ids.data()}, true);
  f.model.logprobs(2, rows.data(), tgt.data(), logp.data());
  f.model.backward(dlogp.data());
  const DreamModel::TrainedWork w = f.model.take_trained_work();
  CHECK(w.tokens == 2 * B * L);
  CHECK(w.rows == 5);
  const DreamModel::TrainedWork none = f.model.take_trained_work();
  CHECK((none.tokens == 0 && none.rows == 0));
}

TEST_CASE("model: config.json round trip and clear errors for missing or invalid fields", "[model]") {
  const ModelConfig c = ModelConfig::preset("diffucoder-7b");
  const ModelConfig d = ModelConfig::from_json(c.to_json(), "x.json");
  REQUIRE(d.to_json() == c.to_json());
  REQUIRE(d.rope_theta == 1000000.0);
  REQUIRE(d.mask_token_id == 151666);
  auto j = nlohmann::json::parse(c.to_json());
  j.erase("num_key_value_heads");
  REQUIRE_THROWS_WITH(ModelConfig::from_json(j.dump(), "m/config.json"),
                      Catch::Contains("m/config.json: missing field \"num_key_value_heads\""));
  j = nlohmann::json::parse(c.to_json());
  j["num_key_value_heads"] = 5;
  REQUIRE_THROWS_WITH(ModelConfig::from_json(j.dump(), "m/config.json"),
                      Catch::Contains("num_attention_heads 28 is not a multiple of num_key_value_heads 5"));
  j = nlohmann::json::parse(c.to_json());
  j["hidden_size"] = "3584";
  REQUIRE_THROWS_WITH(ModelConfig::from_json(j.dump(), "m/config.json"),
                      Catch::Contains("field \"hidden_size\" must be an integer"));
  j = nlohmann::json::parse(c.to_json());
  j["mask_token_id"] = 152064;
  REQUIRE_THROWS_WITH(ModelConfig::from_json(j.dump(), "m/config.json"),
                      Catch::Contains("mask_token_id 152064 is outside the vocabulary"));
  REQUIRE_THROWS_WITH(ModelConfig::from_json("{", "bad.json"), Catch::Contains("bad.json: not valid JSON"));
}

TEST_CASE("model: right padding with a key mask reproduces the unpadded log-probs, a fully masked row stays finite",
          "[model]") {
  Fixture f(test_config());
  const int64_t L = 6, Lr = 4;
  const auto real = rand_ids(Lr, 35, 5);
  std::vector<int32_t> padded(3 * L, int32_t(f.cfg.pad_token_id));
  for (int64_t i = 0; i < Lr; ++i) padded[i] = padded[L + i] = real[i];
  // row 0: pads attended (no effect on rows 1, 2); row 1: pad keys masked; row 2: every key masked
  std::vector<uint8_t> mask(3 * L, 0);
  for (int64_t i = 0; i < L; ++i) mask[i] = 1;
  for (int64_t i = 0; i < Lr; ++i) mask[L + i] = 1;
  const std::vector<int32_t> rows_alone = {0, 1, 2}, rows_padded = {int32_t(L), int32_t(L + 1), int32_t(L + 2)},
                             rows_dead = {int32_t(2 * L), int32_t(2 * L + 5)}, t = {real[1], real[2], real[3]};
  std::vector<float> alone(3), pad(3), dead(2);
  f.model.forward({1, Lr, real.data()}, false);
  f.model.logprobs(3, rows_alone.data(), t.data(), alone.data());
  f.model.forward({3, L, padded.data(), nullptr, mask.data()}, false);
  f.model.logprobs(3, rows_padded.data(), t.data(), pad.data());
  f.model.logprobs(2, rows_dead.data(), t.data(), dead.data());
  for (int k = 0; k < 3; ++k) REQUIRE(pad[k] == Approx(alone[k]).epsilon(1e-5));
  REQUIRE(std::isfinite(dead[0]));
  REQUIRE(std::isfinite(dead[1]));
}

namespace {
// Float64 transcription of spec §1.3 (modeling_dream.py), reading every tensor by its HF name: the model's
// log-probs are checked against it, not against the model's own ops.
struct Oracle {
  const ModelConfig& c;
  const ParamLayout& lay;
  const std::vector<float>& p;
  const float* t(const std::string& name) const {
    const ParamInfo* i = lay.find(name);
    REQUIRE(i != nullptr);
    return p.data() + i->offset;
  }
  // y[n, o] = sum_i x[n, i] W[o, i] (+ b[o])   (nn.Linear, W [out, in])
  static std::vector<double> linear(const std::vector<double>& x, int64_t N, int64_t in, const float* W, int64_t out,
                                    const float* b) {
    std::vector<double> y(size_t(N * out));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < out; ++o) {
        double s = b ? double(b[o]) : 0.0;
        for (int64_t i = 0; i < in; ++i) s += x[size_t(n * in + i)] * double(W[o * in + i]);
        y[size_t(n * out + o)] = s;
      }
    return y;
  }
  std::vector<double> rmsnorm(const std::vector<double>& x, int64_t N, const float* w) const {
    const int64_t H = c.hidden_size;
    std::vector<double> y(x.size());
    for (int64_t n = 0; n < N; ++n) {
      double ss = 0;
      for (int64_t j = 0; j < H; ++j) ss += x[size_t(n * H + j)] * x[size_t(n * H + j)];
      const double r = 1.0 / std::sqrt(ss / double(H) + c.rms_norm_eps);  // eps inside the root
      for (int64_t j = 0; j < H; ++j) y[size_t(n * H + j)] = double(w[j]) * (x[size_t(n * H + j)] * r);
    }
    return y;
  }
  // q*cos + rotate_half(q)*sin, rotate_half(x) = cat(-x[d/2:], x[:d/2]), inv_freq[j] = theta^(-2j/d)
  void rope(std::vector<double>& x, int64_t N, int64_t heads, const std::vector<int32_t>& pos) const {
    const int64_t d = c.head_dim(), half = d / 2;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t h = 0; h < heads; ++h) {
        double* v = x.data() + (n * heads + h) * d;
        std::vector<double> rot(static_cast<size_t>(d));
        for (int64_t j = 0; j < d; ++j) rot[size_t(j)] = j < half ? -v[j + half] : v[j - half];
        for (int64_t j = 0; j < d; ++j) {
          const double a = double(pos[size_t(n)]) * std::pow(c.rope_theta, -2.0 * double(j % half) / double(d));
          v[j] = v[j] * std::cos(a) + rot[size_t(j)] * std::sin(a);
        }
      }
  }
  // log p(target | row) for raw rows (no shift here: the caller picks row j - 1 for token j)
  std::vector<double> logprobs(int64_t B, int64_t L, const std::vector<int32_t>& ids, const std::vector<int32_t>& pos,
                               const std::vector<uint8_t>& am, const std::vector<int32_t>& rows,
                               const std::vector<int32_t>& targets) const {
    const int64_t N = B * L, H = c.hidden_size, d = c.head_dim(), nh = c.num_attention_heads,
                  nkv = c.num_key_value_heads, I = c.intermediate_size, V = c.vocab_size;
    std::vector<double> h(size_t(N * H));
    const float* E = t("model.embed_tokens.weight");
    for (int64_t n = 0; n < N; ++n)
      for (int64_t j = 0; j < H; ++j) h[size_t(n * H + j)] = E[ids[size_t(n)] * H + j];
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const std::string pre = "model.layers." + std::to_string(l) + ".";
      const std::vector<double> a = rmsnorm(h, N, t(pre + "input_layernorm.weight"));
      std::vector<double> q = linear(a, N, H, t(pre + "self_attn.q_proj.weight"), nh * d, t(pre + "self_attn.q_proj.bias"));
      std::vector<double> k = linear(a, N, H, t(pre + "self_attn.k_proj.weight"), nkv * d, t(pre + "self_attn.k_proj.bias"));
      const std::vector<double> v =
          linear(a, N, H, t(pre + "self_attn.v_proj.weight"), nkv * d, t(pre + "self_attn.v_proj.bias"));
      rope(q, N, nh, pos);
      rope(k, N, nkv, pos);
      std::vector<double> o(size_t(N * nh * d), 0.0);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t hq = 0; hq < nh; ++hq) {
          const int64_t g = hq / (nh / nkv);  // repeat_kv: query head j uses kv head j // (nh / nkv)
          for (int64_t i = 0; i < L; ++i) {
            if (!am[size_t(b * L + i)]) continue;  // pad query rows: never read
            std::vector<double> s(size_t(L), -INFINITY);
            double m = -INFINITY;
            for (int64_t j = 0; j < L; ++j) {
              if (!am[size_t(b * L + j)]) continue;
              double dot = 0;
              for (int64_t e = 0; e < d; ++e)
                dot += q[size_t(((b * L + i) * nh + hq) * d + e)] * k[size_t(((b * L + j) * nkv + g) * d + e)];
              s[size_t(j)] = dot / std::sqrt(double(d));
              m = std::max(m, s[size_t(j)]);
            }
            double z = 0;
            for (int64_t j = 0; j < L; ++j) z += std::exp(s[size_t(j)] - m);
            for (int64_t j = 0; j < L; ++j) {
              const double pj = std::exp(s[size_t(j)] - m) / z;
              for (int64_t e = 0; e < d; ++e)
                o[size_t(((b * L + i) * nh + hq) * d + e)] += pj * v[size_t(((b * L + j) * nkv + g) * d + e)];
            }
          }
        }
      const std::vector<double> ao = linear(o, N, nh * d, t(pre + "self_attn.o_proj.weight"), H, nullptr);
      for (size_t i = 0; i < h.size(); ++i) h[i] += ao[i];
      const std::vector<double> a2 = rmsnorm(h, N, t(pre + "post_attention_layernorm.weight"));
      const std::vector<double> gt = linear(a2, N, H, t(pre + "mlp.gate_proj.weight"), I, nullptr);
      const std::vector<double> up = linear(a2, N, H, t(pre + "mlp.up_proj.weight"), I, nullptr);
      std::vector<double> mm(gt.size());
      for (size_t i = 0; i < mm.size(); ++i) mm[i] = gt[i] / (1.0 + std::exp(-gt[i])) * up[i];
      const std::vector<double> dn = linear(mm, N, I, t(pre + "mlp.down_proj.weight"), H, nullptr);
      for (size_t i = 0; i < h.size(); ++i) h[i] += dn[i];
    }
    const std::vector<double> hf = rmsnorm(h, N, t("model.norm.weight"));
    const float* W = c.tie_word_embeddings ? E : t("lm_head.weight");
    std::vector<double> out;
    for (size_t r = 0; r < rows.size(); ++r) {
      std::vector<double> z(static_cast<size_t>(V));
      double m = -INFINITY;
      for (int64_t u = 0; u < V; ++u) {
        double s = 0;
        for (int64_t j = 0; j < H; ++j) s += hf[size_t(rows[r] * H + j)] * double(W[u * H + j]);
        z[size_t(u)] = s;
        m = std::max(m, s);
      }
      double se = 0;
      for (double s : z) se += std::exp(s - m);
      out.push_back(z[size_t(targets[r])] - m - std::log(se));
    }
    return out;
  }
};
}  // namespace

TEST_CASE("model: log-probs equal a float64 transcription of spec 1.3 with left padding, GQA 2 kv heads, untied head",
          "[model]") {
  ModelConfig cfg = test_config(false);
  cfg.hidden_size = 16;
  cfg.num_attention_heads = 4;  // head_dim 4, query heads {0,1} -> kv 0, {2,3} -> kv 1 (not h % n_kv)
  cfg.num_key_value_heads = 2;
  cfg.rope_theta = 50.0;        // large rotation angles at small positions
  cfg.rms_norm_eps = 0.05;      // large enough that its placement (inside the root) is visible
  Fixture f(cfg);
  const int64_t B = 2, L = 7, N = B * L;
  const auto ids = rand_ids(N, 36, 4);
  // row 1 is left-padded by 2 (spec §1.4): key mask 0 and position id 1 at the pads, cumsum - 1 elsewhere
  std::vector<uint8_t> am(N, 1);
  std::vector<int32_t> pos(N);
  for (int64_t j = 0; j < L; ++j) pos[size_t(j)] = int32_t(j);
  for (int64_t j = 0; j < L; ++j) {
    am[size_t(L + j)] = j >= 2;
    pos[size_t(L + j)] = j >= 2 ? int32_t(j - 2) : 1;
  }
  std::vector<int32_t> rows, targets;
  for (int64_t n = 0; n < N; ++n)
    if (am[size_t(n)]) rows.push_back(int32_t(n)), targets.push_back(int32_t((5 * n + 2) % 37));
  std::vector<float> lp(rows.size());
  const ModelInput in{B, L, ids.data(), pos.data(), am.data()};
  f.model.forward(in, false);
  f.model.logprobs(int64_t(rows.size()), rows.data(), targets.data(), lp.data());
  const Oracle o{f.cfg, f.model.layout(), f.params};
  require_close(lp, o.logprobs(B, L, ids, pos, am, rows, targets), 1e-5, 1e-5, "log-probs vs float64 spec §1.3");
}

namespace {
// Records every ParamSource call ("a3" acquire unit 3, "r3" release, "g3" grads, "d3" grads_done, "p3" prefetch)
// over a FlatParams, so a test can compare the collective schedule two backward passes would drive.
class RecordingSource final : public ParamSource {
 public:
  explicit RecordingSource(FlatParams& inner) : inner_(inner) {}
  const void* acquire(int u) override { return log('a', u), inner_.acquire(u); }
  void release(int u) override { log('r', u); }
  float* grads(int u) override { return log('g', u), inner_.grads(u); }
  void grads_done(int u) override { log('d', u); }
  void prefetch(int u) override { log('p', u); }
  std::vector<std::string> calls;

 private:
  void log(char c, int u) { calls.push_back(c + std::to_string(u)); }
  FlatParams& inner_;
};
}  // namespace

TEST_CASE("model: a micro-batch with no loss rows drives the same unit calls as one with rows, adding nothing",
          "[model]") {
  // A rank whose SFT batch has no masked token still joins every per-unit collective of backward (ZeRO-2/3
  // reduce-scatters, ZeRO-3 re-gathers), in the same order as the ranks that have rows.
  for (const bool tied : {false, true}) {
    INFO("tied head " << tied);
    Fixture f(test_config(tied));
    FlatParams flat(f.model.layout(), f.params.data(), DType::F32, f.grads.data());
    RecordingSource rec(flat);
    f.model.bind(&rec, true);
    const int64_t B = 2, L = 5;
    const auto ids = rand_ids(B * L, 37, 9);
    const ModelInput in{B, L, ids.data(), nullptr, nullptr};
    const std::vector<int32_t> rows = {1, 6, 8}, targets = {3, 30, 7};
    const std::vector<float> dlogp = {0.5f, -1.0f, 0.25f};
    std::vector<float> lp(3);
    f.model.forward(in, true);
    rec.calls.clear();
    f.model.logprobs(3, rows.data(), targets.data(), lp.data());
    f.model.backward(dlogp.data());
    const std::vector<std::string> with_rows = rec.calls;
    REQUIRE(std::count(with_rows.begin(), with_rows.end(), "d0") == 1);
    std::fill(f.grads.begin(), f.grads.end(), 0.0f);
    f.model.forward(in, true);
    rec.calls.clear();
    f.model.logprobs(0, nullptr, nullptr, nullptr);
    f.model.backward(nullptr);
    CHECK(rec.calls == with_rows);
    CHECK(std::all_of(f.grads.begin(), f.grads.end(), [](float g) { return g == 0.0f; }));
  }
}
