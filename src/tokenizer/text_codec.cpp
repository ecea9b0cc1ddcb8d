#include "cgrpo/tokenizer/text_codec.h"

#include <filesystem>

#include "cgrpo/core/data_paths.h"
#include "cgrpo/core/error.h"
#include "cgrpo/tokenizer/chat_template.h"

namespace cgrpo {

ByteCodec::ByteCodec(int32_t mask, int32_t eos, int64_t vocab) {
  CGRPO_CHECK(vocab > 256 && mask >= 256 && mask < vocab && eos >= 256 && eos < vocab && mask != eos,
              "byte codec needs a vocabulary above 256 ids with the mask and eos ids above the bytes (vocab ", vocab,
              ", mask ", mask, ", eos ", eos, ")");
  mask_id = mask;
  end_id = eos;
  pad_id = eos;
}

std::vector<int32_t> ByteCodec::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size());
  for (unsigned char ch : text) ids.push_back(ch);
  return ids;
}

std::vector<int32_t> ByteCodec::prompt_ids(std::string_view user, std::string_view system) const {
  std::string s;
  if (!system.empty()) s.append(system).push_back('\n');
  s.append(user).push_back('\n');
  return encode(s);
}

std::string ByteCodec::decode(std::span<const int32_t> ids) const {
  std::string s;
  for (int32_t id : ids)
    if (id >= 0 && id < 256) s.push_back(static_cast<char>(id));
  return s;
}

std::string ByteCodec::token_text(int32_t id) const {
  if (id >= 32 && id < 127) return std::string(1, char(id));
  if (id == '\n') return "\\n";
  if (id == end_id) return "<eos>";
  if (id < 256) return "?";
  std::string s = "<";
  s += std::to_string(id);
  s += '>';
  return s;
}

TokenizerCodec::TokenizerCodec(Tokenizer tok, SpecialTokens special) : tok_(std::move(tok)), special_(special) {
  mask_id = special_.mask;
  end_id = special_.im_end;
  pad_id = special_.dlm_pad >= 0 ? special_.dlm_pad : special_.pad;
  CGRPO_CHECK(mask_id >= 0 && end_id >= 0 && pad_id >= 0, "tokenizer ", tok_.origin(),
              " lacks the mask, <|im_end|> or padding token", hint("use the DiffuCoder tokenizer.json"));
}

std::vector<int32_t> TokenizerCodec::prompt_ids(std::string_view user, std::string_view system) const {
  std::optional<std::string_view> sys;
  if (!system.empty()) sys = system;
  return tok_.encode(render_chatml(user, sys, true));
}

std::vector<int32_t> TokenizerCodec::encode(std::string_view text) const { return tok_.encode(text); }

std::string TokenizerCodec::decode(std::span<const int32_t> ids) const {
  std::vector<int32_t> tokens;  // text_codec.h: ids without a token are dropped
  tokens.reserve(ids.size());
  for (const int32_t id : ids)
    if (tok_.has_token(id)) tokens.push_back(id);
  return tok_.decode(tokens, true);
}

std::string TokenizerCodec::token_text(int32_t id) const {
  if (!tok_.has_token(id)) return "<no token " + std::to_string(id) + ">";
  const int32_t one[1] = {id};
  return tok_.decode(std::span<const int32_t>(one, 1), false);
}

std::unique_ptr<TextCodec> make_codec(int64_t vocab, int32_t mask_id, int32_t eos_id, const std::string& tokenizer_path,
                                      const std::string& model_dir) {
  if (vocab < 151643) return std::make_unique<ByteCodec>(mask_id, eos_id, vocab);
  std::string path = tokenizer_path;
  if (path.empty() && !model_dir.empty() && std::filesystem::exists(model_dir + "/tokenizer.json"))
    path = model_dir + "/tokenizer.json";
  if (path.empty()) path = find_data_file(kDefaultTokenizer, "default tokenizer");
  CGRPO_CHECK(std::filesystem::exists(path), "tokenizer file '", path, "' not found",
              hint("set model.tokenizer to a tokenizer.json"));
  Tokenizer tok = Tokenizer::load(path);
  SpecialTokens sp = SpecialTokens::load(tok, model_dir);
  return std::make_unique<TokenizerCodec>(std::move(tok), sp);
}

}  // namespace cgrpo
