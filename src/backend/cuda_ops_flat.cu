// CudaBackend flat fp32 vector ops for the optimizer and the ZeRO engine: axpby, sumsq, AdamW, casts.
//
// Determinism and agreement with CpuBackend (src/backend/cpu_ops_flat.cpp, src/optim/adamw.cpp):
// - axpby, adamw: element-wise, bit-identical to the CPU (the same kmath element functions, explicit fma).
// - cast: integer RNE conversions of kmath, bit-identical to core/dtype.h, NaN payloads included.
// - sumsq: double accumulation in a fixed two-stage tree (grid size a function of n only), so the same bits on
//   every run; it differs from the CPU's sequential double sum only by double rounding (relative ~1e-15).
// Every element loop is a grid-stride loop; the float4 path is taken when the pointers are 16-byte aligned and
// visits the same elements in the same order as the scalar path.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "cgrpo/backend/cuda_backend.h"
#include "cgrpo/backend/kernel_math.h"
#include "cuda_kernels.cuh"

namespace cgrpo {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;

// ------------------------------------------------------------------------------------------ axpby
// y = a x + b y
template <bool kVec4>
__global__ void axpby_kernel(int64_t n, float a, const float* x, float b, float* y) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t t0 = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t tail = 0;
  if constexpr (kVec4) {
    const int64_t n4 = n / 4;
    for (int64_t i = t0; i < n4; i += stride) {
      const cuda::F4 xv = cuda::ld4(x + 4 * i), yv = cuda::ld4(y + 4 * i);
      cuda::st4(y + 4 * i, {kmath::axpby_f32(a, xv.x, b, yv.x), kmath::axpby_f32(a, xv.y, b, yv.y),
                            kmath::axpby_f32(a, xv.z, b, yv.z), kmath::axpby_f32(a, xv.w, b, yv.w)});
    }
    tail = 4 * n4;
  }
  for (int64_t i = tail + t0; i < n; i += stride) y[i] = kmath::axpby_f32(a, x[i], b, y[i]);
}

// ------------------------------------------------------------------------------------------ sumsq
// Stage 1: block b reduces its threads' owned groups (thread g of the grid owns groups g, g + G, ...) into
// partial[b]; stage 2: one block reduces partial[0, blocks) into *out. Both fixed trees.
template <bool kVec4>
__global__ void sumsq_partial_kernel(const float* x, int64_t n, double* partial) {
  __shared__ double smem[kThreads / 32];
  const int64_t groups = kmath::group_count(n);
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  double acc = 0.0;
  for (int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; g < groups; g += stride) {
    const int64_t j = g * kmath::kGroup;
    if (kVec4 && j + kmath::kGroup <= n) {
      acc = cuda::sumsq4(acc, cuda::ld4(x + j));
    } else {
      const int64_t e = j + kmath::kGroup < n ? j + kmath::kGroup : n;
      for (int64_t k = j; k < e; ++k) acc = kmath::sumsq_term(acc, x[k]);
    }
  }
  acc = cuda::block_reduce<kThreads>(acc, cuda::SumOp{}, 0.0, smem);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void sum_partials_kernel(const double* partial, int64_t blocks, double* out) {
  __shared__ double smem[kThreads / 32];
  double acc = 0.0;
  for (int64_t b = threadIdx.x; b < blocks; b += blockDim.x) acc += partial[b];
  acc = cuda::block_reduce<kThreads>(acc, cuda::SumOp{}, 0.0, smem);
  if (threadIdx.x == 0) *out = acc;
}

// ------------------------------------------------------------------------------------------ AdamW
// One launch covers up to kSegs consecutive decay segments (they tile a contiguous range): the segment
// bounds travel in the kernel parameters and are staged in shared memory; each thread walks its increasing
// element indices and advances its segment cursor monotonically.
constexpr int kSegs = 192;
struct SegBatch {
  int32_t count;                 // segments in this batch
  int64_t bound[kSegs + 1];      // segment s covers [bound[s], bound[s+1])
  uint8_t decay[kSegs];
};

__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, SegBatch sb, kmath::AdamWConsts k,
                             float grad_scale) {
  __shared__ int64_t bound[kSegs + 1];
  __shared__ float keep[kSegs];
  for (int s = threadIdx.x; s <= sb.count; s += blockDim.x) {
    bound[s] = sb.bound[s];
    if (s < sb.count) keep[s] = sb.decay[s] ? k.keep_decay : 1.0f;
  }
  __syncthreads();
  const int64_t begin = bound[0], end = bound[sb.count];
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  int seg = 0;
  for (int64_t i = begin + int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < end; i += stride) {
    while (i >= bound[seg + 1]) ++seg;  // i < end = bound[count], so seg stays < count
    const kmath::AdamWElem e = kmath::adamw_element(p[i], g[i], m[i], v[i], keep[seg], grad_scale, k);
    p[i] = e.p;
    m[i] = e.m;
    v[i] = e.v;
  }
}

