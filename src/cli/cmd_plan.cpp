// cgrpo plan: per-rank memory by category and traffic per step for every ZeRO stage (or one), before any
// GPU hour is spent; and the largest micro-batch that fits a device.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cgrpo/cli/commands.h"
#include "cgrpo/cli/options.h"
#include "cgrpo/train/memory_plan.h"

namespace cgrpo::cli {

namespace {
std::string gib(int64_t b) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), b >= (int64_t(1) << 30) ? "%.2f GiB" : "%.2f MiB",
                b >= (int64_t(1) << 30) ? double(b) / (1 << 30) : double(b) / (1 << 20));
  return buf;
}
}  // namespace

int cmd_plan(int argc, char** argv) {
  po::options_description desc("cgrpo plan options");
  int world = 1, stage = -1;
  double device_gb = 80;
  std::string mode = "grpo";
  desc.add_options()("config,c", po::value<std::string>(), "run config (INI)")
                    ("world-size,n", po::value<int>(&world)->default_value(1), "data-parallel ranks")
                    ("stage,s", po::value<int>(&stage), "one ZeRO stage (default: all four)")
                    ("mode", po::value<std::string>(&mode)->default_value("grpo"), "grpo | sft: which training forward")
                    ("device-mem-gb", po::value<double>(&device_gb)->default_value(80), "device memory for the fit")
                    ("json", "machine-readable output");
  po::variables_map vm;
  std::vector<std::string> overrides;
  if (!parse_args(argc, argv, "cgrpo plan --config FILE --world-size N [--stage S] [--json]", desc, vm, &overrides))
    return 0;
  CGRPO_CHECK(world >= 1, "--world-size must be >= 1");
  const Config cfg = load_config(vm, overrides);
  const ModelConfig mc = model_config_of(cfg);
  const int64_t device = int64_t(device_gb * double(int64_t(1) << 30));
  nlohmann::json out = nlohmann::json::array();
  for (int s = 0; s <= 3; ++s) {
    if (stage >= 0 && s != stage) continue;
    const MemoryPlan p = plan_run(cfg, mc, world, s, mode);
    const int64_t fit = largest_micro_batch(cfg, mc, world, s, mode, device);
    if (vm.count("json")) {
      out.push_back({{"stage", s}, {"world_size", world}, {"params_numel", p.zero.params_numel},
                     {"padded_numel", p.zero.padded_numel}, {"params_bytes", p.zero.params_bytes},
                     {"gathered_bytes", p.zero.gathered_bytes}, {"grads_bytes", p.zero.grads_bytes},
                     {"master_bytes", p.zero.master_bytes}, {"moments_bytes", p.zero.moments_bytes},
                     {"scratch_bytes", p.zero.scratch_bytes}, {"staging_bytes", p.zero.staging_bytes},
                     {"activations_bytes", p.activations_bytes}, {"workspace_bytes", p.workspace_bytes},
                     {"ref_bytes", p.ref_bytes}, {"ref_gathered_bytes", p.ref_gathered_bytes},
                     {"ref_sent_bytes_per_forward", p.ref_sent_bytes_per_forward}, {"rollout_pinned_bytes", p.rollout_pinned_bytes},
                     {"host_load_bytes", p.host_load_bytes},
                     {"total_bytes", p.total_bytes()}, {"sent_bytes_per_step", p.zero.sent_bytes_per_step},
                     {"micro_rows", p.micro_rows}, {"seq_len", p.seq_len}, {"largest_micro_batch", fit}});
      continue;
    }
    if (s == (stage >= 0 ? stage : 0))
      std::printf("model %s: %lld parameters (%lld padded to %d ranks); %s micro-batch %lld x %lld tokens\n",
                  cfg.model.path.empty() ? cfg.model.preset.c_str() : cfg.model.path.c_str(),
                  (long long)p.zero.params_numel, (long long)p.zero.padded_numel, world, mode.c_str(),
                  (long long)p.micro_rows, (long long)p.seq_len);
    std::string grpo_parts;  // the reference model and ZeRO-3's pinned rollout parameters, where there are any
    if (p.ref_bytes)
      grpo_parts += ", reference model " + gib(p.ref_bytes) +
                    (p.ref_gathered_bytes ? " (+" + gib(p.ref_gathered_bytes) + " gathered, " +
                                                gib(p.ref_sent_bytes_per_forward) + " sent per scoring forward)"
                                          : std::string());
    if (p.rollout_pinned_bytes) grpo_parts += ", rollout-pinned params " + gib(p.rollout_pinned_bytes);
    std::printf("ZeRO-%d per rank: params %s (+%s gathered), grads %s, master %s, moments %s, reduce buffers %s%s, "
                "activations %s, workspace %s = %s; traffic %s/step; largest micro-batch in %.0f GB: %lld; "
                "host memory to load weights %s\n",
                s, gib(p.zero.params_bytes).c_str(), gib(p.zero.gathered_bytes).c_str(), gib(p.zero.grads_bytes).c_str(),
                gib(p.zero.master_bytes).c_str(), gib(p.zero.moments_bytes).c_str(),
                gib(p.zero.scratch_bytes + p.zero.staging_bytes).c_str(), grpo_parts.c_str(),
                gib(p.activations_bytes).c_str(), gib(p.workspace_bytes).c_str(), gib(p.total_bytes()).c_str(),
                gib(p.zero.sent_bytes_per_step).c_str(), device_gb, (long long)fit, gib(p.host_load_bytes).c_str());
  }
  if (vm.count("json")) std::cout << out.dump(2) << "\n";
  return 0;
}

}  // namespace cgrpo::cli
