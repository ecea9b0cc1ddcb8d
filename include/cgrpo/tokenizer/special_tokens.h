// Special-token ids of Dream / DiffuCoder (spec/coupled_grpo.md §1.2, shared/data/tokenizer/SPECIAL_TOKENS.md).
//
// Three layers, later wins:
//   1. defaults (the DiffuCoder-7B table below)
//   2. resolve_from(tokenizer): each named token is looked up among the tokenizer's added tokens; a name the
//      tokenizer lacks becomes -1 (so a Qwen3 file, where 151666 is </tool_response>, yields mask = -1)
//   3. apply_model_config(dir): DIR/config.json keys mask_token_id, pad_token_id, bos_token_id, eos_token_id
//      (other Dream checkpoints differ, e.g. Dream-Coder's tokenizer bos is <|beginoftext|> 151665)
#pragma once

#include <cstdint>
#include <string>

namespace cgrpo {

class Tokenizer;

struct SpecialTokens {
  int32_t endoftext = 151643;    // <|endoftext|>
  int32_t im_start = 151644;     // <|im_start|>
  int32_t im_end = 151645;       // <|im_end|>: Coupled-GRPO's completion EOS
  int32_t beginoftext = 151665;  // <|beginoftext|>
  int32_t mask = 151666;         // <|mask|>: the diffusion [MASK]
  int32_t dlm_pad = 151667;      // <|dlm_pad|>: Instruct/cpGRPO fixed-length padding
  // Model config.json roles; DiffuCoder-7B sets all three to <|endoftext|>.
  int32_t pad = 151643;
  int32_t bos = 151643;
  int32_t eos = 151643;

  static constexpr const char* kEndOfText = "<|endoftext|>";
  static constexpr const char* kImStart = "<|im_start|>";
  static constexpr const char* kImEnd = "<|im_end|>";
  static constexpr const char* kBeginOfText = "<|beginoftext|>";
  static constexpr const char* kMask = "<|mask|>";
  static constexpr const char* kDlmPad = "<|dlm_pad|>";

  // Replaces the named ids by the tokenizer's added tokens of the same content (-1 when absent). pad/bos/eos
  // follow <|endoftext|>.
  void resolve_from(const Tokenizer& tok);
  // Applies the optional ids in DIR/config.json; a missing file changes nothing, a malformed one fails.
  void apply_model_config(const std::string& model_dir);

  // defaults -> tokenizer -> model_dir/config.json (model_dir may be empty).
  static SpecialTokens load(const Tokenizer& tok, const std::string& model_dir);
};

}  // namespace cgrpo
