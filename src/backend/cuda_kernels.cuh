// Device helpers shared by the CudaBackend op files (src/backend/cuda_ops_*.cu): launch checks, the
// device-side error record, deterministic block reductions, the activation element types (fp32 or bf16) and
// their 4-element vector loads, and the workspace carver.
// Included only by .cu files.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "cgrpo/backend/backend.h"
#include "cgrpo/backend/kernel_math.h"
#include "cuda_check.h"

namespace cgrpo::cuda {

inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

// Every kernel launch is followed by check_launch (configuration errors surface here, with rank context;
// faults inside a kernel surface at the next synchronising call).
inline void check_launch(const char* kernel) {
  const cudaError_t e = cudaGetLastError();
  CGRPO_CHECK(e == cudaSuccess, "launch of ", kernel, " -> ", cudaGetErrorName(e), ": ", cudaGetErrorString(e));
}

// ------------------------------------------------------------------------------------------ device errors
// Bad indices found on the device (token ids, targets) cannot fail on the spot: the kernel skips the access,
// records the first offender here, and CudaBackend::synchronize()/download() turn it into a fatal error.
enum DeviceErrorCode : int32_t { kErrNone = 0, kErrEmbeddingFwdId = 1, kErrEmbeddingBwdId = 2, kErrTarget = 3 };
struct DeviceError {
  int32_t flag;  // 0 = no error; set once (atomicCAS) by the first reporter
  int32_t code;  // DeviceErrorCode
  int64_t index, value, bound;
};
__device__ inline void report_error(DeviceError* e, int32_t code, int64_t index, int64_t value, int64_t bound) {
  if (atomicCAS(&e->flag, 0, 1) == 0) {
    e->code = code;
    e->index = index;
    e->value = value;
    e->bound = bound;
  }
}

// ------------------------------------------------------------------------------------------ reductions
// Block-wide reduction with a fixed tree: a shuffle-down tree inside each warp, then warp 0 reduces the warp
// results the same way. The combination order depends only on kThreads, so the bits are the same on every
// run and every device. Every thread of the block must call it; all get the result. smem: kThreads/32 items.
template <int kThreads, class T, class Op>
__device__ inline T block_reduce(T v, Op op, T identity, T* smem) {
  static_assert(kThreads % 32 == 0 && kThreads <= 1024, "block_reduce needs whole warps, at most 32");
  constexpr int kWarps = kThreads / 32;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_down_sync(0xFFFFFFFFu, v, o));
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kWarps ? smem[lane] : identity;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_down_sync(0xFFFFFFFFu, v, o));
    if (lane == 0) smem[0] = v;
  }
  __syncthreads();
  const T r = smem[0];
  __syncthreads();  // smem may be reused by the caller's next reduction
  return r;
}
struct SumOp {
  template <class T>
  __device__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// ------------------------------------------------------------------------------------------ activations
// The element types of an activation marked "f32|bf16" in backend.h: float, or bf16 held as its bits (uint16_t,
// as core/dtype.h and the host code store it). A kernel templated on T reads with widen() and writes with
// narrow(): the identity for float (the fp32 path is the same code), and for bf16 the exact widening and one
// round to nearest even by core/dtype.h's conversions, the very functions the CPU oracle rounds with.
__device__ inline float widen(float x) { return x; }
__device__ inline float widen(uint16_t x) { return bf16_to_f32(x); }
template <class T>
__device__ inline T narrow(float x);
template <>
__device__ inline float narrow<float>(float x) { return x; }
template <>
__device__ inline uint16_t narrow<uint16_t>(float x) { return f32_to_bf16(x); }

// Calls f(T{}) with the element type of an activation dtype: uint16_t (bf16 bits) for BF16, else float (the
// caller has checked the dtype with dev_act_row_stride or attention_layout).
template <class F>
void with_act_type(DType t, F&& f) {
  if (t == DType::BF16)
    f(uint16_t{});
  else
    f(float{});
}
// t's data as T* (T = float, uint16_t, or their const forms).
template <class T>
T* dp(const TensorView& t) {
  return static_cast<T*>(t.data);
}

// ------------------------------------------------------------------------------------------ vector loads
// A group of 4 elements (kmath::kGroup) as fp32: one 16-byte access for float, one 8-byte access for bf16
// (widened on load, rounded on store). The pointer must be aligned to the group (kmath::vec4_ok).
struct alignas(16) F4 {
  float x, y, z, w;
};
// acc + x^2 + y^2 + z^2 + w^2, one kmath::sumsq_term at a time in element order (the CPU's order)
__device__ inline double sumsq4(double acc, const F4& v) {
  acc = kmath::sumsq_term(acc, v.x);
  acc = kmath::sumsq_term(acc, v.y);
  acc = kmath::sumsq_term(acc, v.z);
  return kmath::sumsq_term(acc, v.w);
}
struct alignas(8) Bf16x4 {
  uint16_t x, y, z, w;
};
__device__ inline F4 ld4(const float* p) { return *reinterpret_cast<const F4*>(p); }
__device__ inline void st4(float* p, const F4& v) { *reinterpret_cast<F4*>(p) = v; }
__device__ inline F4 ld4(const uint16_t* p) {
  const Bf16x4 h = *reinterpret_cast<const Bf16x4*>(p);
  return {widen(h.x), widen(h.y), widen(h.z), widen(h.w)};
}
// Packed into two 32-bit words (element 0 in the low half: little-endian) so that it is one 8-byte store; a
// member-wise Bf16x4 assignment is split into 2-byte stores by nvcc.
__device__ inline void st4(uint16_t* p, const F4& v) {
  const uint32_t lo = uint32_t(narrow<uint16_t>(v.x)) | uint32_t(narrow<uint16_t>(v.y)) << 16;
  const uint32_t hi = uint32_t(narrow<uint16_t>(v.z)) | uint32_t(narrow<uint16_t>(v.w)) << 16;
  *reinterpret_cast<uint2*>(p) = make_uint2(lo, hi);
}
// kmath::vec4_ok for a row tensor of either activation dtype (the group is 16 or 8 bytes).
inline bool vec4_ok(const TensorView& t, int64_t ld) { return kmath::vec4_ok(t.data, ld, dtype_size(t.dtype)); }

// Visits the 4-element groups a block thread owns in a row of n elements (kmath::kGroup ownership: groups
// t, t + T, t + 2T, ... of thread t of T), calling f(j, count) with the group's first element and its size
// (4, or less for the last group). Callers load a group with one float4 when count == 4 and their pointers
// are 16-byte aligned, else element by element, in the same order: a reduction's bits do not depend on the
// alignment that picked the path.
template <class F>
__device__ inline void for_groups(int64_t n, F&& f) {
  const int64_t groups = kmath::group_count(n);
  for (int64_t g = threadIdx.x; g < groups; g += blockDim.x) {
    const int64_t j = g * kmath::kGroup;
    f(j, n - j < kmath::kGroup ? static_cast<int>(n - j) : kmath::kGroup);
  }
}

// Grid size for a kernel that strides over rows with one block per row.
inline int row_grid(int64_t rows) { return static_cast<int>(std::min<int64_t>(std::max<int64_t>(rows, 1), 1 << 18)); }
// Threads for a row of `units` work items: whole warps, 32..256.
inline int row_threads(int64_t units) {
  return static_cast<int>(std::min<int64_t>(256, std::max<int64_t>(32, kmath::round_up(units, 32))));
}

inline void check_device_tensor(const TensorView& t, const char* what) {
  CGRPO_CHECK(t.device == Device::CUDA, "CudaBackend: ", what, " ", t.str(), " is in ", device_name(t.device),
              " memory", hint("CudaBackend ops take device tensors (Backend::alloc)"));
}
// row_stride() (backend.h) plus: the tensor is in device memory.
inline int64_t dev_row_stride(const TensorView& t, int64_t rows, int64_t cols, const char* what) {
  check_device_tensor(t, what);
  return row_stride(t, rows, cols, what);
}
// act_row_stride() (an activation marked "f32|bf16" in backend.h) plus: the tensor is in device memory.
inline int64_t dev_act_row_stride(const TensorView& t, int64_t rows, int64_t cols, const char* what) {
  check_device_tensor(t, what);
  return act_row_stride(t, rows, cols, what);
}

// ------------------------------------------------------------------------------------------ workspace
// Carves typed, 256-byte aligned pieces out of one workspace allocation. Run once with base == nullptr to size
// it (bytes()), then again on the real pointer with the same sequence of take() calls.
class Carver {
 public:
  explicit Carver(void* base) : base_(static_cast<char*>(base)) {}
  template <class T>
  T* take(size_t count) {
    off_ = (off_ + 255) / 256 * 256;
    T* p = base_ ? reinterpret_cast<T*>(base_ + off_) : nullptr;
    off_ += count * sizeof(T);
    return p;
  }
  size_t bytes() const { return off_; }

 private:
  char* base_;
  size_t off_ = 0;
};

}  // namespace cgrpo::cuda
