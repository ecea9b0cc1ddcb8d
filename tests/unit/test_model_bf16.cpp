// DreamModel with bf16 parameters (set_param_dtype, ARCHITECTURE.md §3.4), and with bf16 activations on top
// (set_compute_dtype), on the CPU oracle: against the fp32 model on the same (bf16-rounded) weights, determinism,
// no steady-state allocation, the scratch and activation accounting, and the dtype rules.
//
// Tolerance: the two models hold identical weights; the bf16 model rounds the activation operand of every matmul
// (and the output gradient of every backward matmul) to bf16, a relative error of 2^-9 per rounding that adds up
// over the layers and is amplified by the sharp attention of these large weights (std 0.2, as the GPU tests).
// Measured on this config: logits 1.1e-2 of max|logit| (7.5e-3 relative L2), log-probs 5e-3 of max|logp|, the
// worst gradient tensor 3.0e-2 of its max|grad| (2.5e-2 relative L2: q/k projections, through the softmax
// backward); the bounds are 2-3x that. A wrong operand or a missed cast is O(1). The fp32 model itself is checked
// against finite differences in test_model.cpp. bf16 activations add one rounding of every saved tensor (and of
// the q/k/v, gate/up projections and RoPE outputs); measured: logits 1.6e-2, log-probs 8.4e-3, the worst gradient
// tensor 3.8e-2 (relative L2 at most 1.3e-2), inside the same bounds.
#include <catch2/catch.hpp>
#include <algorithm>
#include <array>
#include <utility>
#include <cmath>
#include <cstring>
#include <vector>

#include "../common/ref_check.h"
#include "cgrpo/backend/cpu_backend.h"
#include "cgrpo/model/dream_model.h"

using namespace cgrpo;
using namespace cgrpo::test;

namespace {

// tiny preset (H 64, 4 heads on 2 kv heads: GQA group 2, I 128, 2 layers) with a smaller vocabulary
ModelConfig bf16_config(bool tied = false) {
  ModelConfig c = ModelConfig::preset("tiny");
  c.tie_word_embeddings = tied;
  c.vocab_size = 101;
  c.mask_token_id = 100;
  c.pad_token_id = c.bos_token_id = c.eos_token_id = 99;
  return c;
}

// Units of a flat bf16 parameter vector (host memory: the CPU backend's device) and fp32 gradients.
class Bf16Source final : public ParamSource {
 public:
  Bf16Source(const ParamLayout& layout, const std::vector<float>& params) : layout_(layout) {
    p_.resize(params.size());
    for (size_t i = 0; i < params.size(); ++i) p_[i] = f32_to_bf16(params[i]);
    g.assign(params.size(), 0.0f);
  }
  const void* acquire(int u) override {
    ++held;
    return p_.data() + layout_.units()[size_t(u)].offset;
  }
  void release(int) override { --held; }
  float* grads(int u) override { return g.data() + layout_.units()[size_t(u)].offset; }
  void grads_done(int) override {}
  std::vector<float> g;
  int held = 0;

