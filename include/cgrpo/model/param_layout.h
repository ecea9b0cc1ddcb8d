// ParamLayout: every parameter tensor of a Dream model with its HF name (spec §1.6), shape and offset into
// ONE flat fp32 buffer, grouped into units that a sharding module can cut: unit 0 = embedding, units
// 1..n_layers = the layers, the last unit = final norm + LM head. Units are contiguous ranges of the flat
// buffer, in this order.
//
// Inside a layer the order is chosen so fused projections are contiguous: q/k/v weights form one
// [QKV, H] matrix, their biases one [QKV] vector, gate/up weights one [2I, H] matrix.
// With tie_word_embeddings there is no lm_head.weight; the head reads model.embed_tokens.weight.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cgrpo/model/model_config.h"

namespace cgrpo {

enum class ParamKind : uint8_t { Embedding, Norm, QkvWeight, QkvBias, OutProj, GateUp, Down, Head };
const char* param_kind_name(ParamKind k);

struct ParamInfo {
  std::string name;            // HF name, e.g. "model.layers.3.self_attn.k_proj.bias"
  std::vector<int64_t> shape;  // HF shape ([out, in] for linear weights)
  int64_t offset = 0;          // elements into the flat buffer
  int64_t numel = 0;
  int unit = 0;
  ParamKind kind = ParamKind::Embedding;
};

struct ParamUnit {
  std::string name;  // "embedding", "layers.{i}", "head"
  int64_t offset = 0, numel = 0;
  int first = 0, count = 0;  // tensor index range [first, first + count)
};

// Offsets (elements) of one layer's fused tensors.
struct LayerOffsets {
  int64_t ln_in, w_qkv, b_qkv, w_o, ln_post, w_gate_up, w_down;
};

// Writes the flat layout's parameter values [first, first + count) to out[0, count), in fp32: a source of
// initial weights (init_params_range, ModelWeights::read) that a rank asks only for the ranges it stores.
using ParamFill = std::function<void(int64_t first, int64_t count, float* out)>;

class ParamLayout {
 public:
  explicit ParamLayout(const ModelConfig& c);

  const std::vector<ParamInfo>& params() const { return params_; }
  const std::vector<ParamUnit>& units() const { return units_; }
  int64_t total() const { return total_; }
  const ParamInfo* find(const std::string& name) const;  // nullptr when absent
  // f(i, params()[i], lo, hi) for every tensor overlapping the flat range [first, first + count), [lo, hi) being
  // the overlap in flat coordinates: how a ParamFill visits the tensors of the range it is asked for.
  template <class F>
  void for_each_in_range(int64_t first, int64_t count, F&& f) const {
    for (size_t i = 0; i < params_.size(); ++i) {
      const ParamInfo& p = params_[i];
      const int64_t lo = first > p.offset ? first : p.offset;
      const int64_t hi = first + count < p.offset + p.numel ? first + count : p.offset + p.numel;
      if (lo < hi) f(i, p, lo, hi);
    }
  }

  int64_t embed() const { return embed_; }            // [V, H]
  int64_t final_norm() const { return final_norm_; }  // [H]
  int64_t head() const { return head_; }              // [V, H]; == embed() when tied
  const LayerOffsets& layer(int64_t l) const { return layers_[static_cast<size_t>(l)]; }

 private:
  void add(std::string name, std::vector<int64_t> shape, ParamKind kind);
  std::vector<ParamInfo> params_;
  std::vector<ParamUnit> units_;
  std::vector<LayerOffsets> layers_;
  int64_t total_ = 0, embed_ = 0, final_norm_ = 0, head_ = 0;
};

}  // namespace cgrpo
