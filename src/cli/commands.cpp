#include "cgrpo/cli/commands.h"

#include <cstdio>
#include <cstring>
#include <exception>

#include "cgrpo/core/build_info.h"
#include "cgrpo/core/data_paths.h"
#include "cgrpo/core/error.h"

namespace cgrpo::cli {

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"selfcheck", "MPI + collectives + GEMM self-check on every rank (the quickstart's first step)", cmd_selfcheck},
      {"config", "print the resolved config (defaults < file < --section.key overrides) or the key reference", cmd_config},
      {"train", "masked-diffusion SFT warm-up, then Coupled-GRPO (rollouts, rewards, policy updates) on every rank", cmd_train},
      {"sft", "masked-diffusion supervised fine-tuning on chat-formatted data", cmd_sft},
      {"report", "a run's metrics.jsonl as an HTML page with one SVG plot per metric", cmd_report},
      {"convert", "checkpoint -> HF safetensors + config.json (export), or HF model dir -> checkpoint (import)", cmd_convert},
      {"plan", "per-rank memory by category and traffic per ZeRO stage for a config and world size", cmd_plan},
      {"tokenize", "JSONL text <-> token ids with the project tokenizer (--decode, --text STR for a quick look)", cmd_tokenize},
      {"init", "write a randomly initialised model (config.json + safetensors) for a preset", cmd_init},
      {"inspect", "parameters per module and bytes per dtype of a model directory", cmd_inspect},
      {"score", "log-probs of labelled tokens (JSONL in, JSONL out) under a model", cmd_score},
      {"generate", "diffusion sampling: one prompt (--stream) or a JSONL file split over MPI ranks", cmd_generate},
      {"reward", "score completions (JSONL) with the configured reward functions in the sandbox", cmd_reward},
      {"eval", "pass@k of a model on humaneval, mbpp, toy or a file (--canonical: references)", cmd_eval},
  };
  return table;
}

static void usage(FILE* out) {
  std::fprintf(out, "usage: cgrpo <command> [options]   (cgrpo <command> --help for details)\n\ncommands:\n");
  for (const Command& c : commands()) std::fprintf(out, "  %-10s %s\n", c.name, c.summary);
  std::fprintf(out, "\n  --version  print version, git describe and build options\n");
}

int dispatch(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    usage(stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "--version")) {
    std::printf("cgrpo %s (git %s)\n%s\n", version_string(), git_describe(), build_options());
    const std::vector<std::string> roots = data_roots();  // core/data_paths.h: where the tokenizer and datasets are found
    std::printf("data roots:%s\n", roots.empty() ? " none (set CGRPO_DATA_DIR)" : "");
    for (const std::string& r : roots) std::printf("  %s\n", r.c_str());
    return 0;
  }
  for (const Command& c : commands()) {
    if (std::strcmp(argv[1], c.name) != 0) continue;
    try {
      return c.run(argc - 1, argv + 1);
    } catch (const Error& e) {  // already formatted by fatal() in Throw mode
      std::fprintf(stderr, "%s\n", e.what());
      return 1;
    } catch (const std::exception& e) {
      CGRPO_FAIL("uncaught exception in 'cgrpo ", c.name, "': ", e.what());
    }
  }
  std::fprintf(stderr, "cgrpo: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}

}  // namespace cgrpo::cli
