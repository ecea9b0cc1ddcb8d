// One RL prompt with everything the rollout and the rewards need (spec/coupled_grpo.md §3.11, §4.3).
//
// Test contract, the same for every kind: test i passes iff the Python program
//     code + "\n" + tests[i]
// exits with status 0, where `code` is the completion's code (spec §4.3: one fresh interpreter per test,
// reward = pass fraction). For HumanEval, `code` is prompt_code + completion in raw-completion mode, which
// reproduces the official program prompt + completion + "\n" + test + "\ncheck(entry_point)\n" exactly.
// `canonical_solution` is a complete program in the same sense: canonical_solution + "\n" + tests[i]
// passes for every i (HumanEval: prompt + canonical_solution; MBPP: code).
#pragma once

#include <map>
#include <string>
#include <vector>

namespace cgrpo {

struct Prompt {
  std::string id;                      // "HumanEval/0", "mbpp/11", AceCode id, "toy:arith/17"
  std::string kind;                    // humaneval | mbpp | acecode | toy:<task>
  std::string text;                    // user-turn content given to the model (rendered with ChatML later)
  std::vector<std::string> tests;      // Python programs appended to the code, one process each (see above)
  std::string entry_point;             // function under test ("" where unknown, e.g. toy tasks)
  std::string canonical_solution;      // complete reference program; "" where the dataset has none
  std::map<std::string, std::string> meta;  // e.g. toy "answer", HumanEval "prompt_code", MBPP "split"

  bool is_toy() const { return kind.rfind("toy:", 0) == 0; }
  const std::string& meta_at(const std::string& key) const;  // fatal when missing
};

// The user turn of grpo.py make_conversation (spec §3.11): the question, plus "\nTest cases: " + the first
// test when the question holds no code fence line ("\n```\n").
std::string make_user_turn(const std::string& question, const std::vector<std::string>& test_cases);

// Native JSONL form of a Prompt (the format of data/samples/toy_arith_sample.jsonl):
//   {"id", "kind", "prompt", "tests", "entry_point"?, "canonical_solution"?, "meta"?: {string: string}}
std::string prompt_to_json_line(const Prompt& p);  // one line, no trailing newline

}  // namespace cgrpo
