// Encode throughput of the project tokenizer.
// Corpus: every string field of shared/data/datasets/{HumanEval,mbpp,mbpp_sanitized}.jsonl.gz (Python code,
// docstrings, tests and English task text; gunzipped with `gzip -dc`) plus the 95 golden.jsonl texts
// (multilingual, ChatML, specials), one document per string, repeated until the corpus is >= 4 MB.
// "cold" is the first pass on a freshly loaded tokenizer (empty piece cache); "warm" the best of 3 later passes.
// Usage: bench_tokenizer [tokenizer.json]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cgrpo/core/error.h"
#include "cgrpo/tokenizer/tokenizer.h"

using json = nlohmann::json;

static const std::string kShared = CGRPO_SOURCE_DIR "/../shared/data/";

static void collect_strings(const json& j, std::vector<std::string>& out) {
  if (j.is_string())
    out.push_back(j.get<std::string>());
  else if (j.is_structured())
    for (const json& v : j) collect_strings(v, out);
}

static void read_lines(FILE* f, std::vector<std::string>& docs) {
  std::string line;
  for (int c; (c = std::fgetc(f)) != EOF;) {
    if (c != '\n') {
      line += static_cast<char>(c);
      continue;
    }
    if (!line.empty()) collect_strings(json::parse(line), docs);
    line.clear();
  }
}

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : kShared + "tokenizer/diffucoder_tokenizer.json";
  std::vector<std::string> unique;
  for (const char* ds : {"HumanEval.jsonl.gz", "mbpp.jsonl.gz", "mbpp_sanitized.jsonl.gz"}) {
    const std::string cmd = "gzip -dc '" + kShared + "datasets/" + ds + "'";
    std::unique_ptr<FILE, int (*)(FILE*)> p(popen(cmd.c_str(), "r"), pclose);
    CGRPO_CHECK(p, "cannot run ", cmd);
    read_lines(p.get(), unique);
  }
  std::ifstream golden(kShared + "tokenizer/golden.jsonl");
  CGRPO_CHECK(golden.good(), "cannot open golden.jsonl under ", kShared);
  for (std::string line; std::getline(golden, line);) unique.push_back(json::parse(line)["text"].get<std::string>());
  size_t unique_bytes = 0;
  for (const std::string& d : unique) unique_bytes += d.size();
  std::vector<std::string> docs;
  size_t bytes = 0;
  while (bytes < (4u << 20))
    for (const std::string& d : unique) {
      docs.push_back(d);
      bytes += d.size();
    }

  const auto now = [] { return std::chrono::steady_clock::now(); };
  const auto t_load = now();
  const cgrpo::Tokenizer tok = cgrpo::Tokenizer::load(path);
  const double load_s = std::chrono::duration<double>(now() - t_load).count();
  size_t ntok = 0;
  double cold = 0, warm = 1e30, dec = 1e30;
  std::vector<std::vector<int32_t>> ids(docs.size());
  for (int pass = 0; pass < 4; ++pass) {
    ntok = 0;
    const auto t0 = now();
    for (size_t i = 0; i < docs.size(); ++i) {
      ids[i] = tok.encode(docs[i]);
      ntok += ids[i].size();
    }
    const double s = std::chrono::duration<double>(now() - t0).count();
    (pass == 0 ? cold : warm) = pass == 0 ? s : std::min(warm, s);
    const auto t1 = now();
    size_t out = 0;
    for (const auto& v : ids) out += tok.decode(v).size();
    dec = std::min(dec, std::chrono::duration<double>(now() - t1).count());
    CGRPO_CHECK(out >= bytes - bytes / 100, "decode lost text");  // NFC may shorten a little, never much
  }
  const double mb = bytes / 1e6;
  std::printf("tokenizer encode: %.2f MB corpus (%.2f MB unique: HumanEval+MBPP+golden texts, %zu docs), %zu tokens "
              "(%.2f bytes/token); cold %.1f MB/s, warm %.1f MB/s; decode %.1f MB/s; load %.2f s\n",
              mb, unique_bytes / 1e6, docs.size(), ntok, double(bytes) / ntok, mb / cold, mb / warm, mb / dec, load_s);
  return 0;
}
