#include "cgrpo/model/model_config.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cgrpo/core/error.h"
#include "cgrpo/model/param_layout.h"

namespace cgrpo {

namespace {
using json = nlohmann::json;

const json& field(const json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  CGRPO_CHECK(it != j.end(), where, ": missing field \"", key, "\"",
              hint("a Dream config.json needs it (spec §1.1); regenerate with `cgrpo init` or copy it from the HF repo"));
  return *it;
}
int64_t get_int(const json& j, const char* key, const std::string& where) {
  const json& v = field(j, key, where);
  CGRPO_CHECK(v.is_number_integer(), where, ": field \"", key, "\" must be an integer, got ", v.dump());
  return v.get<int64_t>();
}
double get_num(const json& j, const char* key, const std::string& where) {
  const json& v = field(j, key, where);
  CGRPO_CHECK(v.is_number(), where, ": field \"", key, "\" must be a number, got ", v.dump());
  return v.get<double>();
}
bool get_bool(const json& j, const char* key, const std::string& where) {
  const json& v = field(j, key, where);
  CGRPO_CHECK(v.is_boolean(), where, ": field \"", key, "\" must be true or false, got ", v.dump());
  return v.get<bool>();
}
}  // namespace

int64_t ModelConfig::num_params() const { return ParamLayout(*this).total(); }

void ModelConfig::validate(const std::string& where) const {
  auto positive = [&](int64_t v, const char* key) {
    CGRPO_CHECK(v > 0, where, ": ", key, " must be > 0, got ", v);
  };
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(intermediate_size, "intermediate_size");
  positive(num_hidden_layers, "num_hidden_layers");
  positive(num_attention_heads, "num_attention_heads");
  positive(num_key_value_heads, "num_key_value_heads");
  positive(max_position_embeddings, "max_position_embeddings");
  CGRPO_CHECK(hidden_size % num_attention_heads == 0, where, ": hidden_size ", hidden_size,
              " is not a multiple of num_attention_heads ", num_attention_heads);
  CGRPO_CHECK(num_attention_heads % num_key_value_heads == 0, where, ": num_attention_heads ", num_attention_heads,
              " is not a multiple of num_key_value_heads ", num_key_value_heads);
  CGRPO_CHECK(head_dim() % 2 == 0 && head_dim() <= 1024, where, ": head_dim ", head_dim(),
              " must be even and <= 1024 (RoPE rotates half-split pairs)");
  CGRPO_CHECK(rope_theta > 0, where, ": rope_theta must be > 0, got ", rope_theta);
  CGRPO_CHECK(rms_norm_eps > 0, where, ": rms_norm_eps must be > 0, got ", rms_norm_eps);
  auto token = [&](int64_t v, const char* key) {
    CGRPO_CHECK(v >= 0 && v < vocab_size, where, ": ", key, " ", v, " is outside the vocabulary [0, ", vocab_size,
                ")");
  };
  token(mask_token_id, "mask_token_id");
  token(pad_token_id, "pad_token_id");
  token(bos_token_id, "bos_token_id");
  token(eos_token_id, "eos_token_id");
}

ModelConfig ModelConfig::from_json(const std::string& text, const std::string& where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    CGRPO_FAIL(where, ": not valid JSON: ", e.what());
  }
  CGRPO_CHECK(j.is_object(), where, ": expected a JSON object");
  ModelConfig c;
  c.vocab_size = get_int(j, "vocab_size", where);
  c.hidden_size = get_int(j, "hidden_size", where);
  c.intermediate_size = get_int(j, "intermediate_size", where);
  c.num_hidden_layers = get_int(j, "num_hidden_layers", where);
  c.num_attention_heads = get_int(j, "num_attention_heads", where);
  c.num_key_value_heads = get_int(j, "num_key_value_heads", where);
  c.max_position_embeddings = get_int(j, "max_position_embeddings", where);
  c.rope_theta = get_num(j, "rope_theta", where);
  c.rms_norm_eps = get_num(j, "rms_norm_eps", where);
  c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", where);
  c.mask_token_id = get_int(j, "mask_token_id", where);
  c.pad_token_id = get_int(j, "pad_token_id", where);
  c.bos_token_id = get_int(j, "bos_token_id", where);
  c.eos_token_id = get_int(j, "eos_token_id", where);
  if (auto it = j.find("hidden_act"); it != j.end())
    CGRPO_CHECK(*it == "silu", where, ": hidden_act ", it->dump(), " is not supported (only silu)");
  if (auto it = j.find("rope_scaling"); it != j.end())
    CGRPO_CHECK(it->is_null(), where, ": rope_scaling ", it->dump(), " is not supported (only default RoPE)");
  if (auto it = j.find("use_sliding_window"); it != j.end())
    CGRPO_CHECK(*it == false, where, ": use_sliding_window = true is not supported");
  c.validate(where);
  return c;
}

