// ModelWeights: the weights of an HF model directory (config.json + safetensors, single file or sharded with
// model.safetensors.index.json) matched against a ParamLayout once, then read in any range of the layout's
// flat coordinates. Ranks stream what they store unit by unit (load_units, upload_params) instead of holding
// the whole model in host memory: DiffuCoder-7B is 30 GB of fp32, per rank.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cgrpo/io/safetensors.h"
#include "cgrpo/model/param_layout.h"

namespace cgrpo {

class ModelWeights {
 public:
  // Every tensor of the layout must be present with its shape, and no file may hold a tensor the layout lacks
  // (rotary_emb.inv_freq buffers excepted); a mismatch is fatal, naming the file and the tensor.
  ModelWeights(const std::string& dir, const ParamLayout& layout);
  // out[0, count) = the flat layout's parameters [first, first + count), converted to fp32. Reads only those
  // bytes of the files. Matches ParamFill.
  void read(int64_t first, int64_t count, float* out) const;
  // read() as a ParamFill (for load_units, upload_params); valid while this object lives.
  ParamFill fill() const {
    return [this](int64_t first, int64_t count, float* out) { read(first, count, out); };
  }

 private:
  const ParamLayout& layout_;
  std::vector<ModelTensorEntry> entries_;
  std::vector<const ModelTensorEntry*> of_param_;  // [layout.params().size()]
  mutable std::map<std::string, std::unique_ptr<SafetensorsFile>> open_;
};

// All of dir's weights into params [layout.total()] (ModelWeights(dir, layout).read(0, total, params)).
void load_model_weights(const std::string& dir, const ParamLayout& layout, float* params);

}  // namespace cgrpo
