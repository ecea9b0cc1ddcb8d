// cgrpo inspect DIR: parameters per module and bytes per dtype of a model directory (headers only).
#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>

#include "cgrpo/cli/commands.h"
#include "cgrpo/core/error.h"
#include "cgrpo/io/safetensors.h"
#include "cgrpo/model/param_layout.h"

namespace po = boost::program_options;

namespace cgrpo::cli {

int cmd_inspect(int argc, char** argv) {
  std::string dir;
  po::options_description desc("usage: cgrpo inspect DIR\n\noptions");
  desc.add_options()("help,h", "show this help")("dir", po::value(&dir), "model directory (config.json + safetensors)");
  po::positional_options_description pos;
  pos.add("dir", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(desc).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::fprintf(stderr, "cgrpo inspect: %s\n\n", e.what());
    std::cerr << desc << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << "Summarise a model directory: config, parameters per module, bytes per dtype.\n\n" << desc << "\n";
    return 0;
  }
  CGRPO_CHECK(!dir.empty(), "cgrpo inspect: a model directory is required", hint("cgrpo inspect DIR"));
  const ModelConfig cfg = ModelConfig::load((std::filesystem::path(dir) / "config.json").string());
  const ParamLayout layout(cfg);
  const auto entries = list_model_tensors(dir);
  std::printf("model %s\n  layers %lld, hidden %lld, heads %lld/%lld (head_dim %lld), intermediate %lld, vocab %lld, "
              "tied head %s, mask id %lld\n",
              dir.c_str(), (long long)cfg.num_hidden_layers, (long long)cfg.hidden_size,
              (long long)cfg.num_attention_heads, (long long)cfg.num_key_value_heads, (long long)cfg.head_dim(),
              (long long)cfg.intermediate_size, (long long)cfg.vocab_size, cfg.tie_word_embeddings ? "yes" : "no",
              (long long)cfg.mask_token_id);
  std::map<std::string, int> files;
  for (const auto& e : entries) files[e.file]++;
  std::printf("  %zu file(s), %zu tensors\n\n%-24s %16s\n", files.size(), entries.size(), "module", "params");
  std::vector<int64_t> per_unit(layout.units().size(), 0);
  std::map<std::string, uint64_t> per_dtype;
  int64_t total = 0, other = 0;
  for (const auto& e : entries) {
    per_dtype[dtype_name(e.tensor.dtype)] += e.tensor.end - e.tensor.begin;
    total += e.tensor.numel;
    const ParamInfo* p = layout.find(e.tensor.name);
    if (p) per_unit[size_t(p->unit)] += e.tensor.numel;
    else other += e.tensor.numel;
  }
  for (size_t u = 0; u < layout.units().size(); ++u)
    std::printf("%-24s %16lld\n", layout.units()[u].name.c_str(), (long long)per_unit[u]);
  if (other) std::printf("%-24s %16lld   (not in the config's layout)\n", "other", (long long)other);
  std::printf("%-24s %16lld   (config.json implies %lld)\n\nbytes per dtype:\n", "total", (long long)total,
              (long long)layout.total());
  for (const auto& [dt, b] : per_dtype) std::printf("  %-6s %16llu\n", dt.c_str(), (unsigned long long)b);
  return 0;
}

}  // namespace cgrpo::cli
