#include "cgrpo/tokenizer/special_tokens.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cgrpo/core/error.h"
#include "cgrpo/tokenizer/tokenizer.h"

namespace cgrpo {

void SpecialTokens::resolve_from(const Tokenizer& tok) {
  const auto find = [&](const char* name) -> int32_t {
    for (const AddedToken& a : tok.added_tokens())
      if (a.content == name) return a.id;
    return -1;
  };
  endoftext = find(kEndOfText);
  im_start = find(kImStart);
  im_end = find(kImEnd);
  beginoftext = find(kBeginOfText);
  mask = find(kMask);
  dlm_pad = find(kDlmPad);
  pad = bos = eos = endoftext;
}

void SpecialTokens::apply_model_config(const std::string& model_dir) {
  const std::string path = (std::filesystem::path(model_dir) / "config.json").string();
  std::ifstream f(path, std::ios::binary);
  if (!f.good()) return;
  nlohmann::json cfg;
  try {
    f >> cfg;
  } catch (const nlohmann::json::exception& e) {
    CGRPO_FAIL("model config ", path, ": not valid JSON: ", e.what());
  }
  CGRPO_CHECK(cfg.is_object(), "model config ", path, ": top level must be a JSON object");
  const auto take = [&](const char* key, int32_t& id) {
    if (!cfg.contains(key) || cfg[key].is_null()) return;
    const nlohmann::json& v = cfg[key];
    CGRPO_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < (int64_t(1) << 30),
                "model config ", path, ": field '", key, "' must be a token id (integer >= 0), got ", v.dump());
    id = static_cast<int32_t>(v.get<int64_t>());
  };
  take("mask_token_id", mask);
  take("pad_token_id", pad);
  take("bos_token_id", bos);
  take("eos_token_id", eos);
}

SpecialTokens SpecialTokens::load(const Tokenizer& tok, const std::string& model_dir) {
  SpecialTokens s;
  s.resolve_from(tok);
  if (!model_dir.empty()) s.apply_model_config(model_dir);
  return s;
}

}  // namespace cgrpo
