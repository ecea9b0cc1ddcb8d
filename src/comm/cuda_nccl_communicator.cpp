// NcclCommunicator (comm/nccl_communicator.h): NCCL collectives on device buffers, bootstrapped over MPI.
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>
#include <map>
#include <vector>

#include "../backend/cuda_check.h"
#include "cgrpo/comm/mpi_communicator.h"  // mpi_check, node_local_rank
#include "cgrpo/comm/nccl_communicator.h"

namespace cgrpo {

namespace {
ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::F32: return ncclFloat32;
    case DType::BF16: return ncclBfloat16;
    case DType::F16: return ncclFloat16;
  }
  return ncclFloat32;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Avg: return ncclAvg;
    case ReduceOp::Max: return ncclMax;
  }
  return ncclSum;
}

void check_device(const TensorView& t, const char* op) {
  CGRPO_CHECK(t.device == Device::CUDA, "NcclCommunicator::", op, ": ", t.str(), " is in ", device_name(t.device),
              " memory", hint("pass device buffers, or use the mpi communicator for host buffers"));
}
}  // namespace

struct NcclCommunicator::Boot {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0, world = 1, local_rank = 0;
};

struct NcclCommunicator::Impl {
  MPI_Comm comm = MPI_COMM_NULL;
  int device = 0;
  ncclComm_t nccl = nullptr;
  cudaStream_t stream = nullptr;
  cudaStream_t compute = nullptr;  // producer stream to wait for; nullptr = whole device
  cudaEvent_t ready = nullptr;
  int* barrier_buf = nullptr;  // one device int for barrier()
  bool deferring = false;      // inside start_*: end() leaves the stream running
  Ticket next = 1;
  std::map<Ticket, cudaEvent_t> pending;  // started collectives not yet waited for
  std::vector<cudaEvent_t> spare;         // recycled events
};

NcclCommunicator::NcclCommunicator(MPI_Comm comm) : NcclCommunicator(boot(comm)) {}

std::unique_ptr<NcclCommunicator::Boot> NcclCommunicator::boot(MPI_Comm comm) {
  auto b = std::make_unique<NcclCommunicator::Boot>();
  mpi_check(MPI_Comm_dup(comm, &b->comm), "MPI_Comm_dup");
  MPI_Comm_set_errhandler(b->comm, MPI_ERRORS_RETURN);
  mpi_check(MPI_Comm_rank(b->comm, &b->rank), "MPI_Comm_rank");
  mpi_check(MPI_Comm_size(b->comm, &b->world), "MPI_Comm_size");
  b->local_rank = node_local_rank(b->comm);
  return b;
}

NcclCommunicator::NcclCommunicator(std::unique_ptr<Boot> boot)
    : Communicator(boot->rank, boot->world, boot->local_rank), impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.comm = boot->comm;
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  CGRPO_CHECK(e == cudaSuccess && devices > 0, "NCCL communicator: no usable CUDA device on this node (",
              e == cudaSuccess ? "0 devices" : cudaGetErrorString(e), ")",
              hint("run on a GPU node or set the communicator to mpi"));
  m.device = local_rank() % devices;
  CGRPO_CUDA(cudaSetDevice(m.device));
  CGRPO_CUDA(cudaStreamCreateWithFlags(&m.stream, cudaStreamNonBlocking));
  CGRPO_CUDA(cudaEventCreateWithFlags(&m.ready, cudaEventDisableTiming));
  CGRPO_CUDA(cudaMalloc(&m.barrier_buf, sizeof(int)));
  CGRPO_CUDA(cudaMemset(m.barrier_buf, 0, sizeof(int)));
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  if (rank() == 0) CGRPO_NCCL(ncclGetUniqueId(&id));
  mpi_check(MPI_Bcast(&id, static_cast<int>(sizeof(id)), MPI_BYTE, 0, m.comm), "MPI_Bcast(ncclUniqueId)");
  CGRPO_NCCL(ncclCommInitRank(&m.nccl, world_size(), id, rank()));
}

NcclCommunicator::~NcclCommunicator() {
  if (!impl_) return;
  Impl& m = *impl_;
  if (m.stream) cudaStreamSynchronize(m.stream);
  for (auto& [t, e] : m.pending) cudaEventDestroy(e);
  for (cudaEvent_t e : m.spare) cudaEventDestroy(e);
  if (m.nccl) ncclCommDestroy(m.nccl);
  if (m.barrier_buf) cudaFree(m.barrier_buf);
  if (m.ready) cudaEventDestroy(m.ready);
  if (m.stream) cudaStreamDestroy(m.stream);
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && m.comm != MPI_COMM_NULL) MPI_Comm_free(&m.comm);
}

int NcclCommunicator::cuda_device() const { return impl_->device; }
void* NcclCommunicator::stream() const { return impl_->stream; }
void NcclCommunicator::set_compute_stream(void* stream) { impl_->compute = static_cast<cudaStream_t>(stream); }

void NcclCommunicator::begin() {
  Impl& m = *impl_;
  CGRPO_CUDA(cudaSetDevice(m.device));
  if (m.compute) {
    CGRPO_CUDA(cudaEventRecord(m.ready, m.compute));
    CGRPO_CUDA(cudaStreamWaitEvent(m.stream, m.ready, 0));
  } else {
    CGRPO_CUDA(cudaDeviceSynchronize());
  }
}

void NcclCommunicator::end() {
  if (!impl_->deferring) CGRPO_CUDA(cudaStreamSynchronize(impl_->stream));
}

