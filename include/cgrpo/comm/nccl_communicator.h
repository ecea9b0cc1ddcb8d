// NcclCommunicator: the Communicator collectives on device buffers over NCCL, bootstrapped through MPI.
//
// - Bootstrap: rank 0's ncclUniqueId is broadcast with MPI_Bcast over a duplicate of the MPI communicator,
//   then ncclCommInitRank. The device is local_rank % device_count, local_rank being the rank within
//   MPI_COMM_TYPE_SHARED (the node); the same rule make_backend("cuda", local_rank) uses.
// - Buffers: every view must be in device memory (Device::CUDA) on this communicator's device. Any dtype
//   NCCL has (f32, bf16, f16) for all_gather and broadcast; reductions are f32 or bf16 (the base class checks).
// - all_gather follows shard_range: when W | N the blocks are equal and it is one ncclAllGather; otherwise
//   (the last blocks short or empty) it is W ncclBroadcast calls in one ncclGroupStart/End, root r sending
//   its shard_range(N, W, r) straight into place in recv, so no padded staging buffer is needed.
// - reduce_scatter: ncclReduceScatter when W | N, else W grouped ncclReduce calls (root r receives block r).
//   Avg is ncclAvg, Max ncclMax. all_reduce: ncclAllReduce in place. broadcast: ncclBroadcast in place (bytes).
//   barrier: a one-element ncclAllReduce. Reduction order is NCCL's (ring/tree), not rank order as in
//   MpiCommunicator: results agree with MPI within fp32 reduction-order tolerance and are identical on
//   every rank, but are not bit-identical to the CPU path. bf16 reductions are ncclBfloat16: NCCL rounds to bf16
//   inside its ring/tree (per step, in its order) rather than accumulating in fp32 and rounding once as the host
//   communicators do (communicator.h), so they agree with the host rule to about one bf16 ulp per addition
//   (exactly when every partial sum is bf16-representable) and are identical on every rank.
// - Streams: the collectives run on this communicator's own stream. Each call first waits for the compute
//   stream given to set_compute_stream() (an event, no host block), or, if none was given, for the whole
//   device (cudaDeviceSynchronize); and it synchronises its own stream before returning, so the result is
//   ready when the call returns. start_all_gather / start_reduce_scatter return right after enqueueing, with a
//   ticket for an event recorded on the collective stream; wait(ticket) makes the compute stream wait for that
//   event (cudaStreamWaitEvent: no host block), so compute queued after wait() sees the result, and buffers
//   freed stream-ordered on the compute stream after wait() are not freed under the collective.
// - Byte accounting is the base class's, from the views, so it matches MPI and LocalCommunicator exactly.
// This header has no CUDA or NCCL includes; only src/comm/cuda_nccl_communicator.cpp defines the class.
#pragma once

#include <mpi.h>

#include <memory>

#include "cgrpo/comm/communicator.h"

namespace cgrpo {

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(MPI_Comm comm = MPI_COMM_WORLD);  // collective over comm; duplicates it
  ~NcclCommunicator() override;
  const char* name() const override { return "nccl"; }
  int cuda_device() const;
  void* stream() const;  // cudaStream_t of the collectives
  // Collectives wait for work queued on this stream (cudaStream_t, e.g. CudaContext::stream()) first.
  void set_compute_stream(void* stream);
  Ticket start_all_gather(const TensorView& send, const TensorView& recv) override;
  Ticket start_reduce_scatter(const TensorView& send, const TensorView& recv, ReduceOp op = ReduceOp::Sum) override;
  void wait(Ticket t) override;
  bool overlaps() const override { return true; }

 protected:
  void do_all_gather(const TensorView& send, const TensorView& recv) override;
  void do_reduce_scatter(const TensorView& send, const TensorView& recv, ReduceOp op) override;
  void do_all_reduce(const TensorView& buf, ReduceOp op) override;
  void do_broadcast(const TensorView& buf, int root) override;
  void do_barrier() override;
  void copy_local(void* dst, const void* src, size_t bytes) override;

 private:
  struct Impl;
  struct Boot;
  static std::unique_ptr<Boot> boot(MPI_Comm comm);  // dup, rank, world, node-local rank
  explicit NcclCommunicator(std::unique_ptr<Boot> boot);
  void begin();  // wait for the producer of the buffers
  void end();    // synchronise the collective stream (not while deferring: start_* record an event instead)
  Ticket record();  // an event on the collective stream after the work queued so far
  template <class Fn>
  Ticket deferred(const Fn& collective);  // start_*: the collective without the stream sync, then record()
  std::unique_ptr<Impl> impl_;
};

}  // namespace cgrpo
