// ToyChecker: scores a completion against an expected answer, with partial credit, for synthetic toy tasks
// (ARCHITECTURE.md §4.4: "a tiny GRPO run raises reward on a toy task"). The data module generates the tasks.
#pragma once

#include <string>
#include <string_view>

namespace cgrpo {

class ToyChecker {
 public:
  virtual ~ToyChecker() = default;
  virtual const std::string& name() const = 0;
  virtual float score(std::string_view completion, std::string_view expected) const = 0;  // in [0, 1]
};

// "int" (arithmetic): 1 when the last integer in the completion equals the expected integer, else 0.
class IntAnswerChecker : public ToyChecker {
 public:
  const std::string& name() const override { return name_; }
  float score(std::string_view completion, std::string_view expected) const override;

 private:
  std::string name_ = "int";
};

// "prefix" (string reversal, sorting): the first non-blank line, trimmed, against the expected string:
// common-prefix length / max(len(answer), len(expected)). Exact = 1; extra or missing characters cost.
class PrefixMatchChecker : public ToyChecker {
 public:
  const std::string& name() const override { return name_; }
  float score(std::string_view completion, std::string_view expected) const override;

 private:
  std::string name_ = "prefix";
};

}  // namespace cgrpo
