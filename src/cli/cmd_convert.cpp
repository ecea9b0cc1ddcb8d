// cgrpo convert: checkpoint <-> Hugging Face model directory.
//   export: cgrpo convert --from CKPT.h5 --to DIR [--dtype bf16|f32] [--shard-size-mb N]
//           the checkpoint's parameters (or its reference model's, --ref) as safetensors + config.json;
//   import: [mpirun -n N] cgrpo convert --from HF_DIR --to CKPT_DIR (each of N ranks holds 1/N: ZeRO-3 shards)
//           a fresh step-0 checkpoint (zero AdamW moments) whose config points at HF_DIR.
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "cgrpo/cli/commands.h"
#include "cgrpo/cli/options.h"
#include "cgrpo/comm/mpi_communicator.h"
#include "cgrpo/core/logging.h"
#include "cgrpo/io/checkpoint.h"
#include "cgrpo/io/model_weights.h"
#include "cgrpo/shard/model_units.h"
#include "cgrpo/train/memory_plan.h"

namespace cgrpo::cli {

namespace {
// The model config a checkpoint was trained with: its resolved config names a preset or a model dir.
ModelConfig checkpoint_model(const CheckpointMeta& m, const std::string& path) {
  CGRPO_CHECK(!m.config_ini.empty(), "checkpoint ", path, " carries no config", hint("it was not written by cgrpo train"));
  return model_config_of(Config::from_ini(m.config_ini, path + " (its config)"));
}

int export_hf(const std::string& from, const std::string& to, const std::string& dtype, double shard_mb, bool ref) {
  const CheckpointInfo info = inspect_checkpoint(from, true);
  for (const auto& d : info.datasets)
    CGRPO_CHECK(d.checksum_ok, "checkpoint ", from, ": checksum mismatch in ", d.name, hint("refusing to export damaged data"));
  const ModelConfig mc = checkpoint_model(info.meta, from);
  const ParamLayout layout(mc);
  const std::string group = ref ? "/ref/params/" : "/params/";
  // save_model asks for the values tensor by tensor, chunk by chunk: one dataset is held at a time (the largest,
  // the [V, H] embedding, 2.2 GB for DiffuCoder-7B), not the model (30 GB)
  size_t held = layout.params().size();
  std::vector<float> values;
  auto fill = [&](int64_t first, int64_t count, float* out) {
    layout.for_each_in_range(first, count, [&](size_t i, const ParamInfo& p, int64_t lo, int64_t hi) {
      if (held != i) {
        values = read_checkpoint_dataset(from, group + p.name);
        CGRPO_CHECK(int64_t(values.size()) == p.numel, "checkpoint ", from, ": ", group, p.name, " has ",
                    values.size(), " elements, the model expects ", p.numel);
        held = i;
      }
      std::copy(values.begin() + (lo - p.offset), values.begin() + (hi - p.offset), out + (lo - first));
    });
  };
  save_model(to, mc, fill, parse_dtype(dtype), uint64_t(shard_mb * 1048576.0));
  std::printf("exported %s (%s step %lld) to %s as %s: %lld parameters\n", from.c_str(), info.meta.phase.c_str(),
              (long long)info.meta.step, to.c_str(), dtype.c_str(), (long long)layout.total());
  return 0;
}

int import_hf(int argc, char** argv, const std::string& from, const std::string& to) {
  MpiSession mpi(&argc, &argv);
  MpiCommunicator comm(MPI_COMM_WORLD);
  init_logging("", comm.rank(), "info");
  const ModelConfig mc = ModelConfig::load((std::filesystem::path(from) / "config.json").string());
  const ParamLayout layout(mc);
  // ZeRO-3: each rank reads and writes its shard of every unit, so `mpirun -n N cgrpo convert` splits the host
  // memory (parameters and the zero AdamW moments: 12 bytes per parameter) N ways
  const ModelWeights weights(from, layout);
  ZeroEngine e(units_from_layout(layout, {"bias", "norm"}), comm, 3, AdamWParams{});
  load_units(e, layout, weights.fill());
  Config cfg = Config::load("", {"--model.path", std::filesystem::absolute(from).string()});
  CheckpointMeta m;
  m.config_ini = cfg.to_ini();
  m.ref_model = "none";
  const std::string path = save_checkpoint(to, m, e, nullptr, 1 << 30);
  if (comm.rank() == 0)
    std::printf("imported %s (%lld parameters) into %s\n", from.c_str(), (long long)layout.total(), path.c_str());
  return 0;
}
}  // namespace

int cmd_convert(int argc, char** argv) {
  po::options_description desc("cgrpo convert options");
  std::string from, to, dtype = "bf16";
  double shard_mb = 0;
  desc.add_options()("from", po::value(&from), "checkpoint file (export) or HF model directory (import)")
                    ("to", po::value(&to), "HF model directory (export) or checkpoint directory (import)")
                    ("dtype", po::value(&dtype)->default_value("bf16"), "export dtype: bf16 | f32 | f16")
                    ("shard-size-mb", po::value(&shard_mb)->default_value(0), "export shard limit; 0 = one file")
                    ("ref", "export the reference model instead of the policy");
  po::variables_map vm;
  if (!parse_args(argc, argv, "cgrpo convert --from CKPT.h5 --to HF_DIR | --from HF_DIR --to CKPT_DIR", desc, vm))
    return 0;
  CGRPO_CHECK(!from.empty() && !to.empty(), "cgrpo convert needs --from and --to", hint("see cgrpo convert --help"));
  if (std::filesystem::is_regular_file(from)) return export_hf(from, to, dtype, shard_mb, vm.count("ref") > 0);
  CGRPO_CHECK(std::filesystem::is_directory(from), "cgrpo convert: '", from, "' is neither a checkpoint nor a directory");
  return import_hf(argc, argv, from, to);
}

}  // namespace cgrpo::cli
