#include "cgrpo/data/jsonl.h"

#include <zlib.h>

#include <cerrno>
#include <cstring>

#include "cgrpo/core/error.h"

namespace cgrpo {

std::string read_maybe_gzip(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");  // reads plain files unchanged (transparent mode)
  CGRPO_CHECK(f != nullptr, "cannot open dataset file ", path, ": ", std::strerror(errno),
              hint("check data.path / data.dataset; the shared copies live in ../shared/data/datasets"));
  std::string out;
  char buf[1 << 16];
  for (;;) {
    const int n = gzread(f, buf, sizeof buf);
    if (n > 0) out.append(buf, static_cast<size_t>(n));
    if (n < static_cast<int>(sizeof buf)) {
      int err = Z_OK;
      const char* msg = gzerror(f, &err);
      const std::string what = (n < 0 || (err != Z_OK && err != Z_BUF_ERROR)) ? msg : "";
      gzclose(f);
      CGRPO_CHECK(what.empty(), "cannot read ", path, ": ", what,
                  hint("the gzip stream is corrupt or truncated; re-copy the file"));
      // Z_BUF_ERROR at the end means a truncated gzip member
      CGRPO_CHECK(err != Z_BUF_ERROR, "cannot read ", path, ": truncated gzip stream",
                  hint("re-copy the file"));
      return out;
    }
  }
}

bool JsonlRecord::has(const char* key) const { return value.contains(key); }

void JsonlRecord::fail(const std::string& what, const std::string& fix) const {
  CGRPO_FAIL(file, ":", line, ": ", what, hint(fix));
}

const nlohmann::json& JsonlRecord::at(const char* key) const {
  if (!value.contains(key)) fail(std::string("missing field '") + key + "'", "every record of this format needs it");
  return value.at(key);
}

std::string JsonlRecord::str(const char* key) const {
  const auto& v = at(key);
  if (!v.is_string())
    fail(std::string("field '") + key + "' must be a string, got " + v.type_name(), "fix the record");
  return v.get<std::string>();
}

std::string JsonlRecord::str_or_int(const char* key) const {
  const auto& v = at(key);
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (!v.is_string())
    fail(std::string("field '") + key + "' must be a string or an integer, got " + v.type_name(), "fix the record");
  return v.get<std::string>();
}

std::vector<std::string> JsonlRecord::str_list(const char* key) const {
  const auto& v = at(key);
  if (!v.is_array())
    fail(std::string("field '") + key + "' must be an array of strings, got " + v.type_name(), "fix the record");
  std::vector<std::string> out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string())
      fail(std::string("field '") + key + "[" + std::to_string(i) + "]' must be a string, got " + v[i].type_name(),
           "fix the record");
    out.push_back(v[i].get<std::string>());
  }
  return out;
}

std::vector<JsonlRecord> read_jsonl(const std::string& path) {
  const std::string text = read_maybe_gzip(path);
  std::vector<JsonlRecord> out;
  size_t pos = 0;
  for (int64_t line = 1; pos < text.size(); ++line) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string_view s(text.data() + pos, end - pos);
    pos = end + 1;
    if (s.find_first_not_of(" \t\r") == std::string_view::npos) continue;  // blank line
    JsonlRecord r{path, line, {}};
    try {
      r.value = nlohmann::json::parse(s);
    } catch (const nlohmann::json::parse_error& e) {
      r.fail(std::string("malformed JSON: ") + e.what(), "each line must be one complete JSON object");
    }
    if (!r.value.is_object()) r.fail(std::string("record must be a JSON object, got ") + r.value.type_name(),
                                     "each line must be one JSON object");
    out.push_back(std::move(r));
  }
  CGRPO_CHECK(!out.empty(), "dataset file ", path, " has no records",
              hint("a JSONL dataset needs at least one non-blank line"));
  return out;
}

}  // namespace cgrpo
