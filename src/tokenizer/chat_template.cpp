#include "cgrpo/tokenizer/chat_template.h"

namespace cgrpo {

std::string render_chatml(std::string_view user, std::optional<std::string_view> system, bool add_generation_prompt) {
  std::string s;
  s.reserve(user.size() + (system ? system->size() : 0) + 80);
  if (system) {
    s += "<|im_start|>system\n";
    s += *system;
    s += "<|im_end|>\n";
  }
  s += "<|im_start|>user\n";
  s += user;
  s += "<|im_end|>\n";
  if (add_generation_prompt) s += "<|im_start|>assistant\n";
  return s;
}

}  // namespace cgrpo
