// CudaBackend element-wise and row-wise model ops (spec/coupled_grpo.md §1.3): copy, zero, embedding, RMSNorm,
// RoPE, SwiGLU, bias. Row tensors [N, C] with inner stride 1 and any row stride (column-block views); fp32, except
// the activations backend.h marks "f32|bf16" (rmsnorm_fwd y, rope_fwd x, swiglu g/u/out, bias_add y): their
// kernels are templated on the element type T (cuda_kernels.cuh: float, or bf16 bits widened on load and rounded
// once on store), the fp32 math is the same code for both, so a bf16 result is round_bf16(the fp32 result).
//
// Layout: row kernels stride over rows with one block per row; a block's threads own 4-element groups of the
// row (kmath::kGroup), loaded as one float4 (fp32) or one 8-byte word (bf16) when every pointer and row stride
// allows it.
//
// Determinism (same bits on every run; no float atomics anywhere):
// - copy, zero, embedding_fwd, bias_add: exact, bit-identical to CpuBackend.
//   bias_add on bf16 y: round_bf16(y + b), bit-identical to the CPU's bf16 form too.
// - embedding_bwd: the ids are stably radix-sorted (CUB) with their positions; one block per run of equal ids
//   (and column tile) adds dtable[id] + dout[p1] + dout[p2] + ... in position order, exactly the CPU's fp32
//   sequence: bit-identical to CpuBackend.
// - rmsnorm_fwd/bwd row statistics: double, fixed ownership + fixed block tree (cuda_kernels.cuh); after the
//   rounding to fp32 they almost always equal the CPU's (both are double sums of exact products), and the
//   element formulas are the CPU's (kmath). dw and db: two-stage column sums, stage 1 sums a fixed row
//   partition (kmath::RowPartition, a function of N only) in double per block, stage 2 adds the blocks in
//   order and rounds once into dw/db: more accurate than the CPU's sequential fp32 sum, not bit-identical.
// - rope: the fp32 inv_freq table is computed on the host exactly as the CPU does and passed by value; angles
//   are bit-identical, sin/cos are the precise sincosf (<= 2 ulp vs glibc), so results agree within a few ulp.
// - swiglu: the CPU formulas with the precise expf instead of the CPU's polynomial exp: within a few ulp.
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>

#include "cgrpo/backend/cuda_backend.h"
#include "cgrpo/backend/kernel_math.h"
#include "cuda_kernels.cuh"

