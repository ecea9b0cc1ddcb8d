#include "cgrpo/comm/communicator.h"

#include <algorithm>

#include "cgrpo/core/timer.h"

namespace cgrpo {

ShardRange shard_range(int64_t numel, int world_size, int rank) {
  CGRPO_CHECK(world_size > 0 && rank >= 0 && rank < world_size, "bad rank ", rank, " of ", world_size);
  const int64_t block = (numel + world_size - 1) / world_size;
  const int64_t begin = std::min<int64_t>(numel, block * rank);
  const int64_t end = std::min<int64_t>(numel, begin + block);
  return {begin, end - begin};
}

const char* comm_op_name(CommOp op) {
  static const char* names[] = {"all_gather", "reduce_scatter", "all_reduce", "broadcast", "barrier"};
  return names[static_cast<int>(op)];
}

int64_t CommStats::bytes_sent() const {
  int64_t s = 0;
  for (const auto& o : op) s += o.bytes_sent;
  return s;
}
int64_t CommStats::bytes_recv() const {
  int64_t s = 0;
  for (const auto& o : op) s += o.bytes_recv;
  return s;
}
double CommStats::time_ms() const {
  double s = 0;
  for (const auto& o : op) s += o.time_ms;
  return s;
}

void Communicator::account(CommOp op, int64_t sent, int64_t recv, double ms) {
  CommOpStats& s = stats_.op[static_cast<int>(op)];
  ++s.calls;
  s.bytes_sent += sent;
  s.bytes_recv += recv;
  s.time_ms += ms;
}

void Communicator::all_gather(const TensorView& send, const TensorView& recv) {
  CGRPO_CHECK(send.contiguous() && recv.contiguous() && send.dtype == recv.dtype, "all_gather: send ", send.str(),
              " and recv ", recv.str(), " must be contiguous and of one dtype");
  const int64_t n = recv.numel(), mine = shard_range(n, world_, rank_).count;
  CGRPO_CHECK(send.numel() == mine, "all_gather: rank ", rank_, " sends ", send.numel(), " elements but owns ", mine,
              " of ", n, hint("size send as shard_range(recv.numel(), world, rank).count"));
  Timer t;
  if (world_ == 1)
    copy_local(recv.data, send.data, send.bytes());
  else
    do_all_gather(send, recv);
  const int64_t es = static_cast<int64_t>(dtype_size(send.dtype));
  account(CommOp::AllGather, (world_ - 1) * mine * es, (n - mine) * es, t.elapsed_ms());
}

namespace {
void check_reduce_dtype(const TensorView& t, const char* op, const char* what) {
  CGRPO_CHECK(t.dtype == DType::F32 || t.dtype == DType::BF16, op, ": ", what, " ", t.str(),
              " must be f32 or bf16 (the reduction dtypes)", hint("cast the values to f32 or bf16 first"));
}
}  // namespace

void Communicator::reduce_scatter(const TensorView& send, const TensorView& recv, ReduceOp op) {
  CGRPO_CHECK(send.contiguous() && recv.contiguous() && send.dtype == recv.dtype, "reduce_scatter: send ", send.str(),
              " and recv ", recv.str(), " must be contiguous and of one dtype");
  check_reduce_dtype(send, "reduce_scatter", "send");
  const int64_t n = send.numel(), mine = shard_range(n, world_, rank_).count;
  CGRPO_CHECK(recv.numel() == mine, "reduce_scatter: rank ", rank_, " receives into ", recv.numel(),
              " elements but owns ", mine, " of ", n);
  Timer t;
  if (world_ == 1)
    copy_local(recv.data, send.data, send.bytes());
  else
    do_reduce_scatter(send, recv, op);
  const int64_t es = static_cast<int64_t>(dtype_size(send.dtype));
  account(CommOp::ReduceScatter, (n - mine) * es, (world_ - 1) * mine * es, t.elapsed_ms());
}

void Communicator::all_reduce(const TensorView& buf, ReduceOp op) {
  CGRPO_CHECK(buf.contiguous(), "all_reduce: ", buf.str(), " must be contiguous");
  check_reduce_dtype(buf, "all_reduce", "buf");
  const int64_t n = buf.numel(), mine = shard_range(n, world_, rank_).count;
  Timer t;
  if (world_ > 1) do_all_reduce(buf, op);
  const int64_t es = static_cast<int64_t>(dtype_size(buf.dtype));
  const int64_t one_way = (n - mine + (world_ - 1) * mine) * es;  // reduce-scatter leg + all-gather leg
  account(CommOp::AllReduce, world_ > 1 ? one_way : 0, world_ > 1 ? one_way : 0, t.elapsed_ms());
}

void Communicator::broadcast(const TensorView& buf, int root) {
  CGRPO_CHECK(buf.contiguous(), "broadcast: ", buf.str(), " must be contiguous");
  CGRPO_CHECK(root >= 0 && root < world_, "broadcast from rank ", root, " of ", world_);
  Timer t;
  if (world_ > 1) do_broadcast(buf, root);
  // counted as its logical volume: the root sends N, every other rank receives N
  const int64_t b = world_ > 1 ? static_cast<int64_t>(buf.bytes()) : 0;
  account(CommOp::Broadcast, rank_ == root ? b : 0, rank_ == root ? 0 : b, t.elapsed_ms());
}

void Communicator::barrier() {
  Timer t;
  if (world_ > 1) do_barrier();
  account(CommOp::Barrier, 0, 0, t.elapsed_ms());
}

void Communicator::copy_local(void* dst, const void* src, size_t bytes) {
  if (dst != src && bytes) std::copy_n(static_cast<const char*>(src), bytes, static_cast<char*>(dst));
}

namespace {
inline float widen(float x) { return x; }
inline float widen(uint16_t h) { return bf16_to_f32(h); }
inline void store(float* d, float v) { *d = v; }
inline void store(uint16_t* d, float v) { *d = f32_to_bf16(v); }

// fp32 accumulation in source order over blocks of a stack array, one store (bf16: one rounding) per element.
template <class T>
void reduce_blocks(T* dst, const void* const* srcs, int count, int64_t n, ReduceOp op, float world) {
  constexpr int64_t kBlock = 512;
  float acc[kBlock];
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t m = std::min(kBlock, n - b);
    const T* first = static_cast<const T*>(srcs[0]) + b;
    for (int64_t i = 0; i < m; ++i) acc[i] = widen(first[i]);
    for (int q = 1; q < count; ++q) {
      const T* s = static_cast<const T*>(srcs[q]) + b;
      if (op == ReduceOp::Max)
        for (int64_t i = 0; i < m; ++i) acc[i] = std::max(acc[i], widen(s[i]));
      else
        for (int64_t i = 0; i < m; ++i) acc[i] += widen(s[i]);
    }
    if (op == ReduceOp::Avg)
      for (int64_t i = 0; i < m; ++i) acc[i] /= world;
    for (int64_t i = 0; i < m; ++i) store(dst + b + i, acc[i]);
  }
}
}  // namespace

void Communicator::reduce_rank_order(void* dst, const void* const* srcs, int count, int64_t n, DType dtype,
                                     ReduceOp op) const {
  const float w = static_cast<float>(world_);
  if (dtype == DType::F32)
    reduce_blocks(static_cast<float*>(dst), srcs, count, n, op, w);
  else
    reduce_blocks(static_cast<uint16_t*>(dst), srcs, count, n, op, w);
}

}  // namespace cgrpo
