// cgrpo init: write a randomly initialised model (config.json + safetensors) for a preset or an HF config.json.
#include "cgrpo/cli/options.h"
#include <cstdio>
#include <iostream>

#include "cgrpo/cli/commands.h"
#include "cgrpo/core/error.h"
#include "cgrpo/io/safetensors.h"
#include "cgrpo/model/dream_model.h"


namespace cgrpo::cli {

int cmd_init(int argc, char** argv) {
  std::string preset, config_json, out, dtype_s;
  uint64_t seed = 0;
  float std_dev = 0.02f;
  po::options_description desc("options");
  desc.add_options()                                                                               //
      ("preset", po::value(&preset), "model preset: tiny, small, 1b, diffucoder-7b")              //
      ("config", po::value(&config_json), "the shapes of this HF config.json instead of a preset")  //
      ("out", po::value(&out), "output directory (config.json + safetensors)")                     //
      ("seed", po::value(&seed)->default_value(0), "initialisation seed (Philox, purpose Init)")   //
      ("init-std", po::value(&std_dev)->default_value(0.02f), "std of linear/embedding weights")   //
      ("dtype", po::value(&dtype_s)->default_value("f32"), "stored dtype: f32 or bf16")            //
      ("dry-run", "print the parameter count and sizes, write nothing");
  po::variables_map vm;
  if (!parse_args(argc, argv,
                  "cgrpo init (--preset tiny|small|1b|diffucoder-7b | --config config.json) --out DIR [options]\n\n"
                  "Write a randomly initialised Dream model for a preset or for the shapes and token ids of a\n"
                  "Hugging Face config.json (biases 0, norms 1, weights N(0, std)).",
                  desc, vm))
    return 0;
  CGRPO_CHECK(preset.empty() != config_json.empty(), "cgrpo init: give --preset or --config (one of them)",
              hint("presets: tiny, small, 1b, diffucoder-7b; --config: an HF config.json of a Dream/Qwen2 model"));
  const bool dry = vm.count("dry-run") > 0;
  CGRPO_CHECK(dry || !out.empty(), "cgrpo init: --out DIR is required (or --dry-run)");
  const DType dtype = parse_dtype(dtype_s);
  CGRPO_CHECK(dtype != DType::F16, "cgrpo init: --dtype must be f32 or bf16");
  const ModelConfig cfg = preset.empty() ? ModelConfig::load(config_json) : ModelConfig::preset(preset);
  const std::string name = preset.empty() ? config_json : "preset " + preset;
  const ParamLayout layout(cfg);
  const double bytes = double(layout.total()) * double(dtype_size(dtype));
  std::printf("%s: %lld layers, hidden %lld, heads %lld/%lld, intermediate %lld, vocab %lld\n", name.c_str(),
              (long long)cfg.num_hidden_layers, (long long)cfg.hidden_size, (long long)cfg.num_attention_heads,
              (long long)cfg.num_key_value_heads, (long long)cfg.intermediate_size, (long long)cfg.vocab_size);
  std::printf("parameters: %lld (%.3f GB as %s)\n", (long long)layout.total(), bytes / 1e9, dtype_name(dtype));
  if (dry) return 0;
  const uint64_t shard = bytes > 4e9 ? 4000000000ull : 0;  // HF-style ~4 GB shards for big models
  save_model(out, cfg, [&](int64_t first, int64_t count, float* values) {  // drawn chunk by chunk as written
    init_params_range(layout, first, count, values, seed, std_dev);
  }, dtype, shard);
  std::printf("wrote %s\n", out.c_str());
  return 0;
}

}  // namespace cgrpo::cli
