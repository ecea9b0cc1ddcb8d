// Reward functions that need no sandbox: code_format's regex (spec §4.1), code extraction (§4.2), toy
// checkers, advantages (§3.5). The sandboxed parts are in test_sandbox.cpp.
#include <catch2/catch.hpp>
#include <cmath>

#include "cgrpo/core/error.h"
#include "cgrpo/reward/advantages.h"
#include "cgrpo/reward/code_format.h"
#include "cgrpo/reward/toy_reward.h"
#include "cgrpo/tokenizer/text_codec.h"
#include "cgrpo/train/trainer.h"

using namespace cgrpo;

TEST_CASE("code_format: the spec §4.1 regex on hand-made strings", "[unit][reward]") {
  CHECK(code_format_matches("Here is the code:\n```python\ndef f(x):\n    return x\n```\n"));
  CHECK(code_format_matches("```python\nx = 1\n```\n"));                   // no prose
  CHECK(code_format_matches("```python\n```\n"));                          // empty block
  CHECK(code_format_matches("Prose with `inline` and `` double ``.\n```python\nx\n```\n"));
  CHECK_FALSE(code_format_matches("```python\nx = 1\n```"));               // no newline after the fence
  CHECK_FALSE(code_format_matches("```python\nx = 1\n```\n\n"));           // two newlines
  CHECK_FALSE(code_format_matches("```python\nx = 1\n```\nThanks!\n"));    // text after the block
  CHECK_FALSE(code_format_matches("```python\nx = 1\n"));                  // missing closing fence
  CHECK_FALSE(code_format_matches("```python\nx = 1\n```\n```python\ny = 2\n```\n"));  // two blocks
  CHECK_FALSE(code_format_matches("```bash\nls\n```\n```python\nx\n```\n"));          // ``` in the prose
  CHECK_FALSE(code_format_matches("```py\nx = 1\n```\n"));                  // wrong language tag
  CHECK_FALSE(code_format_matches("```python x\n```\n"));                   // tag not followed by newline
  CHECK_FALSE(code_format_matches("```python\r\nx = 1\r\n```\r\n"));        // CRLF
  CHECK_FALSE(code_format_matches(""));
}

TEST_CASE("code_format: extract_code takes the first block, unstripped (spec §4.2)", "[unit][reward]") {
  CHECK(extract_code("a\n```python\n  x = 1\n```\nb") == "  x = 1\n");
  CHECK(extract_code("```python\nfirst\n```\n```python\nsecond\n```\n") == "first\n");
  CHECK(extract_code("```python\nno closing fence\n") == "");
  CHECK(extract_code("no code at all") == "");
  CHECK(extract_code("```python\n```") == "");
  CHECK(extract_code("```python\nx\n\n```") == "x\n\n");
}

TEST_CASE("toy checkers: exact integers and prefix credit", "[unit][reward]") {
  IntAnswerChecker ic;
  CHECK(ic.score("The answer is 42", "42") == 1.0f);
  CHECK(ic.score("3 + 4 = 7\n", "7") == 1.0f);
  CHECK(ic.score("3 - 7 = -4", "-4") == 1.0f);
  CHECK(ic.score("3 - 7 = 4", "-4") == 0.0f);
  CHECK(ic.score("42 is not it, 41 is", "42") == 0.0f);  // the last integer counts
  CHECK(ic.score("no number", "3") == 0.0f);
  CHECK(ic.score("", "3") == 0.0f);

  PrefixMatchChecker pc;
  CHECK(pc.score("olleh", "olleh") == 1.0f);
  CHECK(pc.score("olleX", "olleh") == Approx(0.8f));
  CHECK(pc.score("olleh!", "olleh") == Approx(5.0f / 6.0f));  // extra characters cost
  CHECK(pc.score("oll", "olleh") == Approx(0.6f));
  CHECK(pc.score("\n  abc  \nxyz", "abc") == 1.0f);             // first non-blank line, trimmed
  CHECK(pc.score("", "abc") == 0.0f);
  CHECK(pc.score("xbc", "abc") == 0.0f);

  set_fatal_mode(FatalMode::Throw);
  ToyReward toy;
  const std::vector<RewardSample> batch = {{"= 12", {}, "int", "12"}, {"cba", {}, "prefix", "cbb"}};
  const RewardOutput o = toy.score(batch);
  REQUIRE(o.scores.size() == 2);
  CHECK(o.scores[0] == 1.0f);
  CHECK(o.scores[1] == Approx(2.0f / 3.0f));
  CHECK(o.status[0] == RunStatus::Ok);
  CHECK_THROWS_WITH(toy.score({{"x", {}, "nope", "x"}}), Catch::Contains("no checker for task 'nope'"));
}