Communicator::Ticket NcclCommunicator::record() {
  Impl& m = *impl_;
  cudaEvent_t e = nullptr;
  if (m.spare.empty()) {
    CGRPO_CUDA(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  } else {
    e = m.spare.back();
    m.spare.pop_back();
  }
  CGRPO_CUDA(cudaEventRecord(e, m.stream));
  m.pending[m.next] = e;
  return m.next++;
}

// Runs `collective` with end() leaving the stream running, then records its completion event.
template <class Fn>
Communicator::Ticket NcclCommunicator::deferred(const Fn& collective) {
  impl_->deferring = true;
  try {
    collective();
  } catch (...) {
    impl_->deferring = false;
    throw;
  }
  impl_->deferring = false;
  return record();
}

Communicator::Ticket NcclCommunicator::start_all_gather(const TensorView& send, const TensorView& recv) {
  return deferred([&] { all_gather(send, recv); });
}

Communicator::Ticket NcclCommunicator::start_reduce_scatter(const TensorView& send, const TensorView& recv,
                                                            ReduceOp op) {
  return deferred([&] { reduce_scatter(send, recv, op); });
}

void NcclCommunicator::wait(Ticket t) {
  Impl& m = *impl_;
  auto it = m.pending.find(t);
  CGRPO_CHECK(it != m.pending.end(), "NcclCommunicator::wait: unknown or already completed ticket ", t);
  if (m.compute)
    CGRPO_CUDA(cudaStreamWaitEvent(m.compute, it->second, 0));  // compute continues after the collective
  else
    CGRPO_CUDA(cudaEventSynchronize(it->second));
  m.spare.push_back(it->second);
  m.pending.erase(it);
}

void NcclCommunicator::copy_local(void* dst, const void* src, size_t bytes) {
  if (dst == src || bytes == 0) return;
  begin();
  CGRPO_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, impl_->stream));
  end();
}

void NcclCommunicator::do_all_gather(const TensorView& send, const TensorView& recv) {
  check_device(send, "all_gather");
  check_device(recv, "all_gather");
  Impl& m = *impl_;
  const int W = world_size();
  const int64_t n = recv.numel();
  const ncclDataType_t t = nccl_type(recv.dtype);
  const size_t es = dtype_size(recv.dtype);
  begin();
  if (n % W == 0) {
    CGRPO_NCCL(ncclAllGather(send.data, recv.data, static_cast<size_t>(n / W), t, m.nccl, m.stream));
  } else {
    // uneven shard_range blocks: root r broadcasts its block into place; all ranks agree on the counts
    CGRPO_NCCL(ncclGroupStart());
    for (int r = 0; r < W; ++r) {
      const ShardRange sr = shard_range(n, W, r);
      if (sr.count == 0) continue;
      char* dst = static_cast<char*>(recv.data) + sr.offset * es;
      CGRPO_NCCL(ncclBroadcast(r == rank() ? send.data : dst, dst, static_cast<size_t>(sr.count), t, r, m.nccl,
                               m.stream));
    }
    CGRPO_NCCL(ncclGroupEnd());
  }
  end();
}

void NcclCommunicator::do_reduce_scatter(const TensorView& send, const TensorView& recv, ReduceOp op) {
  check_device(send, "reduce_scatter");
  check_device(recv, "reduce_scatter");
  Impl& m = *impl_;
  const int W = world_size();
  const int64_t n = send.numel();
  const ncclDataType_t t = nccl_type(send.dtype);  // f32 or bf16 (the base class checks)
  const size_t es = dtype_size(send.dtype);
  begin();
  if (n % W == 0) {
    CGRPO_NCCL(ncclReduceScatter(send.data, recv.data, static_cast<size_t>(n / W), t, nccl_op(op), m.nccl, m.stream));
  } else {
    CGRPO_NCCL(ncclGroupStart());
    for (int r = 0; r < W; ++r) {
      const ShardRange sr = shard_range(n, W, r);
      if (sr.count == 0) continue;
      const char* src = static_cast<const char*>(send.data) + sr.offset * es;
      // recvbuff is only used on the root; other ranks pass their own source (ignored by NCCL)
      void* dst = r == rank() ? recv.data : const_cast<char*>(src);
      CGRPO_NCCL(ncclReduce(src, dst, static_cast<size_t>(sr.count), t, nccl_op(op), r, m.nccl, m.stream));
    }
    CGRPO_NCCL(ncclGroupEnd());
  }
  end();
}

void NcclCommunicator::do_all_reduce(const TensorView& buf, ReduceOp op) {
  check_device(buf, "all_reduce");
  Impl& m = *impl_;
  begin();
  CGRPO_NCCL(ncclAllReduce(buf.data, buf.data, static_cast<size_t>(buf.numel()), nccl_type(buf.dtype), nccl_op(op),
                           m.nccl, m.stream));
  end();
}

void NcclCommunicator::do_broadcast(const TensorView& buf, int root) {
  check_device(buf, "broadcast");
  Impl& m = *impl_;
  begin();
  CGRPO_NCCL(ncclBroadcast(buf.data, buf.data, buf.bytes(), ncclUint8, root, m.nccl, m.stream));
  end();
}

void NcclCommunicator::do_barrier() {
  Impl& m = *impl_;
  begin();
  CGRPO_NCCL(ncclAllReduce(m.barrier_buf, m.barrier_buf, 1, ncclInt32, ncclSum, m.nccl, m.stream));
  end();
}

}  // namespace cgrpo