namespace cgrpo {

namespace {

using cuda::F4;
using cuda::ld4;
using cuda::narrow;
using cuda::st4;
using cuda::widen;

constexpr int kRowThreads = 256;  // row reductions (fixed: the tree shape is part of the bits)

float* fp(const TensorView& t) { return static_cast<float*>(t.data); }
int64_t rows_of(const TensorView& t) { return t.ndim == 1 ? 1 : t.dim(0); }
// SwiGLU's activations share one dtype (backend.h): g, u and, in the forward, out.
void check_same_dtype(const char* op, const TensorView& g, const TensorView& u, const TensorView* out) {
  CGRPO_CHECK(u.dtype == g.dtype && (!out || out->dtype == g.dtype), op, ": g ", g.str(), ", u ", u.str(),
              (out ? " and out " : ""), (out ? out->str() : std::string()), " must share one dtype");
}

// ------------------------------------------------------------------------------------------ embedding
// out[n, :] = table[ids[n], :]   table [V, H] float or bf16 (T, widened exactly), ids [N], out [N, H] fp32. A bad id
// gives a zero row and a device error.
template <bool kVec4, class T>
__global__ void embedding_fwd_kernel(const T* table, int64_t ldt, int64_t V, const int32_t* ids, float* out,
                                     int64_t ldo, int64_t N, int64_t H, cuda::DeviceError* err) {
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const int32_t id = ids[n];
    float* o = out + n * ldo;
    const bool bad = id < 0 || id >= V;
    if (bad && threadIdx.x == 0) cuda::report_error(err, cuda::kErrEmbeddingFwdId, n, id, V);
    const T* t = table + int64_t(bad ? 0 : id) * ldt;
    cuda::for_groups(H, [&](int64_t j, int cnt) {
      if (kVec4 && cnt == 4) {
        st4(o + j, bad ? F4{0.0f, 0.0f, 0.0f, 0.0f} : ld4(t + j));
      } else {
        for (int k = 0; k < cnt; ++k) o[j + k] = bad ? 0.0f : widen(t[j + k]);
      }
    });
  }
}

__global__ void iota_kernel(int32_t* v, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    v[i] = static_cast<int32_t>(i);
}

// dtable[id, :] += dout[p, :] for the positions p of each run of equal ids in keys (sorted, stable: positions
// ascend within a run). Block (x: sorted index s, y: column tile) works only if s starts a run.
__global__ void embedding_bwd_kernel(const int32_t* keys, const int32_t* pos, int64_t N, const float* dout,
                                     int64_t ldo, float* dtable, int64_t ldt, int64_t V, int64_t H,
                                     cuda::DeviceError* err) {
  __shared__ unsigned long long run_end;
  const int64_t j = int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
  for (int64_t s = blockIdx.x; s < N; s += gridDim.x) {
    const int32_t id = keys[s];
    if (s > 0 && keys[s - 1] == id) continue;  // not a run start (uniform over the block)
    if (id < 0 || id >= V) {
      if (threadIdx.x == 0 && blockIdx.y == 0) cuda::report_error(err, cuda::kErrEmbeddingBwdId, pos[s], id, V);
      continue;
    }
    // The run is [s, e): e = the first t > s with keys[t] != id (keys are sorted), found by the whole block.
    if (threadIdx.x == 0) run_end = static_cast<unsigned long long>(N);
    __syncthreads();
    for (int64_t base = s + 1; base < N; base += blockDim.x) {
      const int64_t t = base + threadIdx.x;
      if (t < N && keys[t] != id) atomicMin(&run_end, static_cast<unsigned long long>(t));
      __syncthreads();
      const bool found = run_end < static_cast<unsigned long long>(N);
      __syncthreads();  // everyone has read run_end before a later iteration may lower it
      if (found) break;
    }
    const int64_t e = static_cast<int64_t>(run_end);
    __syncthreads();  // run_end is rewritten for the next run
    if (j >= H) continue;
    float* dst = dtable + int64_t(id) * ldt + j;
    float acc = *dst;
    int64_t t = s;
    for (; t + 8 <= e; t += 8) {  // 8 independent loads in flight, added in position order
      float v[8];
#pragma unroll
      for (int k = 0; k < 8; ++k) v[k] = dout[int64_t(pos[t + k]) * ldo + j];
#pragma unroll
      for (int k = 0; k < 8; ++k) acc += v[k];
    }
    for (; t < e; ++t) acc += dout[int64_t(pos[t]) * ldo + j];
    *dst = acc;
  }
}

// ------------------------------------------------------------------------------------------ RMSNorm
// y = w * (x * rstd), rstd = 1/sqrt(mean(x^2) + eps) from a double sum of squares. y (float or bf16 T) may
// alias x when it is fp32.
template <bool kVec4, class T>
__global__ void rmsnorm_fwd_kernel(const float* x, int64_t ldx, const float* w, float eps, T* y, int64_t ldy,
                                   float* rstd, int64_t N, int64_t H) {
  __shared__ double smem[kRowThreads / 32];
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const float* xr = x + n * ldx;
    T* yr = y + n * ldy;
    double acc = 0.0;
    cuda::for_groups(H, [&](int64_t j, int cnt) {
      if (kVec4 && cnt == 4) {
        acc = cuda::sumsq4(acc, ld4(xr + j));
      } else {
        for (int k = 0; k < cnt; ++k) acc = kmath::sumsq_term(acc, xr[j + k]);
      }
    });
    acc = cuda::block_reduce<kRowThreads>(acc, cuda::SumOp{}, 0.0, smem);
    const float r = kmath::rmsnorm_rstd(acc, H, eps);
    if (threadIdx.x == 0) rstd[n] = r;
    cuda::for_groups(H, [&](int64_t j, int cnt) {
      if (kVec4 && cnt == 4) {
        const F4 v = ld4(xr + j), ww = ld4(w + j);
        st4(yr + j, {ww.x * (v.x * r), ww.y * (v.y * r), ww.z * (v.z * r), ww.w * (v.w * r)});
      } else {
        for (int k = 0; k < cnt; ++k) yr[j + k] = narrow<T>(w[j + k] * (xr[j + k] * r));
      }
    });
  }
}

