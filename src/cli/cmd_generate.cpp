// cgrpo generate: diffusion sampling (spec §2) from a model directory, for one prompt on the terminal
// (--stream redraws the canvas filling in place) or for a JSONL file of prompts, split over MPI ranks by
// line (line i on rank i % W, global sample id i: the output does not depend on the rank count).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cgrpo/cli/commands.h"
#include "cgrpo/cli/gen_common.h"
#include "cgrpo/cli/options.h"
#include "cgrpo/comm/mpi_communicator.h"
#include "cgrpo/core/error.h"
#include "cgrpo/data/jsonl.h"
#include "cgrpo/rollout/canvas_renderer.h"

namespace cgrpo::cli {

int cmd_generate(int argc, char** argv) {
  std::string model, prompt, input, output;
  po::options_description desc("cgrpo generate options");
  desc.add_options()("model", po::value(&model), "model directory (config.json + safetensors); default model.path")
                    ("prompt", po::value(&prompt), "one prompt; the completion is printed on stdout")
                    ("chat", "render prompts with the chat template (system prompt = data.system_prompt)")
                    ("stream", "with --prompt: redraw the canvas on stderr after every denoising step")
                    ("input", po::value(&input), "JSONL of {\"prompt\": ...} (or {\"text\": ...}), one per line")
                    ("output", po::value(&output), "JSONL of {\"prompt\", \"completion\", \"ids\"}, in input order")
                    ("config,c", po::value<std::string>(), "run config (INI)");
  po::variables_map vm;
  std::vector<std::string> overrides;
  if (!parse_args(argc, argv,
                  "cgrpo generate --model DIR (--prompt TEXT [--chat] [--stream] | --input in.jsonl --output "
                  "out.jsonl) [--config FILE] [--rollout.steps N --rollout.max_new_tokens N --rollout.temperature T "
                  "--run.seed S ...]",
                  desc, vm, &overrides))
    return 0;
  const bool single = vm.count("prompt") > 0, chat = vm.count("chat") > 0;
  CGRPO_CHECK(single != !input.empty(), "cgrpo generate: give exactly one of --prompt TEXT and --input FILE",
              hint("see `cgrpo generate --help`"));
  CGRPO_CHECK(single || !output.empty(), "cgrpo generate: --input needs --output FILE");
  CGRPO_CHECK(!single || output.empty(), "cgrpo generate: --output goes with --input (--prompt prints to stdout)");
  CGRPO_CHECK(single || !vm.count("stream"), "cgrpo generate: --stream goes with --prompt");
  const Config cfg = load_config(vm, overrides);
  const std::string dir = model_dir_of(model, cfg);

  if (single) {
    Generator gen(dir, cfg);
    const TextCodec& codec = gen.codec();
    const std::vector<int32_t> p = gen.prompt_ids(prompt, chat, "--prompt");
    CanvasRenderer renderer([&](int32_t t) { return codec.token_text(t); }, codec.mask_id, std::cerr);
    StepCallback on_step;
    if (vm.count("stream")) on_step = [&](int64_t i, const Canvas& c) { renderer.draw(i, c); };
    const auto completion = gen.until_end(gen.generate({p}, {0u}, on_step)[0]);
    if (vm.count("stream")) renderer.finish();
    std::cout << codec.decode(completion) << std::endl;
    return 0;
  }

  MpiSession mpi(&argc, &argv);
  const int rank = mpi.rank(), world = mpi.world_size();
  const std::vector<JsonlRecord> records = read_jsonl(input);
  const int64_t n = int64_t(records.size());
  Generator gen(dir, cfg, mpi.local_rank());
  std::vector<std::vector<int32_t>> prompts;
  std::vector<uint32_t> ids;
  std::vector<std::string> texts;
  for (const int64_t i : rank_items(n, rank, world)) {
    const JsonlRecord& r = records[size_t(i)];
    if (!r.has("prompt") && !r.has("text")) r.fail("no \"prompt\" field", "each line is {\"prompt\": \"...\"}");
    texts.push_back(r.str(r.has("prompt") ? "prompt" : "text"));
    prompts.push_back(gen.prompt_ids(texts.back(), chat, r.file + ":" + std::to_string(r.line)));
    ids.push_back(uint32_t(i));
  }
  const auto completions = gen.generate(prompts, ids);
  std::vector<std::string> lines;
  for (size_t k = 0; k < completions.size(); ++k) {
    const std::vector<int32_t> c = gen.until_end(completions[k]);
    lines.push_back(nlohmann::json{{"prompt", texts[k]}, {"completion", gen.codec().decode(c)}, {"ids", c}}.dump(
        -1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  const std::vector<std::string> all = gather_lines(lines, n, rank, world);
  if (rank == 0) {
    std::ofstream out(output);
    CGRPO_CHECK(out.good(), "cannot write ", output);
    for (const std::string& l : all) out << l << "\n";
    out.close();
    CGRPO_CHECK(!out.fail(), "write to ", output, " failed");
    std::printf("generated %lld completions (%lld new tokens max, %lld steps, %d rank%s) -> %s\n", (long long)n,
                (long long)gen.sampler_config().max_new_tokens, (long long)gen.sampler_config().resolved_steps(),
                world, world == 1 ? "" : "s", output.c_str());
  }
  return 0;
}

}  // namespace cgrpo::cli
