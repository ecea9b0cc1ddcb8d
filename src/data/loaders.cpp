// Formats and prompt construction: include/cgrpo/data/loaders.h, spec/coupled_grpo.md §3.11 and §4.3.
#include "cgrpo/data/loaders.h"

#include <cctype>

#include "cgrpo/core/error.h"
#include "cgrpo/data/jsonl.h"

namespace cgrpo {
namespace {

std::string rstrip_newlines(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

// Identifiers called in an assert line, in order: "assert set(f(1)) == {2}" -> {"set", "f"}.
std::vector<std::string> called_names(const std::string& line) {
  std::vector<std::string> out;
  const auto ident = [](char c, bool first) {
    return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || (!first && std::isdigit(static_cast<unsigned char>(c)));
  };
  for (size_t i = 0; i < line.size();) {
    if (!ident(line[i], true) || (i > 0 && ident(line[i - 1], false))) { ++i; continue; }
    size_t j = i;
    while (j < line.size() && ident(line[j], false)) ++j;
    size_t k = j;
    while (k < line.size() && line[k] == ' ') ++k;
    if (k < line.size() && line[k] == '(') out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

// The function under test: the first name called in the assert that `code` defines ("def name("); without
// code (AceCode), the first called name that is not a Python builtin used for comparisons.
std::string entry_point_of(const std::string& assert_line, const std::string& code) {
  static const char* const kBuiltins[] = {"set", "sorted", "abs", "isclose", "list", "tuple", "str", "len", "round",
                                          "int", "float", "sum", "max", "min", "any", "all", "dict", "frozenset",
                                          "type", "isinstance", "bool", "print", "range", "repr"};
  const std::vector<std::string> names = called_names(assert_line);
  for (const std::string& n : names)
    if (!code.empty() && code.find("def " + n + "(") != std::string::npos) return n;
  for (const std::string& n : names) {
    bool builtin = false;
    for (const char* b : kBuiltins) builtin |= (n == b);
    if (!builtin) return n;
  }
  return "";
}

const char* mbpp_split(int64_t task_id) {
  if (task_id <= 10) return "prompt";
  if (task_id <= 510) return "test";
  if (task_id <= 600) return "validation";
  return "train";
}

void require_tests(const JsonlRecord& r, const std::vector<std::string>& tests, const char* field) {
  if (tests.empty()) r.fail(std::string("field '") + field + "' is empty", "a prompt needs at least one test");
}

std::vector<Prompt> humaneval(const std::vector<JsonlRecord>& recs) {
  std::vector<Prompt> out;
  for (const JsonlRecord& r : recs) {
    Prompt p;
    p.id = r.str("task_id");
    p.kind = "humaneval";
    const std::string code = r.str("prompt");
    p.entry_point = r.str("entry_point");
    p.text = "Please complete the following problem:\n```\n" + rstrip_newlines(code) + "\n```";
    p.tests = {r.str("test") + "\ncheck(" + p.entry_point + ")\n"};
    p.canonical_solution = code + r.str("canonical_solution");
    p.meta["prompt_code"] = code;
    out.push_back(std::move(p));
  }
  return out;
}

std::vector<Prompt> mbpp(const std::vector<JsonlRecord>& recs) {
  std::vector<Prompt> out;
  for (const JsonlRecord& r : recs) {
    const bool sanitized = !r.has("text") && r.has("prompt");  // the sanitized set renames text -> prompt
    const auto& tid = r.at("task_id");
    if (!tid.is_number_integer()) r.fail(std::string("field 'task_id' must be an integer, got ") + tid.type_name(),
                                         "MBPP task ids are integers 1-974");
    const int64_t task_id = tid.get<int64_t>();
    Prompt p;
    p.id = "mbpp/" + std::to_string(task_id);
    p.kind = "mbpp";
    const std::vector<std::string> asserts = r.str_list("test_list");
    require_tests(r, asserts, "test_list");
    std::string setup;
    if (sanitized) {
      for (const std::string& imp : r.str_list("test_imports")) setup += (setup.empty() ? "" : "\n") + imp;
    } else {
      setup = r.str("test_setup_code");
    }
    for (const std::string& a : asserts) p.tests.push_back(setup.empty() ? a : setup + "\n" + a);
    p.text = make_user_turn(r.str(sanitized ? "prompt" : "text"), asserts);
    p.canonical_solution = r.str("code");
    p.entry_point = entry_point_of(asserts[0], p.canonical_solution);
    p.meta["split"] = mbpp_split(task_id);
    out.push_back(std::move(p));
  }
  return out;
}

std::vector<Prompt> acecode(const std::vector<JsonlRecord>& recs, const std::string& prompt_column) {
  std::vector<Prompt> out;
  for (const JsonlRecord& r : recs) {
    Prompt p;
    p.id = r.str_or_int("id");
    p.kind = "acecode";
    p.tests = r.str_list("test_cases");
    require_tests(r, p.tests, "test_cases");
    p.text = make_user_turn(r.str(prompt_column.c_str()), p.tests);
    p.entry_point = entry_point_of(p.tests[0], "");
    out.push_back(std::move(p));
  }
  return out;
}

std::vector<Prompt> native(const std::vector<JsonlRecord>& recs) {
  std::vector<Prompt> out;
  for (const JsonlRecord& r : recs) {
    Prompt p;
    p.id = r.str_or_int("id");
    p.kind = r.str("kind");
    p.text = r.str("prompt");
    p.tests = r.str_list("tests");
    if (!p.is_toy()) require_tests(r, p.tests, "tests");
    if (r.has("entry_point")) p.entry_point = r.str("entry_point");
    if (r.has("canonical_solution")) p.canonical_solution = r.str("canonical_solution");
    if (r.has("meta")) {
      const auto& m = r.at("meta");
      if (!m.is_object()) r.fail(std::string("field 'meta' must be an object, got ") + m.type_name(), "fix the record");
      for (const auto& [k, v] : m.items()) {
        if (!v.is_string())
          r.fail("field 'meta." + k + "' must be a string, got " + v.type_name(), "meta values are strings");
        p.meta[k] = v.get<std::string>();
      }
    }
    if (p.is_toy() && !p.meta.count("answer"))
      r.fail("missing field 'meta.answer'", "toy prompts carry their expected answer in meta.answer");
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace

std::vector<Prompt> load_humaneval(const std::string& path) { return humaneval(read_jsonl(path)); }
std::vector<Prompt> load_mbpp(const std::string& path) { return mbpp(read_jsonl(path)); }
std::vector<Prompt> load_acecode(const std::string& path, const std::string& prompt_column) {
  return acecode(read_jsonl(path), prompt_column);
}
std::vector<Prompt> load_native(const std::string& path) { return native(read_jsonl(path)); }

std::vector<Prompt> load_jsonl_any(const std::string& path, const std::string& prompt_column) {
  const std::vector<JsonlRecord> recs = read_jsonl(path);
  const JsonlRecord& first = recs.front();
  if (first.has("kind")) return native(recs);
  if (first.has("entry_point") && first.has("test")) return humaneval(recs);
  if (first.has("test_list")) return mbpp(recs);
  return acecode(recs, prompt_column);
}

}  // namespace cgrpo