// dx += rstd * (dy*w - xhat * mean),  mean = sum_j dy_j w_j xhat_j / H (double), xhat = x * rstd.
template <bool kVec4>
__global__ void rmsnorm_dx_kernel(const float* dy, int64_t ldd, const float* x, int64_t ldx, const float* w,
                                  const float* rstd, float* dx, int64_t ldg, int64_t N, int64_t H) {
  __shared__ double smem[kRowThreads / 32];
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const float* dyr = dy + n * ldd;
    const float* xr = x + n * ldx;
    float* dxr = dx + n * ldg;
    const float r = rstd[n];
    double acc = 0.0;
    cuda::for_groups(H, [&](int64_t j, int cnt) {
      if (kVec4 && cnt == 4) {
        const F4 d = ld4(dyr + j), ww = ld4(w + j), xv = ld4(xr + j);
        acc = kmath::rmsnorm_dot_term(acc, d.x, ww.x, xv.x, r);
        acc = kmath::rmsnorm_dot_term(acc, d.y, ww.y, xv.y, r);
        acc = kmath::rmsnorm_dot_term(acc, d.z, ww.z, xv.z, r);
        acc = kmath::rmsnorm_dot_term(acc, d.w, ww.w, xv.w, r);
      } else {
        for (int k = 0; k < cnt; ++k) acc = kmath::rmsnorm_dot_term(acc, dyr[j + k], w[j + k], xr[j + k], r);
      }
    });
    acc = cuda::block_reduce<kRowThreads>(acc, cuda::SumOp{}, 0.0, smem);
    const float mean = static_cast<float>(acc / double(H));
    cuda::for_groups(H, [&](int64_t j, int cnt) {
      if (kVec4 && cnt == 4) {
        const F4 d = ld4(dyr + j), ww = ld4(w + j), xv = ld4(xr + j), g = ld4(dxr + j);
        st4(dxr + j, {kmath::rmsnorm_dx(g.x, d.x, ww.x, xv.x, r, mean), kmath::rmsnorm_dx(g.y, d.y, ww.y, xv.y, r, mean),
                      kmath::rmsnorm_dx(g.z, d.z, ww.z, xv.z, r, mean), kmath::rmsnorm_dx(g.w, d.w, ww.w, xv.w, r, mean)});
      } else {
        for (int k = 0; k < cnt; ++k)
          dxr[j + k] = kmath::rmsnorm_dx(dxr[j + k], dyr[j + k], w[j + k], xr[j + k], r, mean);
      }
    });
  }
}

// ------------------------------------------------------------------------------------------ column sums
// out[j] += sum_n term(n, j), deterministic in two stages (file header). Stage 1, block (column tile x,
// row run y): partial[y, j] = sum over the run's rows, in row order, in double.
struct RmsDwTerm {  // dy * (x * rstd)
  const float *dy, *x, *rstd;
  int64_t ldd, ldx;
  __device__ double operator()(int64_t n, int64_t j) const {
    return double(dy[n * ldd + j]) * double(x[n * ldx + j] * rstd[n]);
  }
};
struct BiasTerm {  // dy
  const float* dy;
  int64_t ld;
  __device__ double operator()(int64_t n, int64_t j) const { return double(dy[n * ld + j]); }
};

template <class Term>
__global__ void colsum_partial_kernel(Term term, kmath::RowPartition part, int64_t C, double* partial) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t b = blockIdx.y;
  if (j >= C) return;
  double acc = 0.0;
  const int64_t n1 = part.end(b);
#pragma unroll 4
  for (int64_t n = part.begin(b); n < n1; ++n) acc += term(n, j);
  partial[b * C + j] = acc;
}
// Stage 2: out[j] = fp32(out[j] + sum_b partial[b, j]), blocks in order, one rounding.
__global__ void colsum_finish_kernel(const double* partial, int64_t blocks, int64_t C, float* out) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= C) return;
  double acc = 0.0;
  for (int64_t b = 0; b < blocks; ++b) acc += partial[b * C + j];
  out[j] = static_cast<float>(double(out[j]) + acc);
}

