// Synthetic toy tasks for tiny models (ARCHITECTURE.md §2: data module). A task is a pure function of
// (seed, index): Philox stream (seed, RngPurpose::Toy, step = task id, sample = index). Answers are at most
// 4 characters (4 tokens for a char-level vocab). Scores are program-checked, in [0, 1], 1 only for the
// exact answer.
//
//   toy:arith    "Compute a+b. Answer with the number only." or a-b; op + or - with p = 1/2, a, b uniform
//                in 0..99, swapped for - so that a >= b. Answer 0..198 in decimal (1-3 characters).
//                Score: 1 if the trimmed completion is an integer equal to the answer (leading zeros allowed),
//                else (right-aligned digit matches) / max(len(completion), len(answer)).
//   toy:reverse  "Reverse the string abc. Answer with the string only." Length 3 or 4 (p = 1/2), letters
//                uniform in a-z. Answer = the reversed string.
//   toy:sort     "Sort the digits 3 9 1 in ascending order. Answer with the digits only." 3 or 4 digits
//                (p = 1/2), each uniform in 0-9 (repeats allowed). Answer = the sorted digits, no spaces.
//   reverse/sort score: (left-aligned position matches) / max(len(completion), len(answer)); a wrong length
//                is penalised through the max.
// The completion is trimmed of ASCII whitespace before scoring. The answer is Prompt::meta["answer"].
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cgrpo/data/prompt.h"

namespace cgrpo {

class ToyTask {
 public:
  virtual ~ToyTask() = default;
  virtual std::string name() const = 0;  // "toy:arith"
  virtual Prompt generate(uint64_t seed, int64_t index) const = 0;
  // Fatal when p is not a prompt of this task.
  virtual float score(const Prompt& p, std::string_view completion) const = 0;
};

// "arith" | "reverse" | "sort", with or without the "toy:" prefix. Fatal on an unknown task.
std::unique_ptr<ToyTask> make_toy_task(std::string_view name);
std::vector<std::string> toy_task_names();  // {"toy:arith", "toy:reverse", "toy:sort"}

}  // namespace cgrpo
