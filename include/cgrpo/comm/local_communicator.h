// LocalCommunicator: W ranks as W threads of one process, for unit tests of sharded code without mpirun.
// Same semantics, reduction order (f32 and bf16: communicator.h) and byte accounting as MpiCommunicator.
#pragma once

#include <barrier>
#include <functional>
#include <memory>
#include <vector>

#include "cgrpo/comm/communicator.h"

namespace cgrpo {

class LocalGroup {
 public:
  explicit LocalGroup(int world_size);
  int world_size() const { return world_; }

 private:
  friend class LocalCommunicator;
  int world_;
  std::barrier<> barrier_;
  std::vector<void*> ptrs_;       // per rank: the buffer it published for the current collective
  std::vector<const void*> send_; // per rank: send buffer
};

class LocalCommunicator final : public Communicator {
 public:
  LocalCommunicator(std::shared_ptr<LocalGroup> group, int rank);
  const char* name() const override { return "local"; }

  // Runs fn(comm) on world_size threads, one LocalCommunicator each. An exception on any rank aborts
  // the process with its message (the other ranks would otherwise wait in a collective forever).
  static void run(int world_size, const std::function<void(Communicator&)>& fn);

 protected:
  void do_all_gather(const TensorView& send, const TensorView& recv) override;
  void do_reduce_scatter(const TensorView& send, const TensorView& recv, ReduceOp op) override;
  void do_all_reduce(const TensorView& buf, ReduceOp op) override;
  void do_broadcast(const TensorView& buf, int root) override;
  void do_barrier() override;

 private:
  std::shared_ptr<LocalGroup> g_;
  std::vector<char> scratch_;  // all_reduce: this rank's reduced block (bytes)
};

}  // namespace cgrpo
