// Communicator: the collectives ZeRO/FSDP needs, with element counts taken from the views.
//
// Sharding convention (used by reduce_scatter, all_gather and the shard module): a flat buffer of N
// elements is cut into W contiguous blocks of ceil(N/W); rank r owns shard_range(N, W, r). When W divides N
// every block is N/W; otherwise the last blocks are short or empty. Any N works at any W.
//
// Traffic accounting (ARCHITECTURE.md §3.2): every call adds the bytes this rank sends and receives under
// the direct (pairwise) algorithm that MpiCommunicator runs, computed here from the views, so MPI, NCCL and
// the threaded LocalCommunicator report identical numbers. With W | N:
//   reduce_scatter, all_gather: (W-1)/W * N elements each way;  all_reduce = both = 2 (W-1)/W * N.
// Element sizes are the views' dtype sizes, so a bf16 reduction counts (and moves) half the bytes of an f32 one.
// Reductions are in rank order 0..W-1 on every rank, so results do not depend on which rank computes them.
//
// Reduction dtypes (reduce_scatter, all_reduce): f32 or bf16, send and recv of one dtype.
//   f32:  r = ((x_0 + x_1) + ...) + x_{W-1} in fp32; Avg then divides by W in fp32; Max is the fp32 maximum.
//   bf16: the host communicators (mpi, local) widen every rank's bf16 input exactly to fp32, reduce it by the f32
//         rule above (same order) and round the result once to bf16 (nearest even):
//           bf16 op(x_0..x_{W-1}) = round_bf16(f32 op(widen(x_0), ..., widen(x_{W-1}))).
//         So a bf16 sum is exact whenever the fp32 sum is bf16-representable, and differs from rounding after
//         every pairwise addition (1 + 2^-8 + 2^-8 is 1 + 2^-7 here, 1 pairwise: each step is a tie to even).
//         NCCL (ncclBfloat16) reduces in its ring/tree order and rounds inside the ring, so its bf16 results
//         agree with this rule only to about one bf16 ulp per addition (nccl_communicator.h).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "cgrpo/core/tensor_view.h"

namespace cgrpo {

enum class ReduceOp { Sum, Avg, Max };

struct ShardRange {
  int64_t offset, count;
};
ShardRange shard_range(int64_t numel, int world_size, int rank);

enum class CommOp { AllGather = 0, ReduceScatter, AllReduce, Broadcast, Barrier, kCount };
const char* comm_op_name(CommOp op);

struct CommOpStats {
  int64_t calls = 0;
  int64_t bytes_sent = 0;
  int64_t bytes_recv = 0;
  double time_ms = 0.0;
};

struct CommStats {
  std::array<CommOpStats, static_cast<int>(CommOp::kCount)> op{};
  const CommOpStats& operator[](CommOp o) const { return op[static_cast<int>(o)]; }
  int64_t bytes_sent() const;
  int64_t bytes_recv() const;
  double time_ms() const;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual const char* name() const = 0;
  int rank() const { return rank_; }
  int world_size() const { return world_; }
  int local_rank() const { return local_rank_; }

  // recv [N] <- concatenation of every rank's send [shard_range(N).count]
  void all_gather(const TensorView& send, const TensorView& recv);
  // recv [shard_range(N).count] <- op over ranks of send[shard_range(N)], send [N]; f32 or bf16 (see above)
  void reduce_scatter(const TensorView& send, const TensorView& recv, ReduceOp op = ReduceOp::Sum);
  // buf [N] <- op over ranks of buf, in place; f32 or bf16 (see above)
  void all_reduce(const TensorView& buf, ReduceOp op = ReduceOp::Sum);
  void broadcast(const TensorView& buf, int root);
  void barrier();

  // Started collectives, completed by wait(ticket) (ZeRO overlap: a unit's reduce-scatter runs during the next
  // unit's backward, ZeRO-3 gathers the next unit during this one's compute). The buffers must stay untouched
  // until wait() returns. A device communicator runs them on its own stream and wait() orders the compute stream
  // after them without blocking the host; the base class runs them at start and wait() does nothing.
  using Ticket = uint64_t;
  virtual Ticket start_all_gather(const TensorView& send, const TensorView& recv) {
    all_gather(send, recv);
    return 0;
  }
  virtual Ticket start_reduce_scatter(const TensorView& send, const TensorView& recv, ReduceOp op = ReduceOp::Sum) {
    reduce_scatter(send, recv, op);
    return 0;
  }
  virtual void wait(Ticket) {}
  // True when start_* returns before the collective finishes (so overlapping is worth its extra memory).
  virtual bool overlaps() const { return false; }

  const CommStats& stats() const { return stats_; }
  void reset_stats() { stats_ = CommStats{}; }

 protected:
  Communicator(int rank, int world, int local_rank) : rank_(rank), world_(world), local_rank_(local_rank) {}
  virtual void do_all_gather(const TensorView& send, const TensorView& recv) = 0;
  virtual void do_reduce_scatter(const TensorView& send, const TensorView& recv, ReduceOp op) = 0;
  virtual void do_all_reduce(const TensorView& buf, ReduceOp op) = 0;
  virtual void do_broadcast(const TensorView& buf, int root) = 0;
  virtual void do_barrier() = 0;
  // world_size 1: all_gather / reduce_scatter are a local copy; device communicators override this.
  virtual void copy_local(void* dst, const void* src, size_t bytes);

  // dst [n] <- op over `count` sources [n] of `dtype` (f32 | bf16), in that order, by the rule above (bf16:
  // fp32 accumulation, one rounding); Avg divides by the world size. dst may alias a source element for element.
  void reduce_rank_order(void* dst, const void* const* srcs, int count, int64_t n, DType dtype, ReduceOp op) const;

 private:
  void account(CommOp op, int64_t sent_bytes, int64_t recv_bytes, double ms);
  int rank_, world_, local_rank_;
  CommStats stats_;
};

}  // namespace cgrpo