 private:
  const ParamLayout& layout_;
  std::vector<uint16_t> p_;
};

struct Batch {
  int64_t B = 3, L = 9;
  std::vector<int32_t> ids, pos, rows, targets;
  std::vector<uint8_t> mask;
  std::vector<float> dlogp;
};

// left pads (row s has s of them) masked out as keys, explicit positions, mask tokens, rows of every sequence
Batch make_batch(const ModelConfig& c) {
  Batch b;
  for (int64_t s = 0; s < b.B; ++s)
    for (int64_t i = 0; i < b.L; ++i) {
      const bool pad = i < s;
      b.ids.push_back(pad ? int32_t(c.pad_token_id) : i % 4 == 3 ? int32_t(c.mask_token_id)
                                                                  : int32_t((s * 31 + i * 7) % 98));
      b.pos.push_back(pad ? 1 : int32_t(i - s));
      b.mask.push_back(pad ? 0 : 1);
      if (!pad && i + 1 < b.L) {
        b.rows.push_back(int32_t(s * b.L + i));
        b.targets.push_back(int32_t((s * 13 + i * 5) % c.vocab_size));
        b.dlogp.push_back(-1.0f / float(1 + (i % 3)));
      }
    }
  return b;
}

constexpr std::array<int32_t, 3> kLogitRows = {0, 13, 25};  // each also a log-prob row of make_batch

struct Out {
  std::vector<float> logp, logits, grads;
};

// One training micro-step (forward, logprobs, backward into zeroed grads) and the logits of three rows.
Out step(DreamModel& m, const Batch& b, std::vector<float>& grads) {
  std::fill(grads.begin(), grads.end(), 0.0f);
  const ModelInput in{b.B, b.L, b.ids.data(), b.pos.data(), b.mask.data()};
  Out o;
  const int64_t R = int64_t(b.rows.size());
  o.logp.resize(size_t(R));
  m.forward(in, true);
  m.logprobs(R, b.rows.data(), b.targets.data(), o.logp.data());
  o.logits.resize(size_t(3 * m.config().vocab_size));
  m.logits(3, kLogitRows.data(), o.logits.data());
  m.backward(b.dlogp.data());
  o.grads = grads;
  return o;
}

std::vector<float> rounded_params(const ParamLayout& layout) {
  std::vector<float> p(size_t(layout.total()));
  init_params(layout, p.data(), 99, 0.2f);
  const auto jitter = randn(p.size(), 98, 0.1f);  // norm weights != 1, biases != 0
  for (size_t i = 0; i < p.size(); ++i) p[i] = bf16_to_f32(f32_to_bf16(p[i] + jitter[i]));
  return p;
}

double max_abs(const float* x, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::abs(double(x[i])));
  return m;
}

// max |got - want| over a tensor, relative to max |want| of that tensor
double rel_err(const float* got, const float* want, int64_t n) {
  double d = 0;
  for (int64_t i = 0; i < n; ++i) d = std::max(d, std::abs(double(got[i]) - double(want[i])));
  return d / std::max(1e-6, max_abs(want, n));
}

// ||got - want||_2 / ||want||_2
double rel_l2(const float* got, const float* want, int64_t n) {
  double d = 0, w = 0;
  for (int64_t i = 0; i < n; ++i) {
    d += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    w += double(want[i]) * want[i];
  }
  return std::sqrt(d / std::max(1e-30, w));
}

// m over the bf16 parameters of src with activations `acts`, vocabulary chunks of 32.
void bind_bf16(DreamModel& m, Bf16Source& src, DType acts) {
  m.set_vocab_chunk(32);
  m.set_param_dtype(DType::BF16);
  m.set_compute_dtype(acts);
  m.bind(&src, true);
}

int64_t live_bytes(MemCategory c) { return memory_stats().live_bytes[0][size_t(c)]; }

}  // namespace

