#include "cgrpo/comm/mpi_communicator.h"

#include <algorithm>
#include <climits>
#include <string>

namespace cgrpo {

void mpi_check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  CGRPO_FAIL(what, " failed: ", msg);
}

namespace {
#define CGRPO_MPI(call) mpi_check((call), #call)

MPI_Comm dup_comm(MPI_Comm c) {
  MPI_Comm d;
  CGRPO_MPI(MPI_Comm_dup(c, &d));
  return d;
}
int rank_of(MPI_Comm c) {
  int r = 0;
  MPI_Comm_rank(c, &r);
  return r;
}
int size_of(MPI_Comm c) {
  int w = 1;
  MPI_Comm_size(c, &w);
  return w;
}
// Messages are sent in chunks of at most 1 GiB so counts fit in an int.
constexpr int64_t kMaxMsgBytes = int64_t(1) << 30;
}  // namespace

int node_local_rank(MPI_Comm c) {
  MPI_Comm node;
  CGRPO_MPI(MPI_Comm_split_type(c, MPI_COMM_TYPE_SHARED, rank_of(c), MPI_INFO_NULL, &node));
  const int r = rank_of(node);
  MPI_Comm_free(&node);
  return r;
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm)
    : Communicator(rank_of(comm), size_of(comm), node_local_rank(comm)), comm_(dup_comm(comm)) {
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Comm_free(&comm_);
}

void MpiCommunicator::begin() {
  reqs_.clear();
  expect_.clear();
  peer_.clear();
}

void MpiCommunicator::post(bool is_send, void* p, int64_t bytes, int peer) {
  char* c = static_cast<char*>(p);
  // at least one message, empty if need be, so that every exchange is matched and its size checked (wait_all)
  for (int64_t off = 0, tag = 0; off == 0 || off < bytes; off += kMaxMsgBytes, ++tag) {
    const int len = static_cast<int>(std::min(kMaxMsgBytes, bytes - off));
    reqs_.emplace_back();
    expect_.push_back(is_send ? -1 : len);
    peer_.push_back(peer);
    if (is_send)
      mpi_check(MPI_Isend(c + off, len, MPI_BYTE, peer, static_cast<int>(tag), comm_, &reqs_.back()), "MPI_Isend");
    else
      mpi_check(MPI_Irecv(c + off, len, MPI_BYTE, peer, static_cast<int>(tag), comm_, &reqs_.back()), "MPI_Irecv");
  }
}

void MpiCommunicator::wait_all(const char* op) {
  stats_.resize(reqs_.size());
  int rc = MPI_Waitall(static_cast<int>(reqs_.size()), reqs_.data(), stats_.data());
  if (rc == MPI_ERR_IN_STATUS) {  // an error leaves the other requests pending: finish them, so none dangles
    rc = MPI_SUCCESS;
    for (size_t i = 0; i < reqs_.size(); ++i) {
      if (stats_[i].MPI_ERROR == MPI_ERR_PENDING) MPI_Wait(&reqs_[i], &stats_[i]);
      else if (stats_[i].MPI_ERROR != MPI_SUCCESS) rc = MPI_ERR_IN_STATUS;
    }
  }
  for (size_t i = 0; i < reqs_.size(); ++i) {
    if (expect_[i] < 0) continue;
    int err = MPI_SUCCESS;  // the error class of this request, when Waitall reports per-request errors
    if (rc == MPI_ERR_IN_STATUS && stats_[i].MPI_ERROR != MPI_SUCCESS) MPI_Error_class(stats_[i].MPI_ERROR, &err);
    if (err != MPI_SUCCESS && err != MPI_ERR_TRUNCATE) continue;  // reported by mpi_check below
    int got = 0;
    MPI_Get_count(&stats_[i], MPI_BYTE, &got);
    const std::string sent = err == MPI_ERR_TRUNCATE ? "more than" : std::to_string(got) + " bytes where";
    CGRPO_CHECK(err != MPI_ERR_TRUNCATE && got == expect_[i], "collective mismatch in ", op, ": rank ", peer_[i],
                " sent ", sent, " ", expect_[i], " bytes were expected",
                hint("the ranks called collectives in different orders or sizes (a rank skipped, added or "
                     "reordered a unit's gather or reduction): a bug, please report it with the rank logs"));
  }
  mpi_check(rc, op);
}

