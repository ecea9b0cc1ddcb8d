#include "cgrpo/data/prompt.h"

#include <nlohmann/json.hpp>

#include "cgrpo/core/error.h"

namespace cgrpo {

const std::string& Prompt::meta_at(const std::string& key) const {
  const auto it = meta.find(key);
  CGRPO_CHECK(it != meta.end(), "prompt ", id, " (", kind, ") has no meta field '", key, "'",
              hint("toy prompts carry meta.answer; regenerate them with ToyTask::generate"));
  return it->second;
}

std::string make_user_turn(const std::string& question, const std::vector<std::string>& test_cases) {
  // spec §3.11 make_conversation: question + ("\nTest cases: " + test_cases[0] if "\n```\n" not in question)
  if (question.find("\n```\n") != std::string::npos || test_cases.empty()) return question;
  return question + "\nTest cases: " + test_cases[0];
}

std::string prompt_to_json_line(const Prompt& p) {
  nlohmann::ordered_json j;
  j["id"] = p.id;
  j["kind"] = p.kind;
  j["prompt"] = p.text;
  j["tests"] = p.tests;
  if (!p.entry_point.empty()) j["entry_point"] = p.entry_point;
  if (!p.canonical_solution.empty()) j["canonical_solution"] = p.canonical_solution;
  if (!p.meta.empty()) j["meta"] = p.meta;
  return j.dump();
}

}  // namespace cgrpo