// Row runs for the column sums: at most 128, of at least 32 rows (a function of N only).
constexpr int64_t kColMaxBlocks = 128, kColMinRows = 32;
constexpr int kColThreads = 256;

template <class Term>
void column_sum(CudaBackend& be, cudaStream_t st, const Term& term, int64_t N, int64_t C, float* out,
                const char* what) {
  if (N == 0 || C == 0) return;
  const kmath::RowPartition part = kmath::make_row_partition(N, kColMaxBlocks, kColMinRows);
  CGRPO_CHECK(part.blocks <= 65535, what, ": row partition of ", part.blocks, " blocks");
  double* partial = reinterpret_cast<double*>(be.workspace(static_cast<size_t>(part.blocks * C) * 2));
  const int64_t tiles = kmath::ceil_div(C, kColThreads);
  CGRPO_CHECK(tiles <= INT_MAX, what, ": ", C, " columns is too wide");
  colsum_partial_kernel<<<dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(part.blocks)), kColThreads, 0,
                          st>>>(term, part, C, partial);
  cuda::check_launch("colsum_partial_kernel");
  colsum_finish_kernel<<<static_cast<unsigned>(tiles), kColThreads, 0, st>>>(partial, part.blocks, C, out);
  cuda::check_launch("colsum_finish_kernel");
}

// ------------------------------------------------------------------------------------------ RoPE
// In place on x [N, heads*head_dim]: pairs (j, j + d/2) of every head rotated by pos[n] * inv_freq[j]; the
// backward passes sign = -1 (rotation by -angle). One thread per pair index j computes sin/cos once per row.
// x is float or bf16 (T, forward only): pairs are widened, rotated in fp32 and rounded once.
constexpr int kMaxHalf = 512;  // head_dim <= 1024, as the CPU
struct RopeFreqs {
  float inv_freq[kMaxHalf];
};
template <class T>
__global__ void rope_kernel(T* x, int64_t ld, const int32_t* pos, int64_t N, int64_t heads, int64_t head_dim,
                            RopeFreqs f, float sign) {
  const int64_t half = head_dim / 2;
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const int32_t p = pos[n];
    T* row = x + n * ld;
    for (int64_t j = threadIdx.x; j < half; j += blockDim.x) {
      float s, c;
      sincosf(kmath::rope_angle(p, f.inv_freq[j]), &s, &c);  // precise sincosf: not the __sinf intrinsics
      s = sign * s;
      for (int64_t h = 0; h < heads; ++h) {
        T* xr = row + h * head_dim;
        const kmath::Pair y = kmath::rope_rotate(widen(xr[j]), widen(xr[j + half]), c, s);
        xr[j] = narrow<T>(y.a);
        xr[j + half] = narrow<T>(y.b);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------ SwiGLU, bias
// out = silu(g) * u; g, u, out all float or all bf16 (T).
template <bool kVec4, class T>
__global__ void swiglu_fwd_kernel(const T* g, int64_t ldg, const T* u, int64_t ldu, T* out, int64_t ldo, int64_t N,
                                  int64_t I) {
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const T* gr = g + n * ldg;
    const T* ur = u + n * ldu;
    T* orow = out + n * ldo;
    cuda::for_groups(I, [&](int64_t j, int cnt) {
      if (kVec4 && cnt == 4) {
        const F4 a = ld4(gr + j), b = ld4(ur + j);
        st4(orow + j, {kmath::swiglu_out(a.x, b.x), kmath::swiglu_out(a.y, b.y), kmath::swiglu_out(a.z, b.z),
                       kmath::swiglu_out(a.w, b.w)});
      } else {
        for (int k = 0; k < cnt; ++k) orow[j + k] = narrow<T>(kmath::swiglu_out(widen(gr[j + k]), widen(ur[j + k])));
      }
    });
  }
}

// dg, du (=), fp32; g, u float or bf16 (T). dg/du may alias fp32 g/u: each thread loads its whole group before
// storing any of it.
template <bool kVec4, class T>
__global__ void swiglu_bwd_kernel(const float* dout, int64_t ldo, const T* g, int64_t ldg, const T* u, int64_t ldu,
                                  float* dg, int64_t lddg, float* du, int64_t lddu, int64_t N, int64_t I) {
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const float* dr = dout + n * ldo;
    const T* gr = g + n * ldg;
    const T* ur = u + n * ldu;
    float* dgr = dg + n * lddg;
    float* dur = du + n * lddu;
    cuda::for_groups(I, [&](int64_t j, int cnt) {
      if (kVec4 && cnt == 4) {
        const F4 d = ld4(dr + j), a = ld4(gr + j), b = ld4(ur + j);
        const kmath::Pair p0 = kmath::swiglu_grads(d.x, a.x, b.x), p1 = kmath::swiglu_grads(d.y, a.y, b.y);
        const kmath::Pair p2 = kmath::swiglu_grads(d.z, a.z, b.z), p3 = kmath::swiglu_grads(d.w, a.w, b.w);
        st4(dgr + j, {p0.a, p1.a, p2.a, p3.a});
        st4(dur + j, {p0.b, p1.b, p2.b, p3.b});
      } else {
        for (int k = 0; k < cnt; ++k) {
          const kmath::Pair p = kmath::swiglu_grads(dr[j + k], widen(gr[j + k]), widen(ur[j + k]));
          dgr[j + k] = p.a;
          dur[j + k] = p.b;
        }
      }
    });
  }
}

// y += b; y float or bf16 (T), b fp32.
template <bool kVec4, class T>
__global__ void bias_add_kernel(T* y, int64_t ld, const float* b, int64_t N, int64_t C) {
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    T* yr = y + n * ld;
    cuda::for_groups(C, [&](int64_t j, int cnt) {
      if (kVec4 && cnt == 4) {
        const F4 v = ld4(yr + j), bb = ld4(b + j);
        st4(yr + j, {v.x + bb.x, v.y + bb.y, v.z + bb.z, v.w + bb.w});
      } else {
        for (int k = 0; k < cnt; ++k) yr[j + k] = narrow<T>(widen(yr[j + k]) + b[j + k]);
      }
    });
  }
}

