#include "cgrpo/model/numerics_check.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "cgrpo/backend/cpu_backend.h"
#include "cgrpo/core/philox.h"
#include "cgrpo/model/dream_model.h"
#include "cgrpo/model/flat_params.h"

namespace cgrpo {

namespace {

ModelConfig check_config() {
  ModelConfig c = ModelConfig::preset("tiny");
  c.hidden_size = 128;
  c.intermediate_size = 192;
  c.num_attention_heads = 2;  // head_dim 64
  c.num_key_value_heads = 1;  // GQA group 2
  c.vocab_size = 300;
  c.mask_token_id = 299;
  c.pad_token_id = c.bos_token_id = c.eos_token_id = 298;
  return c;
}

struct Result {
  std::vector<float> logp, logits, grads;
};

Result run(Backend& be, const ModelConfig& c, const std::vector<float>& host, DType dtype) {
  const int64_t B = 2, L = 37, N = B * L, P = int64_t(host.size());
  std::vector<int32_t> ids(N), pos(N), rows, targets;
  std::vector<uint8_t> mask(N);
  std::vector<float> dlogp;
  for (int64_t r = 0; r < N; ++r) {
    const int64_t s = r / L, i = r % L, pads = 5 * s;  // row 1 is left-padded
    const bool pad = i < pads;
    ids[r] = pad ? int32_t(c.pad_token_id) : i % 5 == 4 ? int32_t(c.mask_token_id) : int32_t((31 * s + 7 * i) % 290);
    pos[r] = pad ? 0 : int32_t(i - pads);
    mask[r] = pad ? 0 : 1;
    if (!pad) {
      rows.push_back(int32_t(r));
      targets.push_back(int32_t((13 * s + 5 * i) % c.vocab_size));
      dlogp.push_back(-1.0f / float(1 + i % 3));
    }
  }
  const Buffer p = upload_params(be, host.data(), P, dtype);
  Buffer g = be.alloc(size_t(P) * 4, MemCategory::Grads);
  const std::vector<float> zeros(size_t(P), 0.0f);
  be.upload(zeros.data(), g.data(), size_t(P) * 4);
  DreamModel m(c, be);
  FlatParams src(m.layout(), p.data(), dtype, g.as<float>());
  m.set_vocab_chunk(128);
  m.set_param_dtype(dtype);
  m.set_compute_dtype(dtype);
  m.bind(&src, true);
  Result out;
  out.logp.resize(rows.size());
  m.forward({B, L, ids.data(), pos.data(), mask.data()}, true);
  m.logprobs(int64_t(rows.size()), rows.data(), targets.data(), out.logp.data());
  m.backward(dlogp.data());
  const int32_t logit_rows[3] = {0, 40, int32_t(N - 1)};
  out.logits.resize(size_t(3 * c.vocab_size));
  m.logits(3, logit_rows, out.logits.data());
  m.release_held();
  out.grads.resize(size_t(P));
  be.download(g.data(), out.grads.data(), size_t(P) * 4);
  return out;
}

// max |got - want| / max |want|, or a NaN/inf description
double rel_err(const std::vector<float>& got, const std::vector<float>& want, size_t at, size_t n) {
  double d = 0, w = 1e-30;
  for (size_t i = at; i < at + n; ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    d = std::max(d, std::fabs(double(got[i]) - double(want[i])));
    w = std::max(w, std::fabs(double(want[i])));
  }
  return d / w;
}

}  // namespace

std::string model_numerics_check(Backend& dev, DType dtype) {
  CGRPO_CHECK(dtype == DType::F32 || dtype == DType::BF16, "model_numerics_check: f32 or bf16, got ", dtype_name(dtype));
  const ModelConfig c = check_config();
  const ParamLayout layout(c);
  std::vector<float> host(size_t(layout.total()));
  init_params(layout, host.data(), 7, 0.2f);  // large weights: sharp attention, every path exercised
  std::vector<float> jitter(host.size());
  RngStream(7, RngPurpose::Test, 0, 0).fill_normal(jitter.data(), int64_t(jitter.size()), 0.0f, 0.1f);
  for (size_t i = 0; i < host.size(); ++i) host[i] += jitter[i];  // norm weights != 1, biases != 0
  CpuBackend cpu(1);
  const Result want = run(cpu, c, host, dtype), got = run(dev, c, host, dtype);
  const bool bf16 = dtype == DType::BF16;
  const double tol = bf16 ? 3e-2 : 1e-3, grad_tol = bf16 ? 8e-2 : 2e-3;
  char buf[256];
  const double e_logp = rel_err(got.logp, want.logp, 0, want.logp.size());
  const double e_logits = rel_err(got.logits, want.logits, 0, want.logits.size());
  if (!(e_logp <= tol && e_logits <= tol)) {
    std::snprintf(buf, sizeof(buf), "%s model: log-probs off by %.2e, logits by %.2e of their scale (allowed %.0e)",
                  dtype_name(dtype), e_logp, e_logits, tol);
    return buf;
  }
  for (const ParamInfo& p : layout.params()) {
    const double e = rel_err(got.grads, want.grads, size_t(p.offset), size_t(p.numel));
    if (!(e <= grad_tol)) {
      std::snprintf(buf, sizeof(buf), "%s model: gradient of %s off by %.2e of its scale (allowed %.0e)",
                    dtype_name(dtype), p.name.c_str(), e, grad_tol);
      return buf;
    }
  }
  return "";
}

}  // namespace cgrpo