TEST_CASE("model bf16: log-probs, logits and every gradient match the fp32 model on the rounded weights, tied or not",
          "[model]") {
  CpuBackend be(1);
  struct Case {
    bool recompute, tied;
    DType acts;
  };
  for (const Case k : {Case{false, false, DType::F32}, Case{true, false, DType::F32}, Case{false, true, DType::F32},
                       Case{false, false, DType::BF16}, Case{true, true, DType::BF16}}) {
    const bool recompute = k.recompute, tied = k.tied;
    INFO("recompute " << recompute << ", tied embeddings " << tied << ", activations " << dtype_name(k.acts));
    const ModelConfig c = bf16_config(tied);
    const ParamLayout layout(c);
    const auto params = rounded_params(layout);
    const Batch b = make_batch(c);
    DreamModel ref(c, be), m(c, be);
    ref.set_vocab_chunk(32);
    m.set_vocab_chunk(32);
    ref.set_recompute(recompute);
    m.set_recompute(recompute);
    std::vector<float> g32(params.size());
    ref.bind(params.data(), g32.data());
    Bf16Source src(layout, params);
    m.set_param_dtype(DType::BF16);
    m.set_compute_dtype(k.acts);
    REQUIRE(m.param_dtype() == DType::BF16);
    REQUIRE(m.compute_dtype() == k.acts);
    m.bind(&src, true);
    const Out want = step(ref, b, g32), got = step(m, b, src.g);

    const int64_t R = int64_t(want.logp.size());
    const double e_logp = rel_err(got.logp.data(), want.logp.data(), R);
    INFO("logp: worst |diff| / max|logp| " << e_logp);
    CHECK(e_logp <= 3e-2);
    for (int64_t r = 0; r < R; ++r) REQUIRE(std::isfinite(got.logp[size_t(r)]));
    const int64_t nz = int64_t(want.logits.size());
    const double e_logits = rel_err(got.logits.data(), want.logits.data(), nz);
    const double l2_logits = rel_l2(got.logits.data(), want.logits.data(), nz);
    INFO("logits: worst |diff| / max|logit| " << e_logits << ", relative L2 " << l2_logits);
    CHECK(e_logits <= 3e-2);
    CHECK(l2_logits <= 2e-2);
    CHECK(e_logits > 0);  // activations really are rounded: not the fp32 computation
    double worst = 0;
    for (const ParamInfo& p : layout.params()) {
      const double e = rel_err(got.grads.data() + p.offset, want.grads.data() + p.offset, p.numel);
      const double e2 = rel_l2(got.grads.data() + p.offset, want.grads.data() + p.offset, p.numel);
      INFO(p.name << ": worst |diff| / max|grad| " << e << ", relative L2 " << e2);
      CHECK(max_abs(want.grads.data() + p.offset, p.numel) > 0);
      CHECK(e <= 8e-2);
      CHECK(e2 <= 6e-2);
      worst = std::max(worst, e);
    }
    CHECK(worst > 0);
    // logits() and logprobs() use the same fp32 head copy: the log-softmax of the logits is the log-prob
    for (int k = 0; k < 3; ++k) {
      const auto it = std::find(b.rows.begin(), b.rows.end(), kLogitRows[size_t(k)]);
      REQUIRE(it != b.rows.end());
      const size_t r = size_t(it - b.rows.begin());
      const float* z = got.logits.data() + k * c.vocab_size;
      double mx = -1e30, s = 0;
      for (int64_t v = 0; v < c.vocab_size; ++v) mx = std::max(mx, double(z[v]));
      for (int64_t v = 0; v < c.vocab_size; ++v) s += std::exp(double(z[v]) - mx);
      CHECK(got.logp[r] == Approx(double(z[b.targets[r]]) - mx - std::log(s)).margin(1e-4));
    }
    m.release_held();
    REQUIRE(src.held == 0);
  }
}

TEST_CASE("model bf16: recompute is bit-identical, a step is deterministic and allocates nothing the second time",
          "[model]") {
  const ModelConfig c = bf16_config();
  const ParamLayout layout(c);
  const auto params = rounded_params(layout);
  const Batch b = make_batch(c);
  for (DType acts : {DType::F32, DType::BF16}) {
  INFO("activations " << dtype_name(acts));
  CpuBackend be(1);
  DreamModel m(c, be);
  Bf16Source src(layout, params);
  bind_bf16(m, src, acts);
  const Out full = step(m, b, src.g);
  m.set_recompute(true);
  const Out a = step(m, b, src.g);
  const int64_t ws1 = live_bytes(MemCategory::Workspace), act1 = live_bytes(MemCategory::Activations);
  const Out a2 = step(m, b, src.g);
  CHECK(live_bytes(MemCategory::Workspace) == ws1);  // the second identical step allocates nothing
  CHECK(live_bytes(MemCategory::Activations) == act1);
  for (const Out* o : {&a, &a2}) {
    REQUIRE(std::memcmp(o->logp.data(), full.logp.data(), full.logp.size() * 4) == 0);
    REQUIRE(std::memcmp(o->logits.data(), full.logits.data(), full.logits.size() * 4) == 0);
    REQUIRE(std::memcmp(o->grads.data(), full.grads.data(), full.grads.size() * 4) == 0);
  }
  }
}

