#include "cgrpo/rollout/canvas.h"

#include <algorithm>

#include "cgrpo/core/error.h"

namespace cgrpo {

Canvas Canvas::make(const std::vector<std::vector<int32_t>>& prompts, int64_t new_tokens, int32_t mask_id,
                    int32_t pad_id) {
  CGRPO_CHECK(!prompts.empty(), "canvas: no prompts");
  CGRPO_CHECK(new_tokens >= 1, "canvas: new_tokens = ", new_tokens, " must be >= 1");
  Canvas c;
  c.batch = static_cast<int64_t>(prompts.size());
  c.new_tokens = new_tokens;
  c.mask_id = mask_id;
  bool padded = false;
  for (size_t b = 0; b < prompts.size(); ++b) {
    CGRPO_CHECK(!prompts[b].empty(), "canvas: prompt ", b, " is empty",
                hint("every prompt needs >= 1 token (position 0 is always prompt, spec §1.5)"));
    CGRPO_CHECK(std::find(prompts[b].begin(), prompts[b].end(), mask_id) == prompts[b].end(), "canvas: prompt ", b,
                " contains the mask id ", mask_id, hint("mask tokens are reserved for the completion"));
    c.prompt_lens.push_back(static_cast<int64_t>(prompts[b].size()));
    padded |= prompts[b].size() != prompts[0].size();
  }
  c.prompt_len = *std::max_element(c.prompt_lens.begin(), c.prompt_lens.end());
  c.len = c.prompt_len + new_tokens;
  c.tokens.assign(static_cast<size_t>(c.batch * c.len), mask_id);
  if (padded) {
    c.key_mask.assign(c.tokens.size(), 1);
    c.pos.assign(c.tokens.size(), 0);
  }
  for (int64_t b = 0; b < c.batch; ++b) {
    const int64_t pad = c.prompt_len - c.prompt_lens[b];
    int32_t* x = c.row(b);
    std::fill(x, x + pad, pad_id);
    std::copy(prompts[b].begin(), prompts[b].end(), x + pad);
    if (!padded) continue;
    // spec §1.4: am = [0]*pad + [1]*(L - pad); tok_idx = cumsum(am) - 1; tok_idx[am == 0] = 1
    uint8_t* am = c.key_mask.data() + b * c.len;
    int32_t* p = c.pos.data() + b * c.len;
    for (int64_t j = 0; j < c.len; ++j) {
      am[j] = j >= pad;
      p[j] = j >= pad ? static_cast<int32_t>(j - pad) : 1;
    }
  }
  return c;
}

int64_t Canvas::masked(int64_t b) const {
  return std::count(completion(b), completion(b) + new_tokens, mask_id);
}

}  // namespace cgrpo
