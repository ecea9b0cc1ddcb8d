#include "cgrpo/reward/toy_checker.h"

#include <algorithm>
#include <cctype>
#include <cstdint>

namespace cgrpo {
namespace {

bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// "-12", "7", "+3": optional sign and digits, no leading zeros dropped (compared as numbers below).
bool parse_int(std::string_view s, int64_t* v) {
  s = trim(s);
  bool neg = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.empty() || s.size() > 18 || !std::all_of(s.begin(), s.end(), is_digit)) return false;
  int64_t x = 0;
  for (char c : s) x = x * 10 + (c - '0');
  *v = neg ? -x : x;
  return true;
}

}  // namespace

float IntAnswerChecker::score(std::string_view completion, std::string_view expected) const {
  int64_t want = 0;
  if (!parse_int(expected, &want)) return 0.0f;
  // last run of digits, with a '-' right before it
  size_t e = completion.size();
  while (e > 0 && !is_digit(completion[e - 1])) --e;
  if (e == 0) return 0.0f;
  size_t b = e;
  while (b > 0 && is_digit(completion[b - 1])) --b;
  if (b > 0 && completion[b - 1] == '-') --b;
  int64_t got = 0;
  return parse_int(completion.substr(b, e - b), &got) && got == want ? 1.0f : 0.0f;
}

float PrefixMatchChecker::score(std::string_view completion, std::string_view expected) const {
  std::string_view ans;
  while (!completion.empty()) {  // first non-blank line
    const size_t nl = completion.find('\n');
    ans = trim(completion.substr(0, nl));
    if (!ans.empty() || nl == std::string_view::npos) break;
    completion.remove_prefix(nl + 1);
  }
  const size_t denom = std::max(ans.size(), expected.size());
  if (denom == 0) return 1.0f;
  size_t k = 0;
  while (k < ans.size() && k < expected.size() && ans[k] == expected[k]) ++k;
  return static_cast<float>(k) / static_cast<float>(denom);
}

}  // namespace cgrpo