// Launches kernel<true> when every (pointer, row stride) allows 4-element vector access, else kernel<false>; an
// activation element type T is deduced from the arguments.
#define CGRPO_LAUNCH_VEC(vec, kernel, grid, block, stream, ...)                           \
  do {                                                                                  \
    if (vec)                                                                            \
      kernel<true><<<(grid), (block), 0, (stream)>>>(__VA_ARGS__);                      \
    else                                                                                \
      kernel<false><<<(grid), (block), 0, (stream)>>>(__VA_ARGS__);                     \
    cuda::check_launch(#kernel);                                                        \
  } while (0)

}  // namespace

void CudaBackend::copy(const TensorView& src, const TensorView& dst) {
  const int64_t N = rows_of(dst), C = dst.dim(-1);
  const int64_t lds = cuda::dev_row_stride(src, N, C, "copy src"), ldd = cuda::dev_row_stride(dst, N, C, "copy dst");
  if (N == 0 || C == 0 || (src.data == dst.data && lds == ldd)) return;
  const cudaStream_t st = cuda::as_stream(ctx_.stream());
  const size_t width = static_cast<size_t>(C) * sizeof(float);
  if (N == 1)
    CGRPO_CUDA(cudaMemcpyAsync(dst.data, src.data, width, cudaMemcpyDeviceToDevice, st));
  else
    CGRPO_CUDA(cudaMemcpy2DAsync(dst.data, static_cast<size_t>(ldd) * sizeof(float), src.data,
                                 static_cast<size_t>(lds) * sizeof(float), width, static_cast<size_t>(N),
                                 cudaMemcpyDeviceToDevice, st));
}

void CudaBackend::zero(const TensorView& t) {
  const int64_t N = rows_of(t), C = t.dim(-1);
  const int64_t ld = cuda::dev_row_stride(t, N, C, "zero");
  if (N == 0 || C == 0) return;
  const cudaStream_t st = cuda::as_stream(ctx_.stream());
  const size_t width = static_cast<size_t>(C) * sizeof(float);
  if (N == 1)
    CGRPO_CUDA(cudaMemsetAsync(t.data, 0, width, st));
  else
    CGRPO_CUDA(cudaMemset2DAsync(t.data, static_cast<size_t>(ld) * sizeof(float), 0, width, static_cast<size_t>(N), st));
}