TEST_CASE("advantages: leave-one-out on a hand-computed example (spec §3.5)", "[unit][reward]") {
  // group 1: r = [1, 0, 0.5, 2.5], sum 4: A_i = r_i - (4 - r_i) / 3 = 4/3 (r_i - 1)
  // group 2: all equal -> 0 (and counts in zero_std_ratio)
  const std::vector<float> r = {1.0f, 0.0f, 0.5f, 2.5f, 2.0f, 2.0f, 2.0f, 2.0f};
  const std::vector<float> a = group_advantages(r, 4, false);
  const std::vector<float> want = {0.0f, -4.0f / 3, -2.0f / 3, 2.0f, 0, 0, 0, 0};
  for (size_t i = 0; i < r.size(); ++i) CHECK(a[i] == Approx(want[i]).margin(1e-6));
  // scaled: unbiased std of group 1 = sqrt(3.5 / 3) = 1.0801234; A / (std + 1e-4)
  const std::vector<float> s = group_advantages(r, 4, true);
  const std::vector<float> want_s = {0.0f, -1.2343125f, -0.6171563f, 1.8514688f, 0, 0, 0, 0};
  for (size_t i = 0; i < r.size(); ++i) CHECK(s[i] == Approx(want_s[i]).margin(1e-5));
  CHECK(zero_std_ratio(r, 4) == 0.5f);
  // G = 2: A = r_i - r_other
  const std::vector<float> p = group_advantages({3.0f, 1.0f}, 2, false);
  CHECK(p[0] == 2.0f);
  CHECK(p[1] == -2.0f);
  set_fatal_mode(FatalMode::Throw);
  CHECK_THROWS_WITH(group_advantages(r, 3, false), Catch::Contains("groups of 3"));
  CHECK_THROWS(group_advantages(r, 1, false));
}

TEST_CASE("code_format: what SFT teaches for a code prompt is what the format reward accepts (spec §4.1)",
          "[unit][reward]") {
  // The trainer's SFT target (answer, end token, padding), read back the way the rewards read a rollout
  // (either reward.completion_text): spec §4.1 requires the text to end with the closing fence and exactly one
  // newline, so a model trained on these targets must be able to reach format reward 1.0.
  const ByteCodec codec(511, 510, 512);
  Prompt p;
  p.id = "t/0";
  p.kind = "mbpp";
  p.canonical_solution = "def f(x):\n    return x + 1";
  const int64_t K = 96;
  const std::vector<int32_t> y = sft_target(codec, p, K);
  REQUIRE(int64_t(y.size()) == K);
  for (const bool before_end : {false, true}) {
    const std::string text = completion_text(codec, y.data(), K, before_end);
    INFO("before_end " << before_end << ", reward text: " << text);
    CHECK(code_format_matches(text));
    CHECK(extract_code(text) == p.canonical_solution + "\n");
  }
  // toy answers are unchanged: the answer text itself
  Prompt toy;
  toy.kind = "toy:arith";
  toy.meta["answer"] = "32";
  const std::vector<int32_t> t = sft_target(codec, toy, 8);
  CHECK(completion_text(codec, t.data(), 8, true) == "32");
  CHECK(completion_text(codec, t.data(), 8, false) == "32");
  CHECK(t[2] == codec.end_id);
}

TEST_CASE("completion text: DiffuCoder-Instruct's ending matches the format only when read whole (spec §3.4)",
          "[unit][reward]") {
  // The Instruct model ends "...```<|im_end|>\n<|dlm_pad|>..." (spec §2.5, §4.1). The reference decodes all K
  // tokens with special tokens skipped: "...```\n", format 1. Cut at <|im_end|> the text ends "```": format 0.
  const auto codec = make_codec(151936, 151666, 151645, "", "");
  REQUIRE(codec->end_id == 151645);
  std::vector<int32_t> y = codec->encode("Here:\n```python\ndef f():\n    return 1\n```");
  y.push_back(151645);                   // <|im_end|>
  for (int32_t id : codec->encode("\n")) y.push_back(id);
  const int64_t K = int64_t(y.size()) + 7;
  y.resize(size_t(K), 151667);           // <|dlm_pad|>
  const std::string all = completion_text(*codec, y.data(), K, false);
  CHECK(all == "Here:\n```python\ndef f():\n    return 1\n```\n");
  CHECK(code_format_matches(all));
  // a sampled embedding padding row (151668..151935: no token) decodes to nothing, as in the reference
  std::vector<int32_t> z = y;
  z.insert(z.begin() + 2, 151881);
  z.back() = 151935;
  CHECK(completion_text(*codec, z.data(), K + 1, false) == all);
  CHECK(codec->token_text(151881) == "<no token 151881>");
  const std::string cut = completion_text(*codec, y.data(), K, true);
  CHECK(cut == "Here:\n```python\ndef f():\n    return 1\n```");
  CHECK_FALSE(code_format_matches(cut));
}