// ------------------------------------------------------------------------------------------ cast
struct F32 {
  using T = float;
  __device__ static float to_f32(float x) { return x; }
  __device__ static float from_f32(float x) { return x; }
};
struct BF16 {
  using T = uint16_t;
  __device__ static float to_f32(uint16_t h) { return bf16_to_f32(h); }
  __device__ static uint16_t from_f32(float x) { return f32_to_bf16(x); }
};
struct F16 {
  using T = uint16_t;
  __device__ static float to_f32(uint16_t h) { return f16_to_f32(h); }
  __device__ static uint16_t from_f32(float x) { return f32_to_f16(x); }
};
// dst = convert(src): widening to fp32 is exact, so bf16 <-> f16 is one rounding, as in core/dtype.cpp.
template <class S, class D>
__global__ void cast_kernel(const typename S::T* src, typename D::T* dst, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = D::from_f32(S::to_f32(src[i]));
}
template <class S, class D>
void launch_cast(const void* src, void* dst, int64_t n, cudaStream_t st) {
  const int blocks = static_cast<int>(kmath::grid_blocks(n, kThreads, kMaxBlocks));
  cast_kernel<S, D><<<blocks, kThreads, 0, st>>>(static_cast<const typename S::T*>(src),
                                                  static_cast<typename D::T*>(dst), n);
  cuda::check_launch("cast_kernel");
}

}  // namespace

void CudaBackend::axpby(int64_t n, float a, const float* x, float b, float* y) {
  if (n <= 0) return;
  const cudaStream_t st = cuda::as_stream(ctx_.stream());
  const bool vec = kmath::vec4_ok(x) && kmath::vec4_ok(y);
  const int blocks = static_cast<int>(kmath::grid_blocks(vec ? n / 4 + 1 : n, kThreads, kMaxBlocks));
  if (vec)
    axpby_kernel<true><<<blocks, kThreads, 0, st>>>(n, a, x, b, y);
  else
    axpby_kernel<false><<<blocks, kThreads, 0, st>>>(n, a, x, b, y);
  cuda::check_launch("axpby_kernel");
}

double CudaBackend::sumsq(const float* x, int64_t n) {
  double host = 0.0;
  sumsq_many(&x, &n, 1, &host);
  return host;
}

void CudaBackend::sumsq_many(const float* const* x, const int64_t* n, int64_t count, double* out) {
  if (count <= 0) return;
  const cudaStream_t st = cuda::as_stream(ctx_.stream());
  // The block count of each sum depends only on its n: at least 4 groups per thread, at most 1024 blocks.
  auto blocks_of = [&](int64_t k) { return n[k] > 0 ? kmath::grid_blocks(kmath::group_count(n[k]), kThreads * 4, 1024) : 0; };
  int64_t partials = 0;
  for (int64_t k = 0; k < count; ++k) partials += blocks_of(k);
  cuda::Carver sizing(nullptr);
  sizing.take<double>(size_t(std::max<int64_t>(partials, 1)));
  sizing.take<double>(size_t(count));
  cuda::Carver carve(workspace(sizing.bytes() / sizeof(float) + 1));
  double* partial = carve.take<double>(size_t(std::max<int64_t>(partials, 1)));
  double* sums = carve.take<double>(size_t(count));
  for (int64_t k = 0; k < count; ++k) {
    const int64_t blocks = blocks_of(k);
    if (blocks == 0) {  // an empty vector sums to 0
      sum_partials_kernel<<<1, kThreads, 0, st>>>(partial, 0, sums + k);
    } else {
      if (kmath::vec4_ok(x[k]))
        sumsq_partial_kernel<true><<<static_cast<int>(blocks), kThreads, 0, st>>>(x[k], n[k], partial);
      else
        sumsq_partial_kernel<false><<<static_cast<int>(blocks), kThreads, 0, st>>>(x[k], n[k], partial);
      cuda::check_launch("sumsq_partial_kernel");
      sum_partials_kernel<<<1, kThreads, 0, st>>>(partial, blocks, sums + k);
      partial += blocks;
    }
    cuda::check_launch("sum_partials_kernel");
  }
  download(sums, out, size_t(count) * sizeof(double));  // waits, once
}

