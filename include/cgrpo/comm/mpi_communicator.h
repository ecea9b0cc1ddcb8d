// MpiCommunicator: collectives over MPI point-to-point (direct pairwise exchange), so the reduction order
// is rank order on every rank and the counted bytes are the bytes actually moved. f32 and bf16 reductions
// exchange the elements as they are (2 bytes each for bf16) and reduce by communicator.h's rule: bf16 inputs are
// widened and accumulated in fp32 in rank order, and the result is rounded once.
// (Open MPI 4.1's MPI_Reduce_scatter_block is ~2x slower than a plain exchange here: spec/stack.md §3.)
#pragma once

#include <mpi.h>

#include <vector>

#include "cgrpo/comm/communicator.h"

namespace cgrpo {

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm comm = MPI_COMM_WORLD);  // duplicates comm
  ~MpiCommunicator() override;
  const char* name() const override { return "mpi"; }
  MPI_Comm comm() const { return comm_; }

 protected:
  void do_all_gather(const TensorView& send, const TensorView& recv) override;
  void do_reduce_scatter(const TensorView& send, const TensorView& recv, ReduceOp op) override;
  void do_all_reduce(const TensorView& buf, ReduceOp op) override;
  void do_broadcast(const TensorView& buf, int root) override;
  void do_barrier() override;

 private:
  void reduce_scatter_into(const void* send, void* recv, int64_t n, DType dtype, ReduceOp op);
  void all_gather_bytes(const void* send, void* recv, int64_t n, size_t elem_bytes);
  void begin();  // a collective's exchange starts: no requests posted
  // Post a nonblocking send or receive of `bytes` with `peer` (chunked to 1 GiB messages).
  void post(bool is_send, void* p, int64_t bytes, int peer);
  // Wait for every posted request. A receive that got other than the bytes it expected means the ranks are in
  // different collectives (called in another order or with other sizes): fatal, naming the peer and the sizes,
  // instead of MPI's bare MPI_ERR_TRUNCATE or silently mixed data.
  void wait_all(const char* op);
  MPI_Comm comm_;
  std::vector<char> staging_;  // bytes of W shard blocks (the peers' blocks land in theirs), grown once
  std::vector<char> scratch_;  // all_reduce: this rank's reduced block (bytes)
  std::vector<MPI_Request> reqs_;
  std::vector<int64_t> expect_;   // per request: the bytes a receive expects, -1 for a send
  std::vector<int> peer_;         // per request: the other rank
  std::vector<MPI_Status> stats_;
};

// Fatal with MPI's error string when rc is not MPI_SUCCESS (`what`: the call).
void mpi_check(int rc, const char* what);
// This process's rank among the ranks of comm on its node (MPI_COMM_TYPE_SHARED): picks the GPU.
int node_local_rank(MPI_Comm comm);

// RAII MPI_Init_thread / MPI_Finalize; sets the rank context that fatal() prints.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  int rank() const { return rank_; }
  int world_size() const { return world_; }
  int local_rank() const { return local_rank_; }  // rank within the node (picks the GPU)

 private:
  int rank_ = 0, world_ = 1, local_rank_ = 0;
};

}  // namespace cgrpo
