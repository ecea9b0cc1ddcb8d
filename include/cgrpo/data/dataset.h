// A named vector of Prompts built from the [data] config section (config.h DataSection).
//   data.dataset = humaneval | mbpp | mbpp_sanitized | acecode | toy:<task> | <file.jsonl[.gz]>
//   data.path    = the file for humaneval / mbpp / mbpp_sanitized / acecode. Empty: datasets/<file> in the
//                  first data root holding it (core/data_paths.h: $CGRPO_DATA_DIR, an installed tree's
//                  share/cgrpo/data, ../shared/data, the repo's data/). acecode has no default: AceCode-87K is
//                  not shipped, see data/README.md
//   data.max_samples = keep the first N records in file order (0 = all). Toy tasks generate indices
//                  0..N-1 with the run seed (N = kToyDefaultSize when 0).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cgrpo/data/prompt.h"

namespace cgrpo {

struct DataSection;

class Dataset {
 public:
  static constexpr int64_t kToyDefaultSize = 10000;

  Dataset(std::string name, std::vector<Prompt> prompts);  // fatal when prompts is empty
  static Dataset from_config(const DataSection& data, uint64_t seed);

  const std::string& name() const { return name_; }
  int64_t size() const { return static_cast<int64_t>(prompts_.size()); }
  const Prompt& operator[](int64_t i) const;  // bounds-checked
  const std::vector<Prompt>& prompts() const { return prompts_; }

 private:
  std::string name_;
  std::vector<Prompt> prompts_;
};

// Default file of a named dataset ("humaneval" -> ".../HumanEval.jsonl.gz"); fatal when neither copy exists.
std::string default_dataset_path(const std::string& name);

}  // namespace cgrpo
