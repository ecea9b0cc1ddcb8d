// cgrpo train / cgrpo sft: the training entry points, one process per rank (mpirun, srun --mpi=pmix).
#include "cgrpo/cli/commands.h"
#include "cgrpo/cli/options.h"
#include "cgrpo/comm/mpi_communicator.h"
#include "cgrpo/train/trainer.h"

namespace cgrpo::cli {

namespace {
int run_trainer(int argc, char** argv, bool sft) {
  po::options_description desc(sft ? "cgrpo sft options" : "cgrpo train options");
  std::string resume;
  desc.add_options()("config,c", po::value<std::string>(), "run config (INI)")
                    ("resume", po::value<std::string>(&resume), "none | auto | <checkpoint> (= checkpoint.resume)");
  po::variables_map vm;
  std::vector<std::string> overrides;
  const char* usage = sft ? "mpirun -n N cgrpo sft --config FILE [--section.key VALUE ...]"
                          : "mpirun -n N cgrpo train --config FILE [--resume auto] [--section.key VALUE ...]";
  if (!parse_args(argc, argv, usage, desc, vm, &overrides)) return 0;
  if (!resume.empty()) {
    overrides.push_back("--checkpoint.resume");
    overrides.push_back(resume);
  }
  MpiSession mpi(&argc, &argv);
  const Config cfg = load_config(vm, overrides);
  MpiCommunicator comm(MPI_COMM_WORLD);
  Trainer t(cfg, comm);
  return sft ? t.sft_only() : t.train();
}
}  // namespace

int cmd_train(int argc, char** argv) { return run_trainer(argc, argv, false); }
int cmd_sft(int argc, char** argv) { return run_trainer(argc, argv, true); }

}  // namespace cgrpo::cli
