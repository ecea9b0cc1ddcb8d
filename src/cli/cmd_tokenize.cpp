// cgrpo tokenize: JSONL in, JSONL out, with the project tokenizer (src/tokenizer/tokenizer.cpp).
//   encode: {"text": "..."} per line  -> {"ids": [...]}
//   decode: {"ids": [...]} per line   -> {"text": "..."}   (--decode [--skip-special])
//   --text STR: one string -> its ids and token spellings, for a quick look
#include "cgrpo/cli/options.h"
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cgrpo/cli/commands.h"
#include "cgrpo/core/data_paths.h"
#include "cgrpo/core/error.h"
#include "cgrpo/tokenizer/text_codec.h"
#include "cgrpo/tokenizer/tokenizer.h"

using json = nlohmann::json;

namespace cgrpo::cli {
namespace {

std::string default_tokenizer_path() { return find_data_file(kDefaultTokenizer, "default tokenizer"); }

// Each stdin line is one JSON object; blank lines are skipped. Errors name the 1-based line number.
json parse_line(const std::string& line, size_t lineno) {
  try {
    json j = json::parse(line);
    CGRPO_CHECK(j.is_object(), "stdin line ", lineno, ": expected a JSON object, got ", line.substr(0, 80));
    return j;
  } catch (const json::exception& e) {
    CGRPO_FAIL("stdin line ", lineno, ": not valid JSON: ", e.what(), hint("input is JSONL: one JSON object per line"));
  }
}

void encode_stream(const Tokenizer& tok) {
  std::string line, out;
  for (size_t lineno = 1; std::getline(std::cin, line); ++lineno) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const json j = parse_line(line, lineno);
    CGRPO_CHECK(j.contains("text") && j["text"].is_string(), "stdin line ", lineno,
                ": expected {\"text\": string}, got ", line.substr(0, 80),
                ::cgrpo::hint("use --decode to turn {\"ids\": [...]} lines back into text"));
    out = "{\"ids\":[";
    const std::vector<int32_t> ids = tok.encode(j["text"].get_ref<const std::string&>());
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) out += ',';
      out += std::to_string(ids[i]);
    }
    out += "]}\n";
    std::fwrite(out.data(), 1, out.size(), stdout);
  }
}

void decode_stream(const Tokenizer& tok, bool skip_special) {
  std::string line;
  std::vector<int32_t> ids;
  for (size_t lineno = 1; std::getline(std::cin, line); ++lineno) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const json j = parse_line(line, lineno);
    CGRPO_CHECK(j.contains("ids") && j["ids"].is_array(), "stdin line ", lineno, ": expected {\"ids\": [int, ...]}, got ",
                line.substr(0, 80));
    ids.clear();
    for (const json& v : j["ids"]) {
      CGRPO_CHECK(v.is_number_integer() && v.get<int64_t>() >= INT32_MIN && v.get<int64_t>() <= INT32_MAX,
                  "stdin line ", lineno, ": ids must be integers, got ", v.dump());
      ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
    }
    const std::string out = json{{"text", tok.decode(ids, skip_special)}}.dump() + "\n";
    std::fwrite(out.data(), 1, out.size(), stdout);
  }
}

}  // namespace

int cmd_tokenize(int argc, char** argv) {
  set_fatal_mode(FatalMode::Throw);  // single process: errors go through dispatch() and exit 1
  const std::string usage =
      "cgrpo tokenize [--tokenizer FILE | --model DIR] [--decode [--skip-special] | --text STR]\n\n"
      "Reads JSONL on stdin and writes JSONL on stdout: {\"text\": ...} -> {\"ids\": [...]}, or with --decode\n"
      "{\"ids\": [...]} -> {\"text\": ...}. Default tokenizer: " +
      std::string(kDefaultTokenizer) + " in the first data root that has it (`cgrpo --version` lists them)";
  po::options_description opts("options");
  std::string tokenizer_path, model_dir, text;
  opts.add_options()
      ("tokenizer", po::value(&tokenizer_path), "HF tokenizer.json to use")
      ("model", po::value(&model_dir), "model directory; uses DIR/tokenizer.json")
      ("decode", "read {\"ids\": [...]} lines and write {\"text\": ...} lines")
      ("skip-special", "with --decode: drop tokens flagged special (e.g. <|im_end|>, <|mask|>)")
      ("text", po::value(&text), "tokenize this one string; print its ids and token spellings");
  po::variables_map vm;
  if (!parse_args(argc, argv, usage.c_str(), opts, vm)) return 0;
  CGRPO_CHECK(!(vm.count("tokenizer") && vm.count("model")), "cgrpo tokenize: give --tokenizer or --model, not both");
  CGRPO_CHECK(!(vm.count("text") && vm.count("decode")), "cgrpo tokenize: --text and --decode do not combine");
  CGRPO_CHECK(!vm.count("skip-special") || vm.count("decode"), "cgrpo tokenize: --skip-special needs --decode");
  if (vm.count("model")) tokenizer_path = (std::filesystem::path(model_dir) / "tokenizer.json").string();
  if (tokenizer_path.empty()) tokenizer_path = default_tokenizer_path();
  const Tokenizer tok = Tokenizer::load(tokenizer_path);

  std::ios::sync_with_stdio(false);
  if (vm.count("text")) {
    const std::vector<int32_t> ids = tok.encode(text);
    std::printf("%zu ids: %s\n", ids.size(), json(ids).dump().c_str());
    // id, tokenizer.json spelling, the token's own bytes as text (U+FFFD where it holds part of a character)
    for (int32_t id : ids)
      std::printf("%8d  %-24s %s%s\n", id, json(tok.id_to_token(id)).dump().c_str(),
                  json(tok.decode(std::vector<int32_t>{id})).dump().c_str(), tok.is_special(id) ? "  (special)" : "");
    return 0;
  }
  if (vm.count("decode"))
    decode_stream(tok, vm.count("skip-special") > 0);
  else
    encode_stream(tok);
  std::fflush(stdout);
  return 0;
}

}  // namespace cgrpo::cli