void CudaBackend::adamw(float* p, const float* g, float* m, float* v, int64_t n,
                        const std::vector<DecaySegment>& segments, double lr, int64_t step, const AdamWParams& hp,
                        float grad_scale) {
  CGRPO_CHECK(step >= 1, "AdamW step count starts at 1, got ", step);
  int64_t covered = 0;
  for (const DecaySegment& s : segments) {
    CGRPO_CHECK(s.offset == covered && s.count >= 0 && s.offset + s.count <= n,
                "AdamW decay segments do not tile the shard");
    covered += s.count;
  }
  CGRPO_CHECK(covered == n, "AdamW decay segments cover ", covered, " of ", n, " elements");
  if (n == 0) return;
  const kmath::AdamWConsts k = kmath::adamw_consts(lr, step, hp);
  const cudaStream_t st = cuda::as_stream(ctx_.stream());
  for (size_t s0 = 0; s0 < segments.size(); s0 += kSegs) {
    SegBatch sb{};
    sb.count = static_cast<int32_t>(std::min<size_t>(kSegs, segments.size() - s0));
    for (int32_t i = 0; i < sb.count; ++i) {
      sb.bound[i] = segments[s0 + i].offset;
      sb.decay[i] = segments[s0 + i].decay ? 1 : 0;
    }
    sb.bound[sb.count] = segments[s0 + sb.count - 1].offset + segments[s0 + sb.count - 1].count;
    const int64_t len = sb.bound[sb.count] - sb.bound[0];
    if (len == 0) continue;
    const int blocks = static_cast<int>(kmath::grid_blocks(len, kThreads, kMaxBlocks));
    adamw_kernel<<<blocks, kThreads, 0, st>>>(p, g, m, v, sb, k, grad_scale);
    cuda::check_launch("adamw_kernel");
  }
}

void CudaBackend::cast(const TensorView& src, const TensorView& dst) {
  CGRPO_CHECK(src.numel() == dst.numel() && src.contiguous() && dst.contiguous(), "cast: ", src.str(), " -> ",
              dst.str(), " must be contiguous with the same element count");
  const int64_t n = src.numel();
  if (n == 0) return;
  if (src.dtype == dst.dtype) {
    copy_bytes(dst.data, src.data, src.bytes());
    return;
  }
  const cudaStream_t st = cuda::as_stream(ctx_.stream());
  const DType s = src.dtype, d = dst.dtype;
  if (s == DType::F32 && d == DType::BF16) launch_cast<F32, BF16>(src.data, dst.data, n, st);
  else if (s == DType::F32 && d == DType::F16) launch_cast<F32, F16>(src.data, dst.data, n, st);
  else if (s == DType::BF16 && d == DType::F32) launch_cast<BF16, F32>(src.data, dst.data, n, st);
  else if (s == DType::F16 && d == DType::F32) launch_cast<F16, F32>(src.data, dst.data, n, st);
  else if (s == DType::BF16 && d == DType::F16) launch_cast<BF16, F16>(src.data, dst.data, n, st);
  else launch_cast<F16, BF16>(src.data, dst.data, n, st);
}

}  // namespace cgrpo
