// The generation canvas (spec §2.2): each row is its prompt, left-padded to the longest prompt, followed by
// max_new_tokens mask tokens. Left-padded batches carry per-row key masks and position ids (spec §1.4).
#pragma once

#include <cstdint>
#include <vector>

namespace cgrpo {

struct Canvas {
  int64_t batch = 0;
  int64_t prompt_len = 0;  // P: longest prompt; the completion of every row starts at column P
  int64_t new_tokens = 0;  // N
  int64_t len = 0;         // L = P + N
  int32_t mask_id = 0;
  std::vector<int32_t> tokens;     // [batch, len]
  std::vector<uint8_t> key_mask;   // [batch, len] 1 = real, 0 = pad; empty when no row is padded ("full")
  std::vector<int32_t> pos;        // [batch, len] cumsum(key_mask) - 1, pads at 1; empty with key_mask
  std::vector<int64_t> prompt_lens;  // unpadded length of each prompt

  // Prompts must be non-empty (column 0 is always prompt, §1.5) and free of mask_id.
  static Canvas make(const std::vector<std::vector<int32_t>>& prompts, int64_t new_tokens, int32_t mask_id,
                     int32_t pad_id);

  int32_t* row(int64_t b) { return tokens.data() + b * len; }
  const int32_t* row(int64_t b) const { return tokens.data() + b * len; }
  const int32_t* completion(int64_t b) const { return row(b) + prompt_len; }
  std::vector<int32_t> completion_tokens(int64_t b) const { return {completion(b), completion(b) + new_tokens}; }
  const uint8_t* key_mask_or_null() const { return key_mask.empty() ? nullptr : key_mask.data(); }
  const int32_t* pos_or_null() const { return pos.empty() ? nullptr : pos.data(); }
  int64_t masked(int64_t b) const;  // mask tokens left in row b's completion
};

}  // namespace cgrpo
