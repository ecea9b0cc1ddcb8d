// JSON Lines input with errors that name file:line and the field (ARCHITECTURE.md §3.7).
// Files are read through zlib's gzread, so .jsonl.gz and plain .jsonl both work.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace cgrpo {

// Whole file, decompressed when it is gzip. Fatal when it cannot be opened or the gzip stream is corrupt.
std::string read_maybe_gzip(const std::string& path);

// One parsed line. Accessors are fatal with "<file>:<line>: field '<key>' ..." on a missing field or wrong type.
struct JsonlRecord {
  std::string file;
  int64_t line = 0;  // 1-based line number in the file
  nlohmann::json value;

  bool has(const char* key) const;
  const nlohmann::json& at(const char* key) const;                 // must exist
  std::string str(const char* key) const;                          // must be a string
  std::string str_or_int(const char* key) const;                   // string, or integer printed in decimal
  std::vector<std::string> str_list(const char* key) const;        // must be an array of strings
  [[noreturn]] void fail(const std::string& what, const std::string& fix) const;
};

// Every non-blank line of `path`, each a JSON object. Fatal on a malformed line (naming file:line) and on a
// file with no records.
std::vector<JsonlRecord> read_jsonl(const std::string& path);

}  // namespace cgrpo
