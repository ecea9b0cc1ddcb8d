// Qwen ChatML prompt rendering (spec/coupled_grpo.md §1.2). With a system prompt, one user turn and
// add_generation_prompt:
//   <|im_start|>system\n{sys}<|im_end|>\n<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n
// Without a system prompt the system turn is left out (no default is injected; pass kDefaultSystemPrompt to get
// Qwen2's "You are a helpful assistant.").
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace cgrpo {

inline constexpr std::string_view kDefaultSystemPrompt = "You are a helpful assistant.";

std::string render_chatml(std::string_view user, std::optional<std::string_view> system = std::nullopt,
                          bool add_generation_prompt = true);

}  // namespace cgrpo
