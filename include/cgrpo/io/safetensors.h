// safetensors (https://github.com/huggingface/safetensors): 8-byte little-endian header length N, N bytes of
// JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the data section
// (offsets are relative to it). F32, BF16 and F16 are supported; every tensor loads into fp32.
//
// A model directory is HF-style: config.json + model.safetensors, or model-0000i-of-0000n.safetensors +
// model.safetensors.index.json {"metadata": {"total_size"}, "weight_map": {tensor: file}}.
// Every malformed input is a cgrpo::Error naming the file and, where there is one, the tensor.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cgrpo/core/dtype.h"
#include "cgrpo/model/model_config.h"
#include "cgrpo/model/param_layout.h"

namespace cgrpo {

struct SafetensorsTensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  int64_t numel = 0;
  uint64_t begin = 0, end = 0;  // byte offsets into the data section
};

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);  // reads and validates the header only
  const std::string& path() const { return path_; }
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafetensorsTensor* find(const std::string& name) const;
  // Reads elements [first, first + count) of t (row-major; count < 0: to the end) converted to fp32 into
  // dst [count]: a rank reads only the part of a tensor it stores.
  void read_f32(const SafetensorsTensor& t, float* dst, int64_t first = 0, int64_t count = -1) const;

 private:
  std::string path_;
  uint64_t data_start_ = 0;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

struct TensorToWrite {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;  // its first element in the fill's flat coordinates
};
// Writes one safetensors file (via path.tmp and a rename) with the tensors in the given order, all stored as
// `dtype`; the fp32 values come from fill chunk by chunk (16 MiB), so the model need not be in memory.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors, const ParamFill& fill,
                       DType dtype, const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// Writes config.json and the weights (ParamLayout of cfg; a flat fp32 buffer, or any ParamFill such as
// init_params_range or a checkpoint reader) into dir (created if missing). max_shard_bytes = 0: one
// model.safetensors; otherwise shards of at most that many bytes (a tensor larger than that gets a shard of its
// own) plus model.safetensors.index.json.
void save_model(const std::string& dir, const ModelConfig& cfg, const ParamFill& fill, DType dtype,
                uint64_t max_shard_bytes = 0);
void save_model(const std::string& dir, const ModelConfig& cfg, const float* params, DType dtype,
                uint64_t max_shard_bytes = 0);

// Every tensor of dir's safetensors file(s), with the file it is in (index order, or file order).
struct ModelTensorEntry {
  std::string file;
  SafetensorsTensor tensor;
};
std::vector<ModelTensorEntry> list_model_tensors(const std::string& dir);

}  // namespace cgrpo
