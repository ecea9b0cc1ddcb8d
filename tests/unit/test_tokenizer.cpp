#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "cgrpo/core/error.h"
#include "cgrpo/tokenizer/byte_level.h"
#include "cgrpo/tokenizer/chat_template.h"
#include "cgrpo/tokenizer/special_tokens.h"
#include "cgrpo/tokenizer/tokenizer.h"

using namespace cgrpo;
using Catch::Matchers::Contains;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {
const std::string kTokDir = std::string(CGRPO_SHARED_DIR) + "/data/tokenizer/";

const Tokenizer& diffucoder() {
  static const Tokenizer t = Tokenizer::load(kTokDir + "diffucoder_tokenizer.json");
  return t;
}
const Tokenizer& qwen2() {
  static const Tokenizer t = Tokenizer::load(kTokDir + "qwen2_tokenizer.json");
  return t;
}

std::vector<json> read_jsonl(const std::string& path) {
  std::ifstream f(path);
  REQUIRE(f.good());
  std::vector<json> out;
  for (std::string line; std::getline(f, line);)
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

// One fresh temp dir per test run, removed at exit.
struct TempDir {
  fs::path path = fs::temp_directory_path() / ("cgrpo_test_tokenizer_" + std::to_string(getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name, std::ios::binary) << text;
    return (path / name).string();
  }
};

// Checks every line of a golden file: encode ids and token spellings exact, both decodes exact.
void check_golden(const Tokenizer& tok, const std::string& file) {
  const std::vector<json> lines = read_jsonl(kTokDir + file);
  REQUIRE(lines.size() == 95);
  for (size_t i = 0; i < lines.size(); ++i) {
    const json& g = lines[i];
    INFO(file << " line " << i + 1 << ": " << g["text"].dump());
    const std::vector<int32_t> want = g["ids"].get<std::vector<int32_t>>();
    const std::vector<int32_t> ids = tok.encode(g["text"].get<std::string>());
    CHECK(ids == want);
    std::vector<std::string> tokens;
    for (int32_t id : want) tokens.push_back(tok.id_to_token(id));
    CHECK(tokens == g["tokens"].get<std::vector<std::string>>());
    CHECK(tok.decode(want) == g["decoded"].get<std::string>());
    CHECK(tok.decode(want, true) == g["decoded_skip_special"].get<std::string>());
  }
}

int32_t byte_token(const Tokenizer& tok, int b) {
  const auto id = tok.token_to_id(tok::bytes_to_token(std::string(1, static_cast<char>(b))));
  REQUIRE(id.has_value());
  return *id;
}
}  // namespace

TEST_CASE("tokenizer: golden.jsonl, every line (DiffuCoder tokenizer)", "[unit][tokenizer]") {
  set_fatal_mode(FatalMode::Throw);
  check_golden(diffucoder(), "golden.jsonl");
}

TEST_CASE("tokenizer: golden_qwen2.jsonl, every line (Qwen3 added tokens)", "[unit][tokenizer]") {
  set_fatal_mode(FatalMode::Throw);
  check_golden(qwen2(), "golden_qwen2.jsonl");
}

TEST_CASE("tokenizer: golden_decode.jsonl, decode-only cases", "[unit][tokenizer]") {
  set_fatal_mode(FatalMode::Throw);
  const std::vector<json> lines = read_jsonl(kTokDir + "golden_decode.jsonl");
  REQUIRE(lines.size() == 14);
  for (size_t i = 0; i < lines.size(); ++i) {
    INFO("golden_decode.jsonl line " << i + 1 << ": " << lines[i]["note"].get<std::string>());
    const std::vector<int32_t> ids = lines[i]["ids"].get<std::vector<int32_t>>();
    CHECK(diffucoder().decode(ids) == lines[i]["decoded"].get<std::string>());
    CHECK(diffucoder().decode(ids, true) == lines[i]["decoded_skip_special"].get<std::string>());
  }
}

TEST_CASE("tokenizer: known ids and vocab shape", "[unit][tokenizer]") {
  set_fatal_mode(FatalMode::Throw);
  const Tokenizer& t = diffucoder();
  CHECK(t.encode("Hello world") == std::vector<int32_t>{9707, 1879});
  CHECK(t.vocab_size() == 151668);
  CHECK(qwen2().vocab_size() == 151669);
  CHECK(t.token_to_id("Ġ") == 220);
  CHECK(t.token_to_id("ĠĠ") == 256);
  CHECK(t.token_to_id("Ċ") == 198);
  CHECK(t.token_to_id("<|mask|>") == 151666);
  CHECK_FALSE(t.token_to_id("<|not a token|>").has_value());
  CHECK(t.id_to_token(1879) == "Ġworld");
  CHECK(t.is_special(151645));
  CHECK_FALSE(t.is_special(151657));  // <tool_call> is an added token but not special
  CHECK_FALSE(t.is_special(9707));
}

TEST_CASE("tokenizer: every byte value, as text and as a byte token", "[unit][tokenizer]") {
  set_fatal_mode(FatalMode::Throw);
  const Tokenizer& t = diffucoder();
  std::string all_bytes, expect_all;
  for (int b = 0; b < 256; ++b) {
    INFO("byte " << b);
    const int32_t id = byte_token(t, b);
    const std::string s(1, static_cast<char>(b));
    all_bytes += s;
    if (b < 0x80) {
      CHECK(t.encode(s) == std::vector<int32_t>{id});  // a lone ASCII byte is its own byte token
      CHECK(t.decode(std::vector<int32_t>{id}) == s);
      expect_all += s;
    } else {
      // a lone byte >= 0x80 is not UTF-8: encode refuses it, decode turns its byte token into U+FFFD
      REQUIRE_THROWS_WITH(t.encode(s), Contains("not valid UTF-8 at byte 0"));
      CHECK(t.decode(std::vector<int32_t>{id}) == "\xEF\xBF\xBD");
      expect_all += "\xEF\xBF\xBD";
      // the code point U+0080..U+00FF as UTF-8 round-trips
      std::string cp;
      tok::append_utf8(cp, static_cast<uint32_t>(b));
      CHECK(t.decode(t.encode(cp)) == cp);
    }
  }
  std::vector<int32_t> ids;
  for (int b = 0; b < 256; ++b) ids.push_back(byte_token(t, b));
  CHECK(t.decode(ids) == expect_all);  // Python: bytes(range(256)).decode('utf-8', 'replace')
  CHECK(tok::utf8_lossy(all_bytes) == expect_all);
}

TEST_CASE("tokenizer: U+FFFD replacement of maximal subparts", "[unit][tokenizer]") {
  const std::string R = "\xEF\xBF\xBD";
  // Each expectation is Python's bytes.decode('utf-8', 'replace') of the input.
  CHECK(tok::utf8_lossy("\xE4\xBD\x41") == R + "A");                      // truncated 3-byte: one U+FFFD
  CHECK(tok::utf8_lossy("\xC0\x80") == R + R);                            // overlong lead: each byte
  CHECK(tok::utf8_lossy("\xED\xA0\x80") == R + R + R);                    // surrogate: ED accepts only 80..9F
  CHECK(tok::utf8_lossy("\xF0\x9F\x98") == R);                            // truncated 4-byte at the end
  CHECK(tok::utf8_lossy("\xF4\x90\x80\x80") == R + R + R + R);            // above U+10FFFF
  CHECK(tok::utf8_lossy("\xE0\x80\xAF") == R + R + R);                    // overlong 3-byte
  CHECK(tok::utf8_lossy("a\xF0\x9F\x98\x80z") == "a\xF0\x9F\x98\x80z");  // valid 4-byte kept
  CHECK(tok::utf8_lossy("\xFF\xFE") == R + R);
  CHECK(tok::find_invalid_utf8("ab\xE4\xBD") == 2);
  CHECK(tok::find_invalid_utf8("ab\xE4\xBD\xA0") == std::string::npos);
}

TEST_CASE("tokenizer: mixed scripts round-trip and split at script and special-token boundaries",
          "[unit][tokenizer]") {
  set_fatal_mode(FatalMode::Throw);
  const Tokenizer& t = diffucoder();
  const std::string text =
      "def f(x):\n\treturn x**2  # квадрат, 平方, τετράγωνο, مربع, वर्ग 🙂🇯🇵 1234\r\n"
      "Hello world<|im_end|>你好<|mask|><|mask|>\n";
  const std::vector<int32_t> ids = t.encode(text);
  CHECK(t.decode(ids) == text);
  // decoding each id on its own and joining the bytes gives the same text (the decoder joins bytes first)
  std::string joined;
  for (int32_t id : ids) {
    const std::string tokstr = t.id_to_token(id);
    std::string bytes;
    joined += tok::token_to_bytes(tokstr, &bytes) ? bytes : tokstr;
  }
  CHECK(joined == text);
  // the known pieces appear with their golden ids; the specials are single ids
  const std::vector<int32_t> hello{9707, 1879, 151645};
  CHECK(std::search(ids.begin(), ids.end(), hello.begin(), hello.end()) != ids.end());
  CHECK(std::count(ids.begin(), ids.end(), 151666) == 2);
  CHECK(t.decode(ids, true).find("<|") == std::string::npos);
  // digits are split one by one (no multi-digit vocab entries)
  CHECK(t.encode("1234").size() == 4);
}

TEST_CASE("tokenizer: ChatML rendering -> golden ids", "[unit][tokenizer]") {
  set_fatal_mode(FatalMode::Throw);
  const Tokenizer& t = diffucoder();
  // golden.jsonl line 33 (system prompt + one user turn + generation prompt)
  const std::string with_sys = render_chatml("Write a function.", kDefaultSystemPrompt);
  CHECK(with_sys ==
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWrite a function."
        "<|im_end|>\n<|im_start|>assistant\n");
  CHECK(t.encode(with_sys) == std::vector<int32_t>{151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198,
                                                   151644, 872, 198, 7985, 264, 729, 13, 151645, 198, 151644, 77091,
                                                   198});
  // golden.jsonl line 85 (no system turn)
  const std::string no_sys = render_chatml("Write a Python function that returns the sum of a list.");
  CHECK(t.encode(no_sys) == std::vector<int32_t>{151644, 872, 198, 7985, 264, 13027, 729, 429, 4675, 279, 2629, 315,
                                                 264, 1140, 13, 151645, 198, 151644, 77091, 198});
  CHECK(render_chatml("hi", std::nullopt, false) == "<|im_start|>user\nhi<|im_end|>\n");
}

TEST_CASE("tokenizer: special-token table: defaults, by name, config.json overrides", "[unit][tokenizer]") {
  set_fatal_mode(FatalMode::Throw);
  const SpecialTokens d;
  CHECK(d.mask == 151666);
  CHECK(d.im_end == 151645);
  CHECK(d.dlm_pad == 151667);
  CHECK(d.beginoftext == 151665);
  CHECK((d.pad == 151643 && d.eos == 151643 && d.bos == 151643 && d.im_start == 151644));

  SpecialTokens s;
  s.resolve_from(diffucoder());
  CHECK((s.mask == 151666 && s.dlm_pad == 151667 && s.beginoftext == 151665 && s.im_end == 151645));
  CHECK(diffucoder().encode("<|im_end|>")[0] == s.im_end);  // how Coupled-GRPO derives its EOS

  SpecialTokens q;
  q.resolve_from(qwen2());  // Qwen3 file: 151666 is </tool_response>, there is no <|mask|>
  CHECK(q.mask == -1);
  CHECK(q.dlm_pad == -1);
  CHECK(q.im_end == 151645);

  TempDir dir;
  dir.write("config.json", R"({"mask_token_id": 126336, "eos_token_id": 151645, "bos_token_id": null,
                               "vocab_size": 152064})");
  const SpecialTokens o = SpecialTokens::load(diffucoder(), dir.path.string());
  CHECK(o.mask == 126336);
  CHECK(o.eos == 151645);
  CHECK(o.bos == 151643);  // null keeps the tokenizer value
  CHECK(o.pad == 151643);
  CHECK(SpecialTokens::load(diffucoder(), (dir.path / "no_such_dir").string()).mask == 151666);

  dir.write("config.json", R"({"mask_token_id": "151666"})");
  REQUIRE_THROWS_WITH(SpecialTokens::load(diffucoder(), dir.path.string()),
                      Contains("config.json") && Contains("mask_token_id"));
  dir.write("config.json", R"({"mask_token_id": )");
  REQUIRE_THROWS_WITH(SpecialTokens::load(diffucoder(), dir.path.string()),
                      Contains("config.json") && Contains("not valid JSON"));
}