void CudaBackend::embedding_fwd(const TensorView& table, const int32_t* ids, const TensorView& out) {
  const int64_t V = table.dim(0), H = table.dim(-1), N = out.dim(0);
  const int64_t ldt = cuda::dev_act_row_stride(table, V, H, "embedding table");  // [V, H] f32|bf16
  const int64_t ldo = cuda::dev_row_stride(out, N, H, "embedding out");          // [N, H]
  if (N == 0 || H == 0) return;
  const bool vec = cuda::vec4_ok(table, ldt) && kmath::vec4_ok(out.data, ldo);
  cuda::with_act_type(table.dtype, [&](auto t) {
    using T = decltype(t);
    CGRPO_LAUNCH_VEC(vec, embedding_fwd_kernel, cuda::row_grid(N), cuda::row_threads(kmath::group_count(H)),
                     cuda::as_stream(ctx_.stream()), cuda::dp<const T>(table), ldt, V, ids, fp(out), ldo, N, H,
                     static_cast<cuda::DeviceError*>(device_error()));
  });
}

void CudaBackend::embedding_bwd(const TensorView& dout, const int32_t* ids, const TensorView& dtable) {
  const int64_t V = dtable.dim(0), H = dtable.dim(-1), N = dout.dim(0);
  const int64_t ldt = cuda::dev_row_stride(dtable, V, H, "embedding dtable");  // [V, H]
  const int64_t ldo = cuda::dev_row_stride(dout, N, H, "embedding dout");      // [N, H]
  if (N == 0 || H == 0) return;
  CGRPO_CHECK(N <= INT_MAX, "embedding_bwd: ", N, " rows is more than the sort handles");
  const cudaStream_t st = cuda::as_stream(ctx_.stream());
  const int n = static_cast<int>(N);
  // Workspace: sorted ids [N], positions [N] (in) and [N] (sorted), then CUB's scratch.
  size_t sort_bytes = 0;
  CGRPO_CUDA(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, ids, static_cast<int32_t*>(nullptr),
                                             static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), n,
                                             0, 32, st));
  cuda::Carver sizing(nullptr);
  sizing.take<int32_t>(N);
  sizing.take<int32_t>(N);
  sizing.take<int32_t>(N);
  sizing.take<char>(sort_bytes);
  cuda::Carver carve(workspace(sizing.bytes() / sizeof(float) + 1));
  int32_t* keys = carve.take<int32_t>(N);
  int32_t* pos_in = carve.take<int32_t>(N);
  int32_t* pos = carve.take<int32_t>(N);
  void* scratch = carve.take<char>(sort_bytes);

  iota_kernel<<<static_cast<int>(kmath::grid_blocks(N, 256, 4096)), 256, 0, st>>>(pos_in, N);
  cuda::check_launch("iota_kernel");
  // Radix sort is stable: equal ids keep ascending positions. All 32 bits, so bad (negative or huge) ids
  // sort into runs of their own and are reported, never mixed into a valid id's run.
  CGRPO_CUDA(cub::DeviceRadixSort::SortPairs(scratch, sort_bytes, ids, keys, pos_in, pos, n, 0, 32, st));
  const int threads = cuda::row_threads(H);
  const int64_t tiles = kmath::ceil_div(H, threads);
  CGRPO_CHECK(tiles <= 65535, "embedding_bwd: hidden size ", H, " is too wide");
  embedding_bwd_kernel<<<dim3(static_cast<unsigned>(cuda::row_grid(N)), static_cast<unsigned>(tiles)), threads, 0,
                         st>>>(keys, pos, N, fp(dout), ldo, fp(dtable), ldt, V, H,
                               static_cast<cuda::DeviceError*>(device_error()));
  cuda::check_launch("embedding_bwd_kernel");
}

