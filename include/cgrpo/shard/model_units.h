// Glue between the Dream model and the ZeRO engine: the model's units as engine UnitSpecs (HF names,
// logical shapes, weight-decay flags), and a ParamSource that serves the model from the engine.
#pragma once

#include <string>
#include <vector>

#include "cgrpo/model/param_layout.h"
#include "cgrpo/model/param_source.h"
#include "cgrpo/shard/zero_engine.h"

namespace cgrpo {

// no_decay: substrings of tensor names excluded from weight decay (optim.wd_exclude, e.g. {"bias", "norm"}).
std::vector<UnitSpec> units_from_layout(const ParamLayout& layout, const std::vector<std::string>& no_decay);

// Serves DreamModel from a ZeroEngine: acquire/release map to the engine's (stage-3) gathers,
// grads_done to the per-unit reduce-scatter (stages 2-3).
class EngineParamSource final : public ParamSource {
 public:
  explicit EngineParamSource(ZeroEngine& e) : e_(e) {}
  const void* acquire(int u) override {
    e_.acquire(u);
    return e_.param_data(u);
  }
  void release(int u) override { e_.release(u); }
  float* grads(int u) override { return e_.grads(u); }
  void grads_done(int u) override { e_.reduce_grads(u); }
  void prefetch(int u) override { e_.prefetch(u); }

 private:
  ZeroEngine& e_;
};

// Copies a flat ParamLayout buffer into the engine (every rank passes the same values) and back out.
void load_flat(ZeroEngine& e, const ParamLayout& layout, const float* flat);
// Fills every unit of e, and of `also` (nullptr, or an engine over the same units, e.g. the frozen reference),
// from fill one unit at a time, asking only for the values this rank stores (ZeroEngine::load_range: its
// stage-3 shard, else the unit): host memory is one unit's range, not the model. Not collective.
void load_units(ZeroEngine& e, const ParamLayout& layout, const ParamFill& fill, ZeroEngine* also = nullptr);
// read_flat: collective at stage 3 (f32) and at stages 1-3 with bf16 parameters (gathers the fp32 master).
void read_flat(ZeroEngine& e, const ParamLayout& layout, float* flat);

}  // namespace cgrpo