// A CPU backend that records the dtype of the LM head's operands (the log-softmax gather and GEMMs against the
// [V, H] head) and of the embedding table. Its arithmetic is CpuBackend's.
class HeadProbe final : public CpuBackend {
 public:
  explicit HeadProbe(int64_t vocab) : CpuBackend(1), V_(vocab) {}
  void gemm(const TensorView& A, bool ta, const TensorView& B, bool tb, const TensorView& C, float alpha,
            float beta) override {
    if (tb && B.dim(0) == V_ && depth_ == 0) note(A, B);
    ++depth_;  // CpuBackend's bf16 gemm calls gemm again on fp32 copies: count the outer call only
    CpuBackend::gemm(A, ta, B, tb, C, alpha, beta);
    --depth_;
  }
  void logsoftmax_gather_fwd(const TensorView& h, const TensorView& W, const int32_t* t, int64_t chunk, float* logp,
                             float* lse) override {
    note(h, W);
    CpuBackend::logsoftmax_gather_fwd(h, W, t, chunk, logp, lse);
  }
  void logsoftmax_gather_bwd(const TensorView& h, const TensorView& W, const int32_t* t, int64_t chunk,
                             const float* lse, const float* dlogp, const TensorView& dh, const TensorView& dW) override {
    note(h, W);
    CpuBackend::logsoftmax_gather_bwd(h, W, t, chunk, lse, dlogp, dh, dW);
  }
  void embedding_fwd(const TensorView& table, const int32_t* ids, const TensorView& out) override {
    if (table.dim(0) == V_) embedding[table.dtype == DType::BF16]++;
    CpuBackend::embedding_fwd(table, ids, out);
  }
  int64_t head[2] = {0, 0}, embedding[2] = {0, 0};  // calls [f32 operands, bf16 operands]

 private:
  void note(const TensorView& h, const TensorView& W) {
    REQUIRE(h.dtype == W.dtype);
    head[W.dtype == DType::BF16]++;
  }
  int64_t V_;
  int depth_ = 0;
};

TEST_CASE("model bf16: bf16 activations multiply the LM head in bf16, f32 activations in fp32, the table stays bf16",
          "[model]") {
  const ModelConfig c = bf16_config();
  const ParamLayout layout(c);
  const auto params = rounded_params(layout);
  const Batch b = make_batch(c);
  for (DType acts : {DType::F32, DType::BF16}) {
    INFO("activations " << dtype_name(acts));
    HeadProbe be(c.vocab_size);
    DreamModel m(c, be);
    Bf16Source src(layout, params);
    bind_bf16(m, src, acts);
    step(m, b, src.g);  // forward, log-probs, logits of 3 rows, backward
    const bool bf16 = acts == DType::BF16;
    CHECK(be.head[bf16] >= 3);  // gather forward and backward, the logits GEMM
    CHECK(be.head[!bf16] == 0);
    CHECK(be.embedding[1] >= 1);  // the bf16 table itself, no fp32 copy
    CHECK(be.embedding[0] == 0);
  }
}

// Counts fp32 -> bf16 casts while `on`.
class CastProbe final : public CpuBackend {
 public:
  CastProbe() : CpuBackend(1) {}
  void cast(const TensorView& src, const TensorView& dst) override {
    if (on && src.dtype == DType::F32 && dst.dtype == DType::BF16) ++casts;
    CpuBackend::cast(src, dst);
  }
  bool on = false;
  int64_t casts = 0;
};

TEST_CASE("model bf16: a layer's backward rounds each output gradient once for its two matmuls", "[model]") {
  // per layer, dX = dY W and dW += dY^T X share dY's bf16 copy: dx2, dgu, dx1, dqkv are rounded once each, and with
  // fp32 activations the four dW operands m, a2, o, a1 as well. One more layer adds exactly that many casts.
  for (DType acts : {DType::F32, DType::BF16}) {
    int64_t casts[2] = {0, 0};
    for (int layers : {1, 2}) {
      ModelConfig c = bf16_config();
      c.num_hidden_layers = layers;
      const ParamLayout layout(c);
      const auto params = rounded_params(layout);
      const Batch b = make_batch(c);
      CastProbe be;
      DreamModel m(c, be);
      Bf16Source src(layout, params);
      bind_bf16(m, src, acts);
      const ModelInput in{b.B, b.L, b.ids.data(), b.pos.data(), b.mask.data()};
      std::vector<float> logp(b.rows.size());
      m.forward(in, true);
      m.logprobs(int64_t(b.rows.size()), b.rows.data(), b.targets.data(), logp.data());
      be.on = true;
      m.backward(b.dlogp.data());
      casts[layers - 1] = be.casts;
    }
    INFO("activations " << dtype_name(acts));
    CHECK(casts[1] - casts[0] == (acts == DType::BF16 ? 4 : 8));
  }
}

