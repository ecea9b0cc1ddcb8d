// ModelConfig: the Dream / DiffuCoder architecture hyper-parameters of an HF config.json (spec §1.1),
// and the presets `cgrpo init` knows.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cgrpo {

struct ModelConfig {
  int64_t vocab_size = 0;               // V: embedding / head rows
  int64_t hidden_size = 0;              // H
  int64_t intermediate_size = 0;        // I: SwiGLU width
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;      // GQA: heads / kv_heads query heads share one kv head
  int64_t max_position_embeddings = 0;
  double rope_theta = 0;
  double rms_norm_eps = 0;
  bool tie_word_embeddings = false;     // true: no lm_head.weight, the head is model.embed_tokens.weight
  int64_t mask_token_id = -1;
  int64_t pad_token_id = -1;
  int64_t bos_token_id = -1;
  int64_t eos_token_id = -1;

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  int64_t num_params() const;

  // Fatal with a message naming `where` (a file or preset) and the field when a value is invalid.
  void validate(const std::string& where) const;

  // Parses HF config.json text; every field above must be present with the right type (fatal otherwise).
  static ModelConfig from_json(const std::string& text, const std::string& where);
  static ModelConfig load(const std::string& path);  // reads and parses a config.json file
  std::string to_json() const;                       // HF-compatible config.json (architectures DreamModel)
  void save(const std::string& path) const;

  // tiny | small | 1b | diffucoder-7b (fatal for anything else).
  //   tiny:  2 layers, H 64, V 512 (toy vocabulary: ids 0..511, mask 511, pad/bos/eos 510), 139,840 params.
  //   small: 8 layers, H 512, V 16384 (toy vocabulary, mask 16383, pad/bos/eos 16382), 39,336,448 params.
  //   1b:    Qwen2.5-1.5B shape with Dream special ids (V 151936, tied head), 1,543,714,304 params.
  //   diffucoder-7b: apple/DiffuCoder-7B-Instruct config.json (spec §1.1), 7,615,616,512 params.
  static ModelConfig preset(const std::string& name);
  static std::vector<std::string> preset_names();
};

}  // namespace cgrpo
