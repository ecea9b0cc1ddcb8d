// bench_cuda_nccl: NcclCommunicator bandwidth for the collectives the ZeRO engine uses, nccl-tests style:
// algbw = bytes / time (bytes = the full buffer: all_gather's output, reduce_scatter's input, all_reduce's
// buffer); busbw = algbw * (W-1)/W for all_gather and reduce_scatter, algbw * 2(W-1)/W for all_reduce (the
// bytes each link carries in a ring, comparable to the hardware's peak).
// Usage: mpirun -n W bench_cuda_nccl [max_MiB=1024]   (one GPU per rank)
#include <cstdio>
#include <cstdlib>

#include "cgrpo/backend/cuda_backend.h"
#include "cgrpo/comm/factory.h"
#include "cgrpo/comm/mpi_communicator.h"
#include "cgrpo/core/timer.h"

using namespace cgrpo;

int main(int argc, char** argv) {
  MpiSession mpi(&argc, &argv);
  MpiCommunicator world(MPI_COMM_WORLD);
  const CudaDeviceInfo info = cuda_device_info();
  if (info.device_count == 0) {
    if (world.rank() == 0) std::printf("SKIP: no CUDA device (%s)\n", info.error.c_str());
    return 77;
  }
  const int W = world.world_size();
  CudaBackend be(world.local_rank() % info.device_count);
  const auto comm = make_device_communicator(be);
  const int64_t max_bytes = (argc > 1 ? std::atoll(argv[1]) : 1024) << 20;
  Buffer a = be.alloc(size_t(max_bytes), MemCategory::Workspace), b = be.alloc(size_t(max_bytes), MemCategory::Workspace);
  const std::vector<float> zeros(size_t(max_bytes / 4), 0.0f);
  be.upload(zeros.data(), a.data(), size_t(max_bytes));
  be.upload(zeros.data(), b.data(), size_t(max_bytes));
  if (world.rank() == 0) {
    std::printf("%d ranks, device %s\n", W, info.name.c_str());
    std::printf("%10s %14s %10s %10s %14s %10s %10s %14s %10s\n", "MiB", "all_gather ms", "algbw", "busbw",
                "red_scatter ms", "algbw", "busbw", "all_reduce ms", "busbw");
  }
  for (int64_t bytes = 1 << 20; bytes <= max_bytes; bytes *= 4) {
    const int64_t n = bytes / 4 / W * W, S = n / W;
    const TensorView full(a.data(), DType::F32, {n}, Device::CUDA), shard(b.data(), DType::F32, {S}, Device::CUDA);
    auto time = [&](const auto& fn) {
      fn();
      world.barrier();
      const int reps = 10;
      Timer t;
      for (int i = 0; i < reps; ++i) fn();  // each collective returns when its result is ready
      return t.elapsed_ms() / reps;
    };
    const double ag = time([&] { comm->all_gather(shard, full); });
    const double rs = time([&] { comm->reduce_scatter(full, shard); });
    const double ar = time([&] { comm->all_reduce(full); });
    const double gb = double(n) * 4 / 1e9, f = double(W - 1) / W;
    if (world.rank() == 0)
      std::printf("%10.0f %14.3f %10.1f %10.1f %14.3f %10.1f %10.1f %14.3f %10.1f\n", double(bytes) / (1 << 20), ag,
                  gb / ag * 1e3, gb / ag * 1e3 * f, rs, gb / rs * 1e3, gb / rs * 1e3 * f, ar, gb / ar * 1e3 * 2 * f);
  }
  return 0;
}
