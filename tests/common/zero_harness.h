// A synthetic model for ZeRO engine tests: units of odd sizes (padding and decay boundaries everywhere) and
// a separable quadratic loss per global sample j,  L_j = 0.5 * sum_i c_ji (p_i - t_ji)^2,  dL_j/dp_i =
// c_ji (p_i - t_ji), with c, t drawn from Philox by (sample, element): any rank computes any sample.
// The global batch of a step is samples [step * B, (step + 1) * B); rank r of W takes a contiguous block
// per micro-batch. The loss is normalised by the global batch size B, so results do not depend on W.
#pragma once

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "cgrpo/core/philox.h"
#include "cgrpo/shard/zero_engine.h"

namespace cgrpo::testing {

inline std::vector<UnitSpec> toy_units() {
  return {{"embedding", {{"embed", 37, true, {37}}}},
          {"layers.0", {{"layers.0.w", 29, true, {29}}, {"layers.0.b", 5, false, {5}}, {"layers.0.norm", 7, false, {7}}}},
          {"layers.1", {{"layers.1.w", 64, true, {8, 8}}, {"layers.1.norm", 3, false, {3}}}},
          {"head", {{"head.norm", 11, false, {11}}, {"head.w", 23, true, {23}}}}};
}

inline float toy_init(int u, int64_t i) { return RngStream(3, RngPurpose::Init, 0, uint32_t(u)).normal(uint64_t(i)) * 0.5f; }

inline void toy_init_engine(ZeroEngine& e) {
  for (int u = 0; u < e.num_units(); ++u) {
    std::vector<float> full(size_t(e.unit_numel(u)));
    for (int64_t i = 0; i < e.unit_numel(u); ++i) full[size_t(i)] = toy_init(u, i);
    e.load_unit(u, full.data());
  }
}

// The working parameters of acquired unit u as fp32 (what the model reads: bf16 widened exactly), [unit_numel].
inline std::vector<float> toy_working(const ZeroEngine& e, int u) {
  if (e.param_dtype() == DType::F32) return std::vector<float>(e.params(u), e.params(u) + e.unit_numel(u));
  const uint16_t* h = static_cast<const uint16_t*>(e.param_data(u));
  std::vector<float> out(size_t(e.unit_numel(u)));
  for (size_t i = 0; i < out.size(); ++i) out[i] = bf16_to_f32(h[i]);
  return out;
}

// dL_j/dp_i: the gradient of global sample j (`sample`) at element i of unit u, parameter value p, for a loss
// normalised by the global batch size `batch`.
using ToyGrad = float (*)(int u, int64_t sample, int64_t i, float p, int batch);
// The quadratic loss above: c_ji (p_i - t_ji) / batch.
inline float toy_quadratic_grad(int u, int64_t sample, int64_t i, float p, int batch) {
  const RngStream rc(11, RngPurpose::Test, uint32_t(u), uint32_t(sample));
  const float c = 0.5f + rc.uniform(uint64_t(2 * i)), t = rc.uniform(uint64_t(2 * i + 1)) - 0.5f;
  return c * (p - t) / float(batch);
}

// A gradient that does not depend on p: k * 2^-6 with k in [-3, 3] per (unit, sample, element). Any partial sum
// over a batch of at most 24 samples is j * 2^-6 with |j| <= 72 < 2^8, so exact in bf16 (8 significant bits)
// however ranks and micro-batches group it: a bf16 reduction then gives exactly the f32 one.
inline float toy_bf16_exact_grad(int u, int64_t sample, int64_t i, float, int) {
  const RngStream r(12, RngPurpose::Test, uint32_t(u), uint32_t(sample));
  return std::ldexp(float(int(r.uniform(uint64_t(i)) * 7.0f) - 3), -6);
}

// Optimizer steps [first, first + steps) of `micro` micro-batches each; `batch` samples per step (divisible by
// W * micro). Step s always uses samples [s * batch, (s + 1) * batch), so a resumed run continues identically.
inline void toy_steps(ZeroEngine& e, int first, int steps, int micro, int batch, double lr, double max_norm,
                      std::vector<double>* norms = nullptr, ToyGrad grad = toy_quadratic_grad) {
  const int W = e.comm().world_size(), r = e.comm().rank();
  if (batch % (W * micro) != 0) throw std::runtime_error("toy_train: batch must divide by W * micro");
  const int per_rank_micro = batch / W / micro;
  for (int s = first; s < first + steps; ++s) {
    for (int mb = 0; mb < micro; ++mb) {
      // forward: touch every unit in order (the values are what the loss reads)
      std::vector<std::vector<float>> p(size_t(e.num_units()));
      for (int u = 0; u < e.num_units(); ++u) {
        e.acquire(u);
        p[size_t(u)] = toy_working(e, u);
        e.release(u);
      }
      // backward in reverse unit order
      for (int u = e.num_units() - 1; u >= 0; --u) {
        e.acquire(u);
        float* g = e.grads(u);
        for (int k = 0; k < per_rank_micro; ++k) {
          const int64_t sample = int64_t(s) * batch + (int64_t(mb) * W + r) * per_rank_micro + k;
          for (int64_t i = 0; i < e.unit_numel(u); ++i) g[i] += grad(u, sample, i, p[size_t(u)][size_t(i)], batch);
        }
        e.release(u);
        e.reduce_grads(u);
      }
    }
    const double n = e.step(lr, max_norm);
    if (norms) norms->push_back(n);
  }
}

// Full logical parameters of every unit (identical on every rank; collective at stage 3).
inline std::vector<std::vector<float>> toy_read(ZeroEngine& e) {
  std::vector<std::vector<float>> out(size_t(e.num_units()));
  for (int u = 0; u < e.num_units(); ++u) {
    out[size_t(u)].resize(size_t(e.unit_numel(u)));
    e.read_unit(u, out[size_t(u)].data());
  }
  return out;
}

// Initialise, train `steps` steps from step 0, return the parameters.
inline std::vector<std::vector<float>> toy_train(ZeroEngine& e, int steps, int micro, int batch, double lr,
                                                 double max_norm, std::vector<double>* norms = nullptr,
                                                 ToyGrad grad = toy_quadratic_grad) {
  toy_init_engine(e);
  toy_steps(e, 0, steps, micro, batch, lr, max_norm, norms, grad);
  return toy_read(e);
}

// Param dtype bf16: elements where the working copy differs from bf16(master), or where padding (working or
// master) is not exactly zero, over every unit (without a master: the working copy's padding). 0 = the invariant holds. Collective (read_unit, acquire).
inline int64_t toy_working_mismatches(ZeroEngine& e) {
  int64_t bad = 0;
  for (int u = 0; u < e.num_units(); ++u) {
    std::vector<float> master(size_t(e.unit_numel(u)));
    e.read_unit(u, master.data());
    e.acquire(u);
    const uint16_t* w = static_cast<const uint16_t*>(e.param_data(u));
    for (int64_t i = 0; i < e.unit_numel(u); ++i) bad += w[i] != f32_to_bf16(master[size_t(i)]);
    for (int64_t i = e.unit_numel(u); i < e.unit_padded(u); ++i) bad += w[i] != 0;
    e.release(u);
    const ShardRange r = e.param_range(u);  // the master this rank holds (none: read_unit widened the working copy)
    if (const float* m = e.param_storage(u))
      for (int64_t i = std::max(r.offset, e.unit_numel(u)); i < r.offset + r.count; ++i) bad += m[i - r.offset] != 0.0f;
  }
  return bad;
}

// Collective: every rank waits until rank 0 has read the process's memory statistics into `into` (the ranks of a
// LocalCommunicator share them) and, with reset_peak, restarted the peaks from there.
inline void memory_snapshot(Communicator& c, MemoryStats& into, bool reset_peak) {
  c.barrier();
  if (c.rank() == 0) {
    into = memory_stats();
    if (reset_peak) reset_peak_memory();
  }
  c.barrier();
}

inline double max_rel_diff(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  double d = 0;
  for (size_t u = 0; u < a.size(); ++u)
    for (size_t i = 0; i < a[u].size(); ++i)
      d = std::max(d, std::fabs(double(a[u][i]) - b[u][i]) / std::max(1e-3, std::fabs(double(b[u][i]))));
  return d;
}

}  // namespace cgrpo::testing
