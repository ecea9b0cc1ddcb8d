#include "cgrpo/model/param_layout.h"

#include "cgrpo/core/error.h"

namespace cgrpo {

const char* param_kind_name(ParamKind k) {
  static const char* names[] = {"embedding", "norm", "qkv_weight", "qkv_bias", "out_proj", "gate_up", "down", "head"};
  return names[static_cast<int>(k)];
}

void ParamLayout::add(std::string name, std::vector<int64_t> shape, ParamKind kind) {
  ParamInfo p;
  p.name = std::move(name);
  p.shape = std::move(shape);
  p.numel = 1;
  for (int64_t d : p.shape) p.numel *= d;
  p.offset = total_;
  p.unit = static_cast<int>(units_.size()) - 1;
  p.kind = kind;
  total_ += p.numel;
  units_.back().numel += p.numel;
  units_.back().count++;
  params_.push_back(std::move(p));
}

ParamLayout::ParamLayout(const ModelConfig& c) {
  c.validate("ParamLayout");
  const int64_t V = c.vocab_size, H = c.hidden_size, I = c.intermediate_size, hd = c.head_dim();
  const int64_t QW = c.num_attention_heads * hd, KW = c.num_key_value_heads * hd;
  auto unit = [&](std::string name) {
    ParamUnit u;
    u.name = std::move(name);
    u.offset = total_;
    u.first = static_cast<int>(params_.size());
    units_.push_back(u);
  };
  unit("embedding");
  embed_ = total_;
  add("model.embed_tokens.weight", {V, H}, ParamKind::Embedding);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    unit("layers." + std::to_string(l));
    LayerOffsets o;
    o.ln_in = total_;
    add(p + "input_layernorm.weight", {H}, ParamKind::Norm);
    o.w_qkv = total_;
    add(p + "self_attn.q_proj.weight", {QW, H}, ParamKind::QkvWeight);
    add(p + "self_attn.k_proj.weight", {KW, H}, ParamKind::QkvWeight);
    add(p + "self_attn.v_proj.weight", {KW, H}, ParamKind::QkvWeight);
    o.b_qkv = total_;
    add(p + "self_attn.q_proj.bias", {QW}, ParamKind::QkvBias);
    add(p + "self_attn.k_proj.bias", {KW}, ParamKind::QkvBias);
    add(p + "self_attn.v_proj.bias", {KW}, ParamKind::QkvBias);
    o.w_o = total_;
    add(p + "self_attn.o_proj.weight", {H, QW}, ParamKind::OutProj);
    o.ln_post = total_;
    add(p + "post_attention_layernorm.weight", {H}, ParamKind::Norm);
    o.w_gate_up = total_;
    add(p + "mlp.gate_proj.weight", {I, H}, ParamKind::GateUp);
    add(p + "mlp.up_proj.weight", {I, H}, ParamKind::GateUp);
    o.w_down = total_;
    add(p + "mlp.down_proj.weight", {H, I}, ParamKind::Down);
    layers_.push_back(o);
  }
  unit("head");
  final_norm_ = total_;
  add("model.norm.weight", {H}, ParamKind::Norm);
  head_ = embed_;
  if (!c.tie_word_embeddings) {
    head_ = total_;
    add("lm_head.weight", {V, H}, ParamKind::Head);
  }
}

const ParamInfo* ParamLayout::find(const std::string& name) const {
  for (const ParamInfo& p : params_)
    if (p.name == name) return &p;
  return nullptr;
}

}  // namespace cgrpo
