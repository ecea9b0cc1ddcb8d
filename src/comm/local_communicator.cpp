#include "cgrpo/comm/local_communicator.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <thread>

namespace cgrpo {

LocalGroup::LocalGroup(int world_size)
    : world_(world_size), barrier_(world_size), ptrs_(world_size, nullptr), send_(world_size, nullptr) {}

LocalCommunicator::LocalCommunicator(std::shared_ptr<LocalGroup> group, int rank)
    : Communicator(rank, group->world_size(), rank), g_(std::move(group)) {}

void LocalCommunicator::run(int world_size, const std::function<void(Communicator&)>& fn) {
  auto group = std::make_shared<LocalGroup>(world_size);
  std::vector<std::thread> threads;
  for (int r = 0; r < world_size; ++r)
    threads.emplace_back([&, r] {
      LocalCommunicator comm(group, r);
      try {
        fn(comm);
      } catch (const std::exception& e) {
        // A failed rank can no longer take part in collectives and the others would wait for it forever:
        // end the process loudly, as MPI_Abort would.
        std::fprintf(stderr, "LocalCommunicator rank %d/%d failed: %s\n", r, world_size, e.what());
        std::abort();
      }
    });
  for (auto& t : threads) t.join();
}

void LocalCommunicator::do_all_gather(const TensorView& send, const TensorView& recv) {
  const int W = world_size();
  const size_t es = dtype_size(recv.dtype);
  g_->send_[rank()] = send.data;
  g_->barrier_.arrive_and_wait();
  const int64_t n = recv.numel();
  for (int q = 0; q < W; ++q) {
    const ShardRange s = shard_range(n, W, q);
    std::copy_n(static_cast<const char*>(g_->send_[q]), s.count * es, static_cast<char*>(recv.data) + s.offset * es);
  }
  g_->barrier_.arrive_and_wait();
}

// srcs[q] = rank q's published buffer bufs[q] at element `offset`, elements of `es` bytes
static std::vector<const void*> rank_blocks(const void* const* bufs, int world, int64_t offset, size_t es) {
  std::vector<const void*> srcs(size_t(world), nullptr);
  for (int q = 0; q < world; ++q) srcs[size_t(q)] = static_cast<const char*>(bufs[q]) + offset * int64_t(es);
  return srcs;
}

void LocalCommunicator::do_reduce_scatter(const TensorView& send, const TensorView& recv, ReduceOp op) {
  g_->send_[rank()] = send.data;
  g_->barrier_.arrive_and_wait();
  const ShardRange mine = shard_range(send.numel(), world_size(), rank());
  const std::vector<const void*> srcs = rank_blocks(g_->send_.data(), world_size(), mine.offset, dtype_size(send.dtype));
  reduce_rank_order(recv.data, srcs.data(), world_size(), mine.count, send.dtype, op);
  g_->barrier_.arrive_and_wait();
}

void LocalCommunicator::do_all_reduce(const TensorView& buf, ReduceOp op) {
  g_->ptrs_[rank()] = buf.data;
  g_->barrier_.arrive_and_wait();
  const ShardRange mine = shard_range(buf.numel(), world_size(), rank());
  const size_t es = dtype_size(buf.dtype), block_bytes = size_t(mine.count) * es;
  const std::vector<const void*> srcs = rank_blocks(g_->ptrs_.data(), world_size(), mine.offset, es);
  scratch_.resize(block_bytes);
  reduce_rank_order(scratch_.data(), srcs.data(), world_size(), mine.count, buf.dtype, op);
  g_->barrier_.arrive_and_wait();  // everyone has read every input block
  for (int q = 0; q < world_size(); ++q)
    std::copy_n(scratch_.data(), block_bytes, static_cast<char*>(g_->ptrs_[q]) + mine.offset * int64_t(es));
  g_->barrier_.arrive_and_wait();
}

void LocalCommunicator::do_broadcast(const TensorView& buf, int root) {
  g_->ptrs_[rank()] = buf.data;
  g_->barrier_.arrive_and_wait();
  if (rank() != root) std::copy_n(static_cast<const char*>(g_->ptrs_[root]), buf.bytes(), static_cast<char*>(buf.data));
  g_->barrier_.arrive_and_wait();
}

void LocalCommunicator::do_barrier() { g_->barrier_.arrive_and_wait(); }

}  // namespace cgrpo