void CudaBackend::rmsnorm_fwd(const TensorView& x, const TensorView& w, float eps, const TensorView& y, float* rstd) {
  const int64_t N = x.dim(0), H = x.dim(-1);
  const int64_t ldx = cuda::dev_row_stride(x, N, H, "rmsnorm x");
  const int64_t ldy = cuda::dev_act_row_stride(y, N, H, "rmsnorm y");  // f32|bf16
  cuda::dev_row_stride(w, 1, H, "rmsnorm w");
  if (N == 0) return;
  const bool vec = kmath::vec4_ok(x.data, ldx) && cuda::vec4_ok(y, ldy) && kmath::vec4_ok(w.data);
  cuda::with_act_type(y.dtype, [&](auto t) {
    using T = decltype(t);
    CGRPO_LAUNCH_VEC(vec, rmsnorm_fwd_kernel, cuda::row_grid(N), kRowThreads, cuda::as_stream(ctx_.stream()), fp(x),
                     ldx, fp(w), eps, cuda::dp<T>(y), ldy, rstd, N, H);
  });
}

void CudaBackend::rmsnorm_bwd(const TensorView& dy, const TensorView& x, const TensorView& w, const float* rstd,
                              const TensorView& dx, const TensorView& dw) {
  const int64_t N = x.dim(0), H = x.dim(-1);
  const int64_t ldx = cuda::dev_row_stride(x, N, H, "rmsnorm x"), ldd = cuda::dev_row_stride(dy, N, H, "rmsnorm dy");
  const int64_t ldg = cuda::dev_row_stride(dx, N, H, "rmsnorm dx");
  cuda::dev_row_stride(w, 1, H, "rmsnorm w");
  cuda::dev_row_stride(dw, 1, H, "rmsnorm dw");
  if (N == 0 || H == 0) return;
  const cudaStream_t st = cuda::as_stream(ctx_.stream());
  // dw first, as the CPU: dx may alias dy.
  column_sum(*this, st, RmsDwTerm{fp(dy), fp(x), rstd, ldd, ldx}, N, H, fp(dw), "rmsnorm_bwd dw");
  const bool vec = kmath::vec4_ok(dy.data, ldd) && kmath::vec4_ok(x.data, ldx) && kmath::vec4_ok(dx.data, ldg) &&
                   kmath::vec4_ok(w.data);
  CGRPO_LAUNCH_VEC(vec, rmsnorm_dx_kernel, cuda::row_grid(N), kRowThreads, st, fp(dy), ldd, fp(x), ldx, fp(w), rstd,
                   fp(dx), ldg, N, H);
}

namespace {
// sign = +1: rope_fwd (x f32|bf16); -1: rope_bwd (dx f32).
void rope_apply(const CudaContext& ctx, const TensorView& x, int64_t head_dim, const int32_t* pos, float theta,
                float sign) {
  CGRPO_CHECK(head_dim > 0 && head_dim % 2 == 0 && head_dim <= 2 * kMaxHalf, "rope: head_dim ", head_dim,
              " must be even and <= ", 2 * kMaxHalf);
  const int64_t N = x.dim(0), C = x.dim(-1);
  CGRPO_CHECK(C % head_dim == 0, "rope: width ", C, " of ", x.str(), " is not a multiple of head_dim ", head_dim);
  const int64_t ld =
      sign > 0 ? cuda::dev_act_row_stride(x, N, C, "rope x") : cuda::dev_row_stride(x, N, C, "rope dx");
  const int64_t half = head_dim / 2;
  if (N == 0 || C == 0) return;
  RopeFreqs f{};
  for (int64_t j = 0; j < half; ++j) f.inv_freq[j] = kmath::rope_inv_freq(theta, j, head_dim);
  cuda::with_act_type(x.dtype, [&](auto t) {
    using T = decltype(t);
    rope_kernel<<<cuda::row_grid(N), cuda::row_threads(half), 0, cuda::as_stream(ctx.stream())>>>(
        cuda::dp<T>(x), ld, pos, N, C / head_dim, head_dim, f, sign);
    cuda::check_launch("rope_kernel");
  });
}
}  // namespace

void CudaBackend::rope_fwd(const TensorView& x, int64_t head_dim, const int32_t* pos, float theta) {
  rope_apply(ctx_, x, head_dim, pos, theta, 1.0f);
}
void CudaBackend::rope_bwd(const TensorView& dx, int64_t head_dim, const int32_t* pos, float theta) {
  rope_apply(ctx_, dx, head_dim, pos, theta, -1.0f);
}

