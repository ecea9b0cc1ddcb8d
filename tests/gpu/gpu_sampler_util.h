// Helpers of the GPU sampler tests: rows of logits on the device with a chosen row stride, and one sample_rows
// call on any backend returning (tokens, confidences, the rows as the op left them).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "cgrpo/backend/backend.h"

namespace cgrpo::test {

struct SampledRows {
  std::vector<int32_t> tokens;
  std::vector<float> conf;
  std::vector<float> logits;  // [R, V] after the op (tempered)
};

// rows: R rows of V logits; ld >= V is the row stride used on the backend (the padding is filled with NaN, which
// the op must never read).
inline SampledRows sample_on(Backend& be, const std::vector<std::vector<float>>& rows, int64_t ld,
                             const std::vector<double>& u, const TokenSampling& s, Confidence kind) {
  const int64_t R = int64_t(rows.size()), V = int64_t(rows.at(0).size());
  std::vector<float> host(size_t(R * ld), NAN);
  for (int64_t r = 0; r < R; ++r) std::copy(rows[size_t(r)].begin(), rows[size_t(r)].end(), host.begin() + r * ld);
  Buffer buf = be.alloc(host.size() * sizeof(float), MemCategory::Workspace);
  be.upload(host.data(), buf.data(), host.size() * sizeof(float));
  TensorView view(buf.data(), DType::F32, {R, V}, be.device());
  view.strides[0] = ld;
  SampledRows out;
  out.tokens.assign(size_t(R), -1);
  out.conf.assign(size_t(R), NAN);
  be.sample_rows(view, u.data(), s, kind, out.tokens.data(), out.conf.data());
  be.download(buf.data(), host.data(), host.size() * sizeof(float));
  out.logits.resize(size_t(R * V));
  for (int64_t r = 0; r < R; ++r)
    std::copy(host.begin() + r * ld, host.begin() + r * ld + V, out.logits.begin() + r * V);
  return out;
}

}  // namespace cgrpo::test
