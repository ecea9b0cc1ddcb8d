// cgrpo selfcheck: proves the stack works on every rank (MPI collectives with exact results, BLAS GEMM
// against a float64 loop, the Philox known answer) and prints one line per rank plus a verdict.
// --inject-fatal-on-rank R makes rank R fail through fatal() while the others wait in a collective:
// the test that one rank's failure ends the whole job instead of hanging it.
#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "cgrpo/backend/cpu_backend.h"
#include "cgrpo/cli/commands.h"
#include "cgrpo/cli/options.h"
#include "cgrpo/comm/mpi_communicator.h"
#include "cgrpo/core/build_info.h"
#include "cgrpo/core/philox.h"
#include "cgrpo/core/timer.h"
#include "cgrpo/model/numerics_check.h"

namespace cgrpo::cli {

int cmd_selfcheck(int argc, char** argv) {
  po::options_description desc("cgrpo selfcheck options");
  int inject = -1;
  int64_t n = 1 << 20;
  desc.add_options()("inject-fatal-on-rank", po::value<int>(&inject), "rank that fails on purpose (failure-path test)")
                    ("numel", po::value<int64_t>(&n), "elements per collective (default 1M)")
                    ("gpu", "also check this rank's GPU (local rank % GPUs): kernel, cuBLASLt GEMM, NCCL, exact");
  po::variables_map vm;
  if (!parse_args(argc, argv, "mpirun -n N cgrpo selfcheck [--numel N]", desc, vm)) return 0;

  MpiSession mpi(&argc, &argv);
  MpiCommunicator comm(MPI_COMM_WORLD);
  const int r = comm.rank(), W = comm.world_size();
  Timer total;

  if (r == inject) {
    comm.barrier();
    CGRPO_CHECK(r != inject, "selfcheck: injected failure on rank ", r, hint("this is the failure-path test; nothing is wrong"));
  }
  if (inject >= 0) comm.barrier();  // the other ranks wait here; fatal() on `inject` must end the job

  // 1. all_reduce of (r + 1) * (i % 1000): exact small integers; sum over ranks = W(W+1)/2 * (i % 1000)
  std::vector<float> buf(n);
  for (int64_t i = 0; i < n; ++i) buf[i] = float((r + 1) * (i % 1000));
  Timer t;
  comm.all_reduce(TensorView::of(buf.data(), {n}));
  const double ar_ms = t.elapsed_ms();
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) bad += buf[i] != float(W * (W + 1) / 2 * (i % 1000));

  // 2. all_gather of each rank's id over its shard
  const ShardRange mine = shard_range(n, W, r);
  std::vector<float> shard(mine.count, float(r)), full(n, -1.0f);
  comm.all_gather(TensorView::of(shard.data(), {mine.count}), TensorView::of(full.data(), {n}));
  for (int q = 0; q < W; ++q) {
    const ShardRange s = shard_range(n, W, q);
    for (int64_t i = 0; i < s.count; ++i) bad += full[s.offset + i] != float(q);
  }

  // 3. GEMM against a float64 loop
  CpuBackend be;
  const int64_t m = 96, k = 80, nn = 112;
  std::vector<float> a(m * k), b(k * nn), c(m * nn);
  RngStream rng(uint64_t(r), RngPurpose::Test, 0, 0);
  rng.fill_normal(a.data(), m * k, 0, 1, 0);
  rng.fill_normal(b.data(), k * nn, 0, 1, uint64_t(m * k));
  be.gemm(TensorView::of(a.data(), {m, k}), false, TensorView::of(b.data(), {k, nn}), false, TensorView::of(c.data(), {m, nn}));
  double max_err = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < nn; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p) s += double(a[i * k + p]) * b[p * nn + j];
      max_err = std::max(max_err, std::fabs(s - c[i * nn + j]));
    }
  const bool gemm_ok = max_err < 1e-3;

  // 4. Philox known answer (Random123 kat_vectors)
  const bool rng_ok = philox4x32_10({0, 0, 0, 0}, {0, 0}) == PhiloxCounter{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8};

  // 5. (--gpu) the GPU this rank would train on
  std::string gpu_error, gpu_name;
  const bool want_gpu = vm.count("gpu") > 0;
  if (want_gpu) gpu_error = device_selfcheck(comm.local_rank(), &gpu_name);
  if (want_gpu && gpu_error.empty()) {  // the model's forward and backward there against the CPU, fp32 and bf16
    const std::unique_ptr<Backend> dev = make_backend("cuda", comm.local_rank());
    for (DType t : {DType::F32, DType::BF16})
      if (gpu_error.empty()) gpu_error = model_numerics_check(*dev, t);
    if (gpu_error.empty()) gpu_name += " (model f32 + bf16 match the CPU)";
  }

  int ok = bad == 0 && gemm_ok && rng_ok && gpu_error.empty(), all_ok = 0;
  MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm.comm());
  // one line per rank, gathered to rank 0 so the order is fixed
  char line[512];
  std::snprintf(line, sizeof(line),
                "  rank %d/%d on %s (local %d): collectives %s, all_reduce %.1f MB in %.1f ms, GEMM max|err| %.2e, "
                "BLAS threads %d%s%s",
                r, W, process_host().c_str(), comm.local_rank(), bad == 0 ? "exact" : "WRONG", n * 4 / 1e6, ar_ms,
                max_err, be.threads(), want_gpu ? (gpu_error.empty() ? ", GPU ok: " : ", GPU FAILED: ") : "",
                want_gpu ? (gpu_error.empty() ? gpu_name.c_str() : gpu_error.c_str()) : "");
  std::vector<char> lines(r == 0 ? sizeof(line) * W : 0);
  MPI_Gather(line, sizeof(line), MPI_CHAR, lines.data(), sizeof(line), MPI_CHAR, 0, comm.comm());
  if (r == 0)
    for (int q = 0; q < W; ++q) std::printf("%s\n", lines.data() + q * sizeof(line));
  if (r == 0)
    std::printf("selfcheck %s: cgrpo %s (git %s), %d ranks, %.2f s\n", all_ok ? "PASSED" : "FAILED", version_string(),
                git_describe(), W, total.elapsed_s());
  return all_ok ? 0 : 1;
}

}  // namespace cgrpo::cli
