#include "cgrpo/comm/mpi_communicator.h"

#include <algorithm>
#include <climits>

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

// Post a nonblocking send/recv of `bytes` to/from `peer`, chunked to kMaxMsgBytes.
static void post(std::vector<MPI_Request>& reqs, bool is_send, void* p, int64_t bytes, int peer, MPI_Comm comm) {
  char* c = static_cast<char*>(p);
  for (int64_t off = 0, tag = 0; off < bytes; off += kMaxMsgBytes, ++tag) {
    const int len = static_cast<int>(std::min(kMaxMsgBytes, bytes - off));
    reqs.emplace_back();
    if (is_send)
      mpi_check(MPI_Isend(c + off, len, MPI_BYTE, peer, static_cast<int>(tag), comm, &reqs.back()), "MPI_Isend");
    else
      mpi_check(MPI_Irecv(c + off, len, MPI_BYTE, peer, static_cast<int>(tag), comm, &reqs.back()), "MPI_Irecv");
  }
}

void MpiCommunicator::all_gather_bytes(const void* send, void* recv, int64_t n, size_t es) {
  const int W = world_size(), r = rank();
  const ShardRange mine = shard_range(n, W, r);
  reqs_.clear();
  for (int k = 1; k < W; ++k) {
    const int to = (r + k) % W, from = (r - k + W) % W;
    const ShardRange theirs = shard_range(n, W, from);
    post(reqs_, false, static_cast<char*>(recv) + theirs.offset * es, theirs.count * int64_t(es), from, comm_);
    post(reqs_, true, const_cast<void*>(send), mine.count * int64_t(es), to, comm_);
  }
  char* dst = static_cast<char*>(recv) + mine.offset * es;
  if (dst != send) std::copy_n(static_cast<const char*>(send), mine.count * es, dst);
  CGRPO_MPI(MPI_Waitall(static_cast<int>(reqs_.size()), reqs_.data(), MPI_STATUSES_IGNORE));
}

void MpiCommunicator::reduce_scatter_into(const void* send, void* recv, int64_t n, DType dtype, ReduceOp op) {
  const int W = world_size(), r = rank();
  const ShardRange mine = shard_range(n, W, r);
  const int64_t es = static_cast<int64_t>(dtype_size(dtype)), block_bytes = mine.count * es;
  staging_.resize(std::max<size_t>(staging_.size(), static_cast<size_t>(W * block_bytes)));
  const char* src = static_cast<const char*>(send);
  reqs_.clear();
  for (int k = 1; k < W; ++k) {
    const int to = (r + k) % W, from = (r - k + W) % W;
    post(reqs_, false, staging_.data() + from * block_bytes, block_bytes, from, comm_);
    const ShardRange theirs = shard_range(n, W, to);
    post(reqs_, true, const_cast<char*>(src) + theirs.offset * es, theirs.count * es, to, comm_);
  }
  CGRPO_MPI(MPI_Waitall(static_cast<int>(reqs_.size()), reqs_.data(), MPI_STATUSES_IGNORE));
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