TEST_CASE("tokenizer: long inputs round-trip fast (>= 1 MB, and 256 KB single pieces)", "[unit][tokenizer]") {
  set_fatal_mode(FatalMode::Throw);
  const Tokenizer& t = diffucoder();
  std::string text;
  for (const json& g : read_jsonl(kTokDir + "golden.jsonl")) text += g["text"].get<std::string>() + "\n";
  // plus seeded random code points across scripts, combining marks and Hangul jamo (NFC has work to do)
  std::mt19937 rng(1234);
  const uint32_t ranges[][2] = {{0x20, 0x7E},     {0xA0, 0x24F},    {0x300, 0x36F},   {0x391, 0x3C9},
                                {0x410, 0x44F},   {0x600, 0x6FF},   {0x900, 0x97F},   {0x1100, 0x1175},
                                {0x4E00, 0x9FFF}, {0xAC00, 0xD7A3}, {0x1F300, 0x1F64F}};
  std::string random;
  while (random.size() < 300000) {
    const auto& r = ranges[rng() % std::size(ranges)];
    const uint32_t n = 1 + rng() % 8;
    for (uint32_t k = 0; k < n; ++k) tok::append_utf8(random, r[0] + rng() % (r[1] - r[0] + 1));
    random += (rng() % 4 == 0) ? "\n" : " ";
  }
  const std::string unit = text + random;
  std::string big;
  while (big.size() < (1u << 20)) big += unit;
  big += std::string(1 << 18, 'a') + " " + std::string(1 << 18, ' ') + "x" + std::string(1 << 18, '\n');
  REQUIRE(big.size() >= (1u << 20));

  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = t.encode(big);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO(big.size() << " bytes -> " << ids.size() << " ids in " << secs << " s");
  CHECK(t.decode(ids) == nfc(big));
  CHECK(nfc(big) != big);  // the random part has decomposed sequences, so NFC was exercised
  CHECK(secs < 5.0);       // ~0.1 s normally; an O(n^2) regex or BPE takes minutes
}

