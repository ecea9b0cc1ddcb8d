// Byte-level BPE tokenizer loaded from a Hugging Face tokenizer.json (the Qwen2 / DiffuCoder / Dream format).
//
// Reference behaviour: the Rust `tokenizers` crate 0.22 (shared/data/README.md, "How the goldens were made").
// encode(text):
//   1. split out added tokens on the raw text, leftmost-longest (AddedVocabulary, aho-corasick LeftmostLongest);
//      added tokens flagged normalized=false are matched before normalization, normalized=true ones after it
//   2. each remaining segment: normalizer (NFC via utf8proc)
//   3. pre-tokenizer: Split(regex from the file, Isolated) then ByteLevel (bytes -> GPT-2 unicode, no regex)
//   4. BPE on each piece: merge the lowest-rank adjacent pair, leftmost first (models/bpe/word.rs merge_all)
// decode(ids, skip_special): every token's bytes are joined (ByteLevel decoder: chars through the byte map, or
// the token's own UTF-8 when a char is not in it) and decoded with U+FFFD for each maximal ill-formed subpart.
// Unlike the crate, decode() fails on an id that has no token instead of dropping it.
//
// encode() and decode() are const and thread-safe; encode() serializes on the per-piece cache, so use one
// Tokenizer per thread for parallel encoding.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cgrpo {

struct AddedToken {
  int32_t id;
  std::string content;
  bool special;     // skipped by decode(skip_special=true)
  bool normalized;  // matched on the normalized text instead of the raw text
};

class Tokenizer {
 public:
  // Loads an HF tokenizer.json; every error (missing file, bad JSON, a field of the wrong kind) names the
  // file and the field.
  static Tokenizer load(const std::string& path);
  // Same from JSON text already in memory; `origin` names it in errors.
  static Tokenizer from_json_text(std::string_view json_text, const std::string& origin);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  std::vector<int32_t> encode(std::string_view text) const;
  // Fails (naming the id) on an id < 0, >= vocab_size() or without a token.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  int32_t vocab_size() const;  // largest id of the vocab and the added tokens, plus one
  // Id of a token given in its tokenizer.json spelling ("Ġworld", "<|im_end|>"); added tokens first.
  std::optional<int32_t> token_to_id(std::string_view token) const;
  // tokenizer.json spelling of an id ("Ġworld"); empty for an id without a token.
  std::string id_to_token(int32_t id) const;
  bool is_special(int32_t id) const;
  bool has_token(int32_t id) const;  // 0 <= id < vocab_size() and the id names a token (ids can have gaps)
  const std::vector<AddedToken>& added_tokens() const;
  const std::string& origin() const;  // the file it was loaded from

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Unicode NFC of valid UTF-8 (utf8proc, UTF8PROC_STABLE | UTF8PROC_COMPOSE); ASCII is returned unchanged.
std::string nfc(std::string_view text);

}  // namespace cgrpo
