#include "cgrpo/io/model_weights.h"

#include <algorithm>

#include "cgrpo/core/error.h"
#include "cgrpo/core/tensor_view.h"

namespace cgrpo {

ModelWeights::ModelWeights(const std::string& dir, const ParamLayout& layout)
    : layout_(layout), entries_(list_model_tensors(dir)), of_param_(layout.params().size(), nullptr) {
  std::map<std::string, const ModelTensorEntry*> by_name;
  for (const auto& e : entries_) {
    const bool rotary = e.tensor.name.find("rotary_emb.inv_freq") != std::string::npos;
    if (rotary) continue;  // non-persistent buffer some exporters still write
    CGRPO_CHECK(layout.find(e.tensor.name) != nullptr, e.file, ": tensor ", e.tensor.name,
                " is not part of the model described by config.json (config/weights mismatch)",
                hint("check num_hidden_layers and tie_word_embeddings in " + dir + "/config.json"));
    by_name[e.tensor.name] = &e;
  }
  for (size_t i = 0; i < layout.params().size(); ++i) {
    const ParamInfo& p = layout.params()[i];
    auto it = by_name.find(p.name);
    CGRPO_CHECK(it != by_name.end(), dir, ": tensor ", p.name, " ", shape_str(p.shape),
                " is missing from the weights (config/weights mismatch?)");
    const ModelTensorEntry& e = *it->second;
    CGRPO_CHECK(e.tensor.shape == p.shape, e.file, ": tensor ", p.name, " has shape ", shape_str(e.tensor.shape),
                " but config.json implies ", shape_str(p.shape), " (config/weights mismatch)");
    of_param_[i] = &e;
  }
}

void ModelWeights::read(int64_t first, int64_t count, float* out) const {
  CGRPO_CHECK(first >= 0 && count >= 0 && first + count <= layout_.total(), "ModelWeights::read: range [", first,
              ", ", first + count, ") is outside the model's ", layout_.total(), " parameters");
  layout_.for_each_in_range(first, count, [&](size_t i, const ParamInfo& p, int64_t lo, int64_t hi) {
    const ModelTensorEntry& e = *of_param_[i];
    auto& f = open_[e.file];
    if (!f) f = std::make_unique<SafetensorsFile>(e.file);
    f->read_f32(e.tensor, out + (lo - first), lo - p.offset, hi - lo);
  });
}

void load_model_weights(const std::string& dir, const ParamLayout& layout, float* params) {
  ModelWeights(dir, layout).read(0, layout.total(), params);
}

}  // namespace cgrpo
