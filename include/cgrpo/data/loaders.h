// Dataset loaders: JSONL or JSONL.gz records -> Prompts (spec/coupled_grpo.md §3.11, §4.3; data/README.md).
//
// HumanEval (task_id, prompt, entry_point, canonical_solution, test):
//   text  = "Please complete the following problem:\n```\n" + prompt (trailing newlines cut) + "\n```"
//           (the phrasing of the AceCode augmentation, spec §3.11; it holds a fence line, so make_user_turn
//           appends no test case)
//   tests = { test + "\ncheck(" + entry_point + ")\n" }          (ONE program)
//   canonical_solution = prompt + canonical_solution; meta["prompt_code"] = prompt
// MBPP full (task_id, text, code, test_setup_code, test_list) and sanitized (task_id, prompt, code,
// test_imports, test_list), told apart by which of "text" / "prompt" is present:
//   text  = make_user_turn(text, test_list)  -> the first assert is shown, which names the function
//   tests = { setup + "\n" + assert_i }   setup = test_setup_code (full) or "\n".join(test_imports) (sanitized);
//           just assert_i when setup is empty. challenge_test_list is not used.
//   canonical_solution = code; entry_point = the name called in the first assert; meta["split"] by task_id:
//   1-10 prompt, 11-510 test, 511-600 validation, 601-974 train
// AceCode-style (id, <prompt_column>, test_cases), spec §3.11:
//   text  = make_user_turn(question, test_cases); tests = test_cases (assert lines)
// Native (id, kind, prompt, tests, ...): see prompt_to_json_line().
#pragma once

#include <string>
#include <vector>

#include "cgrpo/data/prompt.h"

namespace cgrpo {

std::vector<Prompt> load_humaneval(const std::string& path);
std::vector<Prompt> load_mbpp(const std::string& path);  // full or sanitized
std::vector<Prompt> load_acecode(const std::string& path, const std::string& prompt_column = "question");
std::vector<Prompt> load_native(const std::string& path);
// Format from the first record's fields: "kind" -> native; "entry_point" and "test" -> HumanEval;
// "test_list" -> MBPP; anything else -> AceCode-style.
std::vector<Prompt> load_jsonl_any(const std::string& path, const std::string& prompt_column = "question");

}  // namespace cgrpo
