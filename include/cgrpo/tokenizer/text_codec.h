// TextCodec: text <-> token ids as the trainer needs them: a rendered prompt, a decoded completion, and the
// ids that matter to masked diffusion (mask, completion end, completion padding).
//   TokenizerCodec: the Qwen2 BPE tokenizer + ChatML (real Dream / DiffuCoder checkpoints; completion end is
//                   <|im_end|>, spec §3.4; SFT pads answers with <|dlm_pad|>, spec §1.2).
//   ByteCodec:      the toy-vocabulary presets (tiny, small): byte b is id b, the specials are the model
//                   config's ids (mask, and eos = pad as the completion end and padding). Prompts are
//                   "[system\n]user\n".
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cgrpo/tokenizer/special_tokens.h"
#include "cgrpo/tokenizer/tokenizer.h"

namespace cgrpo {

class TextCodec {
 public:
  virtual ~TextCodec() = default;
  virtual std::vector<int32_t> prompt_ids(std::string_view user, std::string_view system) const = 0;
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // Model output -> text: special tokens skipped, and ids that name no token (the embedding's padding rows past
  // the tokenizer's vocabulary; DiffuCoder has 151936 rows for 151668 tokens) dropped, as the tokenizers crate's
  // decode drops them (the reference's batch_decode, spec §3.4), so a sampled padding row cannot end a run.
  virtual std::string decode(std::span<const int32_t> ids) const = 0;
  virtual std::string token_text(int32_t id) const = 0;                // for the streaming renderer
  int32_t mask_id = -1;
  int32_t end_id = -1;  // completion end (the EOS of spec §3.4)
  int32_t pad_id = -1;  // fills the canvas after the end in SFT targets
};

class ByteCodec final : public TextCodec {
 public:
  ByteCodec(int32_t mask, int32_t eos, int64_t vocab);
  std::vector<int32_t> prompt_ids(std::string_view user, std::string_view system) const override;
  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(std::span<const int32_t> ids) const override;
  std::string token_text(int32_t id) const override;
};

class TokenizerCodec final : public TextCodec {
 public:
  TokenizerCodec(Tokenizer tok, SpecialTokens special);
  std::vector<int32_t> prompt_ids(std::string_view user, std::string_view system) const override;
  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(std::span<const int32_t> ids) const override;
  std::string token_text(int32_t id) const override;
  const Tokenizer& tokenizer() const { return tok_; }

 private:
  Tokenizer tok_;
  SpecialTokens special_;
};

// The DiffuCoder tokenizer shipped with cgrpo, relative to a data root (core/data_paths.h).
inline constexpr const char* kDefaultTokenizer = "tokenizer/diffucoder_tokenizer.json";

// The codec for a model: ByteCodec when the vocabulary is a toy one (< 256 + 2 specials would not fit Qwen2
// ids), else the tokenizer at `tokenizer_path` (or <model_dir>/tokenizer.json, or kDefaultTokenizer).
std::unique_ptr<TextCodec> make_codec(int64_t vocab, int32_t mask_id, int32_t eos_id, const std::string& tokenizer_path,
                                      const std::string& model_dir);

}  // namespace cgrpo
