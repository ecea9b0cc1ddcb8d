// `code_format` reward (spec §4.1) and code extraction (spec §4.2), language = python.
#pragma once

#include <string>
#include <string_view>

#include "cgrpo/reward/reward_fn.h"
#include "cgrpo/reward/sandbox.h"

namespace cgrpo {

// fullmatch(^(?:(?!```)[\s\S])*?```python\n(?:(?!```)[\s\S])*?```\n$, DOTALL|MULTILINE): optional prose without
// ```, exactly one ```python block, and the text ends with ``` plus exactly one newline (spec §4.1).
bool code_format_matches(std::string_view text);

// First match of ```python\n(.*?)``` (DOTALL), group 1, not stripped; "" if none (spec §4.2).
std::string extract_code(std::string_view text);

// 0.0 when the format does not match; else 1.0 when ast.parse(code.strip()) succeeds, 0.5 when it does not.
// The parse runs in the sandbox: one run for the whole batch (ast.parse executes nothing), and one run per
// item if that batch run fails. Deviation: any exception counts as invalid syntax, where the reference
// catches only SyntaxError (and would crash the reward on e.g. a RecursionError).
class CodeFormatReward : public RewardFn {
 public:
  explicit CodeFormatReward(Sandbox& sb) : sb_(sb) {}
  const std::string& name() const override { return name_; }
  RewardOutput score(const std::vector<RewardSample>& batch) override;

  // 1 / 0 per code string: ast.parse(code.strip()) succeeded. Adds the runs to *runs; worst status to *status.
  std::vector<char> syntax_ok(const std::vector<std::string>& codes, StatusCounts* runs, std::vector<RunStatus>* status);

 private:
  Sandbox& sb_;
  std::string name_ = "code_format";
};

}  // namespace cgrpo
