#include "cgrpo/data/dataset.h"

#include "cgrpo/config/config.h"
#include "cgrpo/core/data_paths.h"
#include "cgrpo/core/error.h"
#include "cgrpo/data/loaders.h"
#include "cgrpo/data/toy_task.h"

namespace cgrpo {

Dataset::Dataset(std::string name, std::vector<Prompt> prompts) : name_(std::move(name)), prompts_(std::move(prompts)) {
  CGRPO_CHECK(!prompts_.empty(), "dataset ", name_, " is empty", hint("check data.dataset, data.path and data.max_samples"));
}

const Prompt& Dataset::operator[](int64_t i) const {
  CGRPO_CHECK(i >= 0 && i < size(), "prompt index ", i, " out of range for dataset ", name_, " of ", size());
  return prompts_[static_cast<size_t>(i)];
}

std::string default_dataset_path(const std::string& name) {
  const char* file = name == "humaneval"        ? "HumanEval.jsonl.gz"
                     : name == "mbpp"           ? "mbpp.jsonl.gz"
                     : name == "mbpp_sanitized" ? "mbpp_sanitized.jsonl.gz"
                                                : nullptr;
  CGRPO_CHECK(file != nullptr, "dataset '", name, "' has no default file",
              hint(name == "acecode" ? "set data.path to the AceCode JSONL (not shipped; see data/README.md)"
                                     : "set data.path"));
  return find_data_file(std::string("datasets/") + file, "dataset " + name);
}

Dataset Dataset::from_config(const DataSection& d, uint64_t seed) {
  const std::string& ds = d.dataset;
  CGRPO_CHECK(d.max_samples >= 0, "data.max_samples = ", d.max_samples, " is negative", hint("0 = all"));
  std::vector<Prompt> prompts;
  if (ds.rfind("toy:", 0) == 0) {
    const auto task = make_toy_task(ds);
    const int64_t n = d.max_samples > 0 ? d.max_samples : kToyDefaultSize;
    for (int64_t i = 0; i < n; ++i) prompts.push_back(task->generate(seed, i));
    return Dataset(ds, std::move(prompts));
  }
  const bool named = ds == "humaneval" || ds == "mbpp" || ds == "mbpp_sanitized" || ds == "acecode";
  const bool file = ds.find('/') != std::string::npos || ds.ends_with(".jsonl") || ds.ends_with(".jsonl.gz");
  CGRPO_CHECK(named || file, "unknown data.dataset '", ds, "'",
              hint("use humaneval, mbpp, mbpp_sanitized, acecode, toy:arith, toy:reverse, toy:sort or a .jsonl path"));
  if (named) {
    const std::string path = d.path.empty() ? default_dataset_path(ds) : d.path;
    prompts = ds == "humaneval" ? load_humaneval(path) : ds == "acecode" ? load_acecode(path, d.prompt_column)
                                                                          : load_mbpp(path);
  } else {
    prompts = load_jsonl_any(ds, d.prompt_column);
  }
  if (d.max_samples > 0 && static_cast<int64_t>(prompts.size()) > d.max_samples)
    prompts.resize(static_cast<size_t>(d.max_samples));
  return Dataset(ds, std::move(prompts));
}

}  // namespace cgrpo