ModelConfig ModelConfig::load(const std::string& path) {
  std::ifstream f(path);
  CGRPO_CHECK(f.good(), "cannot open model config ", path, hint("pass the model directory containing config.json"));
  std::stringstream ss;
  ss << f.rdbuf();
  return from_json(ss.str(), path);
}

std::string ModelConfig::to_json() const {
  json j = {
      {"architectures", {"DreamModel"}},
      {"model_type", "Dream"},
      {"vocab_size", vocab_size},
      {"hidden_size", hidden_size},
      {"intermediate_size", intermediate_size},
      {"num_hidden_layers", num_hidden_layers},
      {"num_attention_heads", num_attention_heads},
      {"num_key_value_heads", num_key_value_heads},
      {"hidden_act", "silu"},
      {"max_position_embeddings", max_position_embeddings},
      {"rope_theta", rope_theta},
      {"rope_scaling", nullptr},
      {"rms_norm_eps", rms_norm_eps},
      {"tie_word_embeddings", tie_word_embeddings},
      {"attention_dropout", 0.0},
      {"use_sliding_window", false},
      {"sliding_window", nullptr},
      {"use_cache", false},
      {"mask_token_id", mask_token_id},
      {"pad_token_id", pad_token_id},
      {"bos_token_id", bos_token_id},
      {"eos_token_id", eos_token_id},
      {"torch_dtype", "float32"},
  };
  return j.dump(2) + "\n";
}

void ModelConfig::save(const std::string& path) const {
  std::ofstream f(path);
  CGRPO_CHECK(f.good(), "cannot write ", path);
  f << to_json();
  f.close();
  CGRPO_CHECK(!f.fail(), "write to ", path, " failed", hint("check free disk space"));
}

std::vector<std::string> ModelConfig::preset_names() { return {"tiny", "small", "1b", "diffucoder-7b"}; }

ModelConfig ModelConfig::preset(const std::string& name) {
  ModelConfig c;
  c.rms_norm_eps = 1e-6;
  c.tie_word_embeddings = false;
  if (name == "tiny" || name == "small") {
    const bool tiny = name == "tiny";
    c.vocab_size = tiny ? 512 : 16384;
    c.hidden_size = tiny ? 64 : 512;
    c.intermediate_size = tiny ? 128 : 1408;
    c.num_hidden_layers = tiny ? 2 : 8;
    c.num_attention_heads = tiny ? 4 : 8;
    c.num_key_value_heads = 2;
    c.max_position_embeddings = 4096;
    c.rope_theta = 10000.0;
    c.mask_token_id = c.vocab_size - 1;
    c.pad_token_id = c.bos_token_id = c.eos_token_id = c.vocab_size - 2;
  } else if (name == "1b") {
    c.vocab_size = 151936;
    c.hidden_size = 1536;
    c.intermediate_size = 8960;
    c.num_hidden_layers = 28;
    c.num_attention_heads = 12;
    c.num_key_value_heads = 2;
    c.max_position_embeddings = 32768;
    c.rope_theta = 1000000.0;
    c.tie_word_embeddings = true;
    c.mask_token_id = 151666;
    c.pad_token_id = c.bos_token_id = c.eos_token_id = 151643;
  } else if (name == "diffucoder-7b") {  // spec §1.1, [CFG]
    c.vocab_size = 152064;
    c.hidden_size = 3584;
    c.intermediate_size = 18944;
    c.num_hidden_layers = 28;
    c.num_attention_heads = 28;
    c.num_key_value_heads = 4;
    c.max_position_embeddings = 131072;
    c.rope_theta = 1000000.0;
    c.mask_token_id = 151666;
    c.pad_token_id = c.bos_token_id = c.eos_token_id = 151643;
  } else {
    CGRPO_FAIL("unknown model preset '", name, "'", hint("use one of tiny, small, 1b, diffucoder-7b"));
  }
  c.validate("preset " + name);
  return c;
}

}  // namespace cgrpo