TEST_CASE("tokenizer: bad tokenizer files and bad ids fail naming the file and the field or id",
          "[unit][tokenizer]") {
  set_fatal_mode(FatalMode::Throw);
  TempDir dir;
  const std::string missing = (dir.path / "nope.json").string();
  REQUIRE_THROWS_WITH(Tokenizer::load(missing), Contains(missing) && Contains("cannot open"));

  const std::string trunc = dir.write("trunc.json", R"({"model": {"type": "BPE", "vocab": {"a": 0)");
  REQUIRE_THROWS_WITH(Tokenizer::load(trunc), Contains(trunc) && Contains("not valid JSON"));

  const std::string no_model = dir.write("no_model.json", R"({"version": "1.0", "added_tokens": []})");
  REQUIRE_THROWS_WITH(Tokenizer::load(no_model), Contains(no_model) && Contains("'model' is missing"));

  const std::string no_vocab = dir.write("no_vocab.json", R"({"model": {"type": "BPE", "merges": []}})");
  REQUIRE_THROWS_WITH(Tokenizer::load(no_vocab), Contains(no_vocab) && Contains("'model.vocab' is missing"));

  const std::string wordpiece =
      dir.write("wp.json", R"({"model": {"type": "WordPiece", "vocab": {"[UNK]": 0}, "unk_token": "[UNK]"}})");
  REQUIRE_THROWS_WITH(Tokenizer::load(wordpiece),
                      Contains(wordpiece) && Contains("'model.type' is 'WordPiece'") && Contains("BPE"));

  const std::string array = dir.write("array.json", "[1, 2, 3]");
  REQUIRE_THROWS_WITH(Tokenizer::load(array), Contains(array) && Contains("JSON object"));

  // a real file with one field broken: the merges refer to a token outside the vocab
  std::ifstream src(kTokDir + "diffucoder_tokenizer.json");
  json j = json::parse(src);
  j["model"]["merges"][5] = json::array({"Ġ", "notatoken"});
  const std::string bad_merge = dir.write("bad_merge.json", j.dump());
  REQUIRE_THROWS_WITH(Tokenizer::load(bad_merge), Contains(bad_merge) && Contains("model.merges[5]"));
  j = json::parse(std::ifstream(kTokDir + "diffucoder_tokenizer.json"));
  j["normalizer"] = {{"type", "NFKC"}};
  const std::string nfkc = dir.write("nfkc.json", j.dump());
  REQUIRE_THROWS_WITH(Tokenizer::load(nfkc), Contains(nfkc) && Contains("normalizer.type") && Contains("NFKC"));

  const Tokenizer& t = diffucoder();
  const std::string origin = t.origin();
  REQUIRE_THROWS_WITH(t.decode(std::vector<int32_t>{9707, 151668}),
                      Contains(origin) && Contains("id 151668 at position 1") && Contains("vocab size 151668"));
  REQUIRE_THROWS_WITH(t.decode(std::vector<int32_t>{-1}), Contains("id -1"));
  REQUIRE_THROWS_WITH(t.decode(std::vector<int32_t>{152063}), Contains("id 152063"));
  REQUIRE_THROWS_WITH(t.encode("ok \xE4\xBD then bad"), Contains(origin) && Contains("not valid UTF-8 at byte 3"));
}