TEST_CASE("model bf16: param_dtype_scratch_bytes and activation_bytes are what the model allocates", "[model]") {
  const ModelConfig c = bf16_config();
  const ParamLayout layout(c);
  const auto params = rounded_params(layout);
  const Batch b = make_batch(c);
  // 0: fp32; 1: bf16 parameters; 2: bf16 parameters and activations
  int64_t model_ws[3] = {0, 0, 0}, acts[3] = {0, 0, 0};
  size_t predicted[3] = {0, 0, 0};
  for (int mode = 0; mode < 3; ++mode) {
    INFO("mode " << mode);
    CpuBackend be(1);
    DreamModel m(c, be);
    m.set_vocab_chunk(32);
    std::vector<float> g32(params.size());
    Bf16Source src(layout, params);
    if (mode > 0) {
      m.set_param_dtype(DType::BF16);
      m.set_compute_dtype(mode == 2 ? DType::BF16 : DType::F32);
      m.bind(&src, true);
    } else {
      m.bind(params.data(), g32.data());
    }
    const int64_t before = live_bytes(MemCategory::Workspace), act0 = live_bytes(MemCategory::Activations);
    const ModelInput in{b.B, b.L, b.ids.data(), b.pos.data(), b.mask.data()};
    m.forward(in, true);
    acts[mode] = live_bytes(MemCategory::Activations) - act0;
    CHECK(acts[mode] == int64_t(m.activation_bytes(b.B, b.L, true)));
    step(m, b, mode > 0 ? src.g : g32);
    // the backend's own scratch (incl. its fp32 copies of bf16 operands) is not the model's
    model_ws[mode] = live_bytes(MemCategory::Workspace) - before - int64_t(be.workspace_capacity_bytes());
    predicted[mode] = m.param_dtype_scratch_bytes(b.B, b.L, true);
  }
  CHECK(predicted[0] == 0);
  CHECK(predicted[1] > predicted[2]);  // bf16 activations need no bf16 copies of activation operands
  CHECK(predicted[2] > 0);
  CHECK(model_ws[1] - model_ws[0] == int64_t(predicted[1]));
  CHECK(model_ws[2] - model_ws[0] == int64_t(predicted[2]));
  CHECK(acts[1] == acts[0]);
  // the six saved activations (2H + QKV + QW + 3I per token and layer) halve; the 256-byte alignment is below 1%
  const int64_t N = b.B * b.L, saved = N * (2 * c.hidden_size + 3 * c.intermediate_size + c.head_dim() *
                                                 (2 * c.num_attention_heads + 2 * c.num_key_value_heads));
  CHECK(std::abs(double(acts[0] - acts[2]) - double(saved * 2 * c.num_hidden_layers)) <
        0.01 * double(saved * 2 * c.num_hidden_layers) + 16 * 256 * c.num_hidden_layers);
}

TEST_CASE("model bf16: bind(params, grads) is fp32 only, f16 is refused", "[model]") {
  const ModelConfig c = bf16_config();
  CpuBackend be(1);
  DreamModel m(c, be);
  std::vector<float> p(size_t(m.layout().total())), g(p.size());
  REQUIRE(m.param_dtype() == DType::F32);
  m.bind(p.data(), g.data());
  REQUIRE_THROWS_WITH(m.set_param_dtype(DType::BF16), Catch::Contains("bind bf16 parameters through a ParamSource"));
  Bf16Source src(m.layout(), p);
  m.bind(&src, true);
  m.set_param_dtype(DType::BF16);
  REQUIRE_THROWS_WITH(m.bind(p.data(), g.data()), Catch::Contains("takes fp32 parameters, but the parameter dtype is "
                                                                  "bf16"));
  REQUIRE_THROWS_WITH(m.set_param_dtype(DType::F16), Catch::Contains("must be f32 or bf16"));
  m.set_param_dtype(DType::F32);
  m.bind(p.data(), g.data());  // back to fp32: fine
  REQUIRE_THROWS_WITH(m.set_compute_dtype(DType::F16), Catch::Contains("must be f32 or bf16"));
  m.set_compute_dtype(DType::BF16);  // with fp32 parameters: refused at the forward
  const Batch b = make_batch(c);
  const ModelInput in{b.B, b.L, b.ids.data(), b.pos.data(), b.mask.data()};
  REQUIRE_THROWS_WITH(m.forward(in, true), Catch::Contains("bf16 activations need bf16 parameters"));
}