void CudaBackend::swiglu_fwd(const TensorView& g, const TensorView& u, const TensorView& out) {
  const int64_t N = g.dim(0), I = g.dim(-1);
  const int64_t ldg = cuda::dev_act_row_stride(g, N, I, "swiglu g");
  const int64_t ldu = cuda::dev_act_row_stride(u, N, I, "swiglu u");
  const int64_t ldo = cuda::dev_act_row_stride(out, N, I, "swiglu out");
  check_same_dtype("swiglu_fwd", g, u, &out);
  if (N == 0 || I == 0) return;
  const bool vec = cuda::vec4_ok(g, ldg) && cuda::vec4_ok(u, ldu) && cuda::vec4_ok(out, ldo);
  cuda::with_act_type(g.dtype, [&](auto t) {
    using T = decltype(t);
    CGRPO_LAUNCH_VEC(vec, swiglu_fwd_kernel, cuda::row_grid(N), cuda::row_threads(kmath::group_count(I)),
                     cuda::as_stream(ctx_.stream()), cuda::dp<const T>(g), ldg, cuda::dp<const T>(u), ldu,
                     cuda::dp<T>(out), ldo, N, I);
  });
}

void CudaBackend::swiglu_bwd(const TensorView& dout, const TensorView& g, const TensorView& u, const TensorView& dg,
                             const TensorView& du) {
  const int64_t N = g.dim(0), I = g.dim(-1);
  const int64_t ldg = cuda::dev_act_row_stride(g, N, I, "swiglu g");
  const int64_t ldu = cuda::dev_act_row_stride(u, N, I, "swiglu u");
  check_same_dtype("swiglu_bwd", g, u, nullptr);
  const int64_t ldo = cuda::dev_row_stride(dout, N, I, "swiglu dout"), lddg = cuda::dev_row_stride(dg, N, I, "swiglu dg");
  const int64_t lddu = cuda::dev_row_stride(du, N, I, "swiglu du");
  if (N == 0 || I == 0) return;
  const bool vec = kmath::vec4_ok(dout.data, ldo) && cuda::vec4_ok(g, ldg) && cuda::vec4_ok(u, ldu) &&
                   kmath::vec4_ok(dg.data, lddg) && kmath::vec4_ok(du.data, lddu);
  cuda::with_act_type(g.dtype, [&](auto t) {
    using T = decltype(t);
    CGRPO_LAUNCH_VEC(vec, swiglu_bwd_kernel, cuda::row_grid(N), cuda::row_threads(kmath::group_count(I)),
                     cuda::as_stream(ctx_.stream()), fp(dout), ldo, cuda::dp<const T>(g), ldg, cuda::dp<const T>(u),
                     ldu, fp(dg), lddg, fp(du), lddu, N, I);
  });
}

void CudaBackend::bias_add(const TensorView& y, const TensorView& b) {
  const int64_t N = y.dim(0), C = y.dim(-1);
  const int64_t ld = cuda::dev_act_row_stride(y, N, C, "bias_add y");  // f32|bf16
  cuda::dev_row_stride(b, 1, C, "bias_add b");
  if (N == 0 || C == 0) return;
  const bool vec = cuda::vec4_ok(y, ld) && kmath::vec4_ok(b.data);
  cuda::with_act_type(y.dtype, [&](auto t) {
    using T = decltype(t);
    CGRPO_LAUNCH_VEC(vec, bias_add_kernel, cuda::row_grid(N), cuda::row_threads(kmath::group_count(C)),
                     cuda::as_stream(ctx_.stream()), cuda::dp<T>(y), ld, fp(b), N, C);
  });
}

void CudaBackend::bias_bwd(const TensorView& dy, const TensorView& db) {
  const int64_t N = dy.dim(0), C = dy.dim(-1);
  const int64_t ld = cuda::dev_row_stride(dy, N, C, "bias_bwd dy");
  cuda::dev_row_stride(db, 1, C, "bias_bwd db");
  column_sum(*this, cuda::as_stream(ctx_.stream()), BiasTerm{fp(dy), ld}, N, C, fp(db), "bias_bwd db");
}

}  // namespace cgrpo
