#include "cgrpo/reward/code_format.h"

#include <pcre2.h>

#include <memory>

#include "cgrpo/core/error.h"

namespace cgrpo {
namespace {

struct Regex {
  pcre2_code* code = nullptr;
  Regex(const char* pattern, uint32_t opts) {
    int err = 0;
    PCRE2_SIZE off = 0;
    code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED, opts, &err, &off, nullptr);
    CGRPO_CHECK(code, "reward: cannot compile regex ", pattern, " at offset ", off);
  }
  ~Regex() { pcre2_code_free(code); }
  // First match; *g1_begin/*g1_end get group 1 when asked for.
  bool match(std::string_view s, uint32_t opts, PCRE2_SIZE* g1_begin, PCRE2_SIZE* g1_end) const {
    std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> md(pcre2_match_data_create_from_pattern(code, nullptr),
                                                                     pcre2_match_data_free);
    const int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0, opts, md.get(), nullptr);
    if (rc < 0) return false;  // no match, or a match/depth limit: treated as no match
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    if (g1_begin && rc >= 2) {
      *g1_begin = ov[2];
      *g1_end = ov[3];
    }
    return true;
  }
};

// spec §4.1: re.fullmatch(FMT, content, re.DOTALL | re.MULTILINE). fullmatch = ANCHORED + ENDANCHORED.
const Regex& fmt_regex() {
  static const Regex r(R"(^(?:(?!```)[\s\S])*?```python\n(?:(?!```)[\s\S])*?```\n$)", PCRE2_DOTALL | PCRE2_MULTILINE);
  return r;
}
// spec §4.2: re.search(r"```python\n(.*?)```", text, re.DOTALL)
const Regex& code_regex() {
  static const Regex r(R"(```python\n(.*?)```)", PCRE2_DOTALL);
  return r;
}

// Reads "<len>\n<bytes>" records from stdin, prints one '1'/'0' per record and a done line.
// ast.parse(code.strip()) as in the reference (spec §4.1); any exception counts as invalid.
constexpr const char* kSyntaxProgram = R"PY(import ast, sys
data = sys.stdin.buffer.read()
res, i = [], 0
while i < len(data):
    j = data.index(b"\n", i)
    n = int(data[i:j])
    src = data[j + 1:j + 1 + n].decode("utf-8", "replace")
    i = j + 1 + n
    try:
        ast.parse(src.strip())
        res.append("1")
    except BaseException:
        res.append("0")
sys.stdout.write("".join(res) + "\ncgrpo-syntax-done\n")
)PY";

std::string records(const std::vector<std::string>& codes, size_t begin, size_t end) {
  std::string s;
  for (size_t i = begin; i < end; ++i) s += std::to_string(codes[i].size()) + "\n" + codes[i];
  return s;
}

// Parses the program's stdout into n flags; false when it is not a complete answer.
bool parse_flags(const RunResult& r, size_t n, char* flags) {
  if (r.status != RunStatus::Ok || r.out.size() != n + 1 + 18 || r.out.compare(n, 19, "\ncgrpo-syntax-done\n") != 0)
    return false;
  for (size_t i = 0; i < n; ++i) {
    if (r.out[i] != '0' && r.out[i] != '1') return false;
    flags[i] = r.out[i] == '1';
  }
  return true;
}

}  // namespace

bool code_format_matches(std::string_view text) {
  return fmt_regex().match(text, PCRE2_ANCHORED | PCRE2_ENDANCHORED, nullptr, nullptr);
}

std::string extract_code(std::string_view text) {
  PCRE2_SIZE b = 0, e = 0;
  if (!code_regex().match(text, 0, &b, &e)) return "";
  return std::string(text.substr(b, e - b));
}

std::vector<char> CodeFormatReward::syntax_ok(const std::vector<std::string>& codes, StatusCounts* runs,
                                              std::vector<RunStatus>* status) {
  std::vector<char> ok(codes.size(), 0);
  if (status) status->assign(codes.size(), RunStatus::Ok);
  if (codes.empty()) return ok;
  RunRequest req;
  req.program = kSyntaxProgram;
  req.stdin_data = records(codes, 0, codes.size());
  const RunResult all = sb_.run(req);
  runs->add(all.status);
  if (parse_flags(all, codes.size(), ok.data())) return ok;
  // Fallback: one run per item, so one pathological input cannot zero the batch.
  std::vector<RunRequest> reqs(codes.size());
  for (size_t i = 0; i < codes.size(); ++i) {
    reqs[i].program = kSyntaxProgram;
    reqs[i].stdin_data = records(codes, i, i + 1);
  }
  const std::vector<RunResult> res = sb_.run_batch(reqs);
  for (size_t i = 0; i < codes.size(); ++i) {
    runs->add(res[i].status);
    if (!parse_flags(res[i], 1, &ok[i])) ok[i] = 0;
    if (status) (*status)[i] = res[i].status;
  }
  return ok;
}

RewardOutput CodeFormatReward::score(const std::vector<RewardSample>& batch) {
  RewardOutput o;
  o.scores.assign(batch.size(), 0.0f);
  o.status.assign(batch.size(), RunStatus::Skipped);
  std::vector<size_t> idx;
  std::vector<std::string> codes;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!code_format_matches(batch[i].completion)) continue;  // 0.0, nothing to parse
    idx.push_back(i);
    codes.push_back(extract_code(batch[i].completion));
  }
  std::vector<RunStatus> st;
  const std::vector<char> ok = syntax_ok(codes, &o.runs, &st);
  for (size_t k = 0; k < idx.size(); ++k) {
    o.scores[idx[k]] = ok[k] ? 1.0f : 0.5f;
    o.status[idx[k]] = st[k];
  }
  return o;
}

}  // namespace cgrpo
