// bench_checkpoint: parallel-HDF5 checkpoint write (with fsync, the commit protocol included) and verified read
// throughput for a model of N parameters (fp32 params + 2 AdamW moments = 12 bytes/param), at the world size
// mpirun gives it. Usage: mpirun -n W bench_checkpoint DIR [params_millions=32] [stage=2]
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "cgrpo/comm/mpi_communicator.h"
#include "cgrpo/core/logging.h"
#include "cgrpo/core/timer.h"
#include "cgrpo/io/checkpoint.h"

using namespace cgrpo;

int main(int argc, char** argv) {
  MpiSession mpi(&argc, &argv);
  if (argc < 2) {
    std::fprintf(stderr, "usage: mpirun -n W bench_checkpoint DIR [params_millions] [stage]\n");
    return 2;
  }
  const std::string dir = argv[1];
  const int64_t n = int64_t((argc > 2 ? std::atof(argv[2]) : 32.0) * 1e6);
  const int stage = argc > 3 ? std::atoi(argv[3]) : 2;
  MpiCommunicator comm(MPI_COMM_WORLD);
  init_logging("", comm.rank(), "warning");
  // 16 units of 4 2-D tensors each, like a small transformer
  std::vector<UnitSpec> units;
  const int64_t per = n / 64, cols = 512;
  for (int u = 0; u < 16; ++u) {
    UnitSpec s;
    s.name = std::string("u") + char('a' + u);
    for (int t = 0; t < 4; ++t) {
      std::string name = s.name;
      name += ".t";
      name += char('0' + t);
      s.tensors.push_back({name, per / cols * cols, true, {per / cols, cols}});
    }
    units.push_back(s);
  }
  ZeroEngine e(units, comm, stage, AdamWParams{});
  for (int u = 0; u < e.num_units(); ++u) {
    std::vector<float> v(size_t(e.unit_numel(u)));
    for (size_t i = 0; i < v.size(); ++i) v[i] = float(i % 1000) * 1e-3f;
    e.load_unit(u, v.data());
  }
  const double bytes = double(e.total_numel()) * 12.0;
  CheckpointMeta m;
  m.step = 1;
  comm.barrier();
  Timer tw;
  const std::string path = save_checkpoint(dir, m, e, nullptr, 1);
  const double w = tw.elapsed_s();
  ZeroEngine f(units, comm, stage, AdamWParams{});
  comm.barrier();
  Timer tr;
  load_checkpoint(path, f, nullptr);
  comm.barrier();
  const double r = tr.elapsed_s();
  if (comm.rank() == 0)
    std::printf("checkpoint %.0f MB (%lld params x 12 B), %d ranks, ZeRO-%d: write+fsync %.2f s = %.0f MB/s, "
                "verified read %.2f s = %.0f MB/s\n",
                bytes / 1e6, (long long)e.total_numel(), comm.world_size(), stage, w, bytes / 1e6 / w, r, bytes / 1e6 / r);
  return 0;
}
