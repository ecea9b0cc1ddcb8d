// cgrpo inspect DIR: parameters per module and bytes per dtype of a model directory (headers only).
// cgrpo inspect CKPT.h5 [--no-verify] [--diff OTHER.h5 [--tol T]]: a checkpoint's step, saved world size and
// stage, datasets, and whether every checksum holds; with --diff, the largest element difference per dataset
// against another checkpoint (exit 1 when any exceeds T or the layouts differ).
#include "cgrpo/cli/options.h"
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <algorithm>
#include <map>

#include "cgrpo/cli/commands.h"
#include "cgrpo/core/error.h"
#include "cgrpo/io/checkpoint.h"
#include "cgrpo/io/safetensors.h"
#include <cmath>
#include "cgrpo/model/param_layout.h"


namespace cgrpo::cli {

namespace {
int inspect_ckpt(const std::string& path, bool verify, const std::string& other, double tol) {
  const CheckpointInfo a = inspect_checkpoint(path, verify);
  const CheckpointMeta& m = a.meta;
  std::printf("checkpoint %s\n  %s step %lld (adam step %lld), tokens seen %lld, saved at %lld ranks with ZeRO-%lld\n"
              "  data cursor: epoch %lld, index %lld; seed %lld; reference model: %s\n  format %lld, written by %s\n",
              path.c_str(), m.phase.c_str(), (long long)m.step, (long long)m.adam_step, (long long)m.tokens_seen,
              (long long)m.world_size, (long long)m.zero_stage, (long long)m.data_epoch, (long long)m.data_index,
              (long long)m.seed, m.ref_model.c_str(), (long long)m.format_version, m.writer.c_str());
  int bad = 0;
  for (const auto& d : a.datasets) bad += !d.checksum_ok;
  std::printf("  %zu datasets; checksums %s\n", a.datasets.size(),
              !verify ? "not verified" : bad ? "FAIL" : "all hold");
  for (const auto& d : a.datasets)
    if (!d.checksum_ok) std::printf("    checksum mismatch: %s\n", d.name.c_str());
  if (other.empty()) return bad ? 1 : 0;
  const CheckpointInfo b = inspect_checkpoint(other, false);
  int over = 0;
  double worst = 0;
  for (const auto& d : a.datasets) {
    const auto it = std::find_if(b.datasets.begin(), b.datasets.end(), [&](const auto& x) { return x.name == d.name; });
    if (it == b.datasets.end() || it->shape != d.shape) {
      std::printf("  %s: missing or of another shape in %s\n", d.name.c_str(), other.c_str());
      ++over;
      continue;
    }
    const std::vector<float> x = read_checkpoint_dataset(path, d.name), y = read_checkpoint_dataset(other, d.name);
    double md = 0;
    for (size_t i = 0; i < x.size(); ++i) md = std::max(md, double(std::fabs(x[i] - y[i])));
    worst = std::max(worst, md);
    if (md > tol) {
      std::printf("  %s: max |diff| %.3e > %.1e\n", d.name.c_str(), md, tol);
      ++over;
    }
  }
  std::printf("diff against %s: %zu datasets, max |diff| %.3e, %d over tolerance %.1e\n", other.c_str(),
              a.datasets.size(), worst, over, tol);
  return (over || bad) ? 1 : 0;
}
}  // namespace

int cmd_inspect(int argc, char** argv) {
  std::string dir, diff_with;
  double tol = 0;
  po::options_description desc("options");
  desc.add_options()("dir", po::value(&dir), "model directory or checkpoint file")
                    ("diff", po::value(&diff_with), "checkpoint to compare element by element")
                    ("tol", po::value(&tol)->default_value(0.0), "largest allowed |difference| for --diff")
                    ("no-verify", "skip the checksum verification (reads no data)");
  po::positional_options_description pos;
  pos.add("dir", 1);
  po::variables_map vm;
  if (!parse_args(argc, argv,
                  "cgrpo inspect DIR | CKPT.h5 [--diff OTHER.h5 [--tol T]] [--no-verify]\n\n"
                  "Summarise a model directory (config, parameters per module, bytes per dtype) or a checkpoint.",
                  desc, vm, nullptr, &pos))
    return 0;
  CGRPO_CHECK(!dir.empty(), "cgrpo inspect: a model directory or checkpoint is required", hint("cgrpo inspect DIR"));
  if (std::filesystem::is_regular_file(dir)) return inspect_ckpt(dir, !vm.count("no-verify"), diff_with, tol);
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