void MpiCommunicator::all_gather_bytes(const void* send, void* recv, int64_t n, size_t es) {
  const int W = world_size(), r = rank();
  const ShardRange mine = shard_range(n, W, r);
  begin();
  for (int k = 1; k < W; ++k) {
    const int to = (r + k) % W, from = (r - k + W) % W;
    const ShardRange theirs = shard_range(n, W, from);
    post(false, static_cast<char*>(recv) + theirs.offset * es, theirs.count * int64_t(es), from);
    post(true, const_cast<void*>(send), mine.count * int64_t(es), to);
  }
  char* dst = static_cast<char*>(recv) + mine.offset * es;
  if (dst != send) std::copy_n(static_cast<const char*>(send), mine.count * es, dst);
  wait_all("all_gather");
}

void MpiCommunicator::reduce_scatter_into(const void* send, void* recv, int64_t n, DType dtype, ReduceOp op) {
  const int W = world_size(), r = rank();
  const ShardRange mine = shard_range(n, W, r);
  const int64_t es = static_cast<int64_t>(dtype_size(dtype)), block_bytes = mine.count * es;
  staging_.resize(std::max<size_t>(staging_.size(), static_cast<size_t>(W * block_bytes)));
  const char* src = static_cast<const char*>(send);
  begin();
  for (int k = 1; k < W; ++k) {
    const int to = (r + k) % W, from = (r - k + W) % W;
    post(false, staging_.data() + from * block_bytes, block_bytes, from);
    const ShardRange theirs = shard_range(n, W, to);
    post(true, const_cast<char*>(src) + theirs.offset * es, theirs.count * es, to);
  }
  wait_all("reduce_scatter");
  std::vector<const void*> srcs(W);
  for (int q = 0; q < W; ++q) srcs[q] = q == r ? src + mine.offset * es : staging_.data() + q * block_bytes;
  reduce_rank_order(recv, srcs.data(), W, mine.count, dtype, op);
}

void MpiCommunicator::do_all_gather(const TensorView& send, const TensorView& recv) {
  all_gather_bytes(send.data, recv.data, recv.numel(), dtype_size(recv.dtype));
}

void MpiCommunicator::do_reduce_scatter(const TensorView& send, const TensorView& recv, ReduceOp op) {
  reduce_scatter_into(send.data, recv.data, send.numel(), send.dtype, op);
}

void MpiCommunicator::do_all_reduce(const TensorView& buf, ReduceOp op) {
  // reduce-scatter into this rank's block of buf (its own contribution is read before it is overwritten:
  // reduce_rank_order copies every source, and the sends complete in Waitall first), then all-gather.
  const int64_t n = buf.numel();
  const size_t es = dtype_size(buf.dtype);
  char* p = static_cast<char*>(buf.data);
  const ShardRange mine = shard_range(n, world_size(), rank());
  char* block = p + mine.offset * int64_t(es);
  scratch_.assign(block, block + mine.count * int64_t(es));  // no realloc once grown
  reduce_scatter_into(p, scratch_.data(), n, buf.dtype, op);
  std::copy(scratch_.begin(), scratch_.end(), block);
  all_gather_bytes(block, p, n, es);
}

void MpiCommunicator::do_broadcast(const TensorView& buf, int root) {
  char* p = static_cast<char*>(buf.data);
  const int64_t bytes = static_cast<int64_t>(buf.bytes());
  for (int64_t off = 0; off < bytes; off += kMaxMsgBytes)
    CGRPO_MPI(MPI_Bcast(p + off, static_cast<int>(std::min(kMaxMsgBytes, bytes - off)), MPI_BYTE, root, comm_));
}

void MpiCommunicator::do_barrier() { CGRPO_MPI(MPI_Barrier(comm_)); }

MpiSession::MpiSession(int* argc, char*** argv) {
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &world_);
  local_rank_ = node_local_rank(MPI_COMM_WORLD);
  set_process_context(rank_, world_);
}

MpiSession::~MpiSession() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

}  // namespace cgrpo
