// CudaBackend::attention_fwd / attention_bwd: the dispatch and the fp32 flash attention with SIMT math
// (FlashAttention-2, Dao 2023, arXiv:2307.08691, Alg. 1 and 2).
//
// Dispatch (CudaBackend::AttnImpl, default Auto): bf16 q, k, v, o with head_dim 32, 64 or 128 and 16-byte aligned
// views (base and row stride) run the tensor-core kernels of cuda_ops_attention_tc.cu (bf16 mma.sync products, P
// and dS rounded to bf16: backend.h's attention tolerance); everything else, f32 always, runs the SIMT kernels
// below. AttnImpl::Simt forces these kernels (tests compare the two paths), AttnImpl::TensorCore forces the
// tensor cores and is fatal where they do not apply.
//
// The SIMT kernels: Bidirectional GQA, key mask, safe softmax: the semantics of backend.h and
// of the CPU oracle (cpu_ops_attention.cpp). No [L, L] matrix exists anywhere: scores live in registers and
// one [rows, cols] tile in shared memory at a time; the only global scratch is D = rowsum(dO o O) [B, heads, L]
// in the backend's persistent attention workspace.
//
// Kernels (128 threads = 8 thread rows x 16 thread columns; tile sizes per head_dim in flash_tile.h):
//   attn_fwd_kernel     one block per (query tile, head, batch); loops over key tiles with the online softmax.
//   attn_bwd_dot_kernel D_i = sum_d dO_id O_id, one warp per (batch, head, query).
//   attn_bwd_dkdv_kernel one block per (key tile, kv head, batch); loops over the query tiles of every query
//                       head of its group, so dk and dv are summed in registers and written once.
//   attn_bwd_dq_kernel  one block per (query tile, head, batch); loops over key tiles, writes dq once.
// Every output element is written by exactly one thread after a fixed-order reduction (no atomics): two runs
// on the same inputs are bit-identical.
//
// A thread owns 'rows / 8' contiguous rows of a score tile (the rows of its thread row) and 'cols / 16'
// interleaved columns (tx + 16 j); for the [rows, head_dim] products it owns the same rows and head_dim / 16
// contiguous output columns. The 16 threads sharing a row are one half-warp: the forward's row max and row sum
// are a 4-step xor-shuffle butterfly, which leaves the same value in all 16 lanes.
//
// Shared-memory operands are row-major with row stride width + 4 (flash::smem_ld): the inner products read
// float4 along head_dim (A rows broadcast within a quarter-warp, B rows tx + 16 j on distinct bank groups).
// Global loads and stores use 4-element vectors when the view's base is aligned to 4 elements and its row stride
// a multiple of 4 (head offsets are multiples of 16 elements), else scalar: q, k, v are usually column blocks of
// the fused qkv projection, whose alignment depends on the caller.
//
// Activation dtype (backend.h): q, k, v, o are all float or all bf16 (T, cuda_kernels.cuh). bf16 is widened
// exactly when a tile enters shared memory (one 8-byte load per 4 elements on the vector path) and o is rounded
// once when it is stored; shared memory, every product and the softmax stay fp32, the same code as the fp32
// path. lse, D, dout, dq, dk, dv are fp32 in both.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <type_traits>
#include <utility>

#include "cgrpo/backend/cuda_backend.h"
#include "cgrpo/backend/flash_tile.h"
#include "cuda_attention_tc.h"
#include "cuda_check.h"
#include "cuda_kernels.cuh"

namespace cgrpo {

namespace {

using flash::kThreadCols;
using flash::kThreadRows;
using flash::kThreads;
using flash::smem_ld;
using flash::Tiles;

constexpr int kMaxSmemBytes = 227 * 1024;  // sm_90 opt-in limit per block (sm_80: 163 KB; every config is below)
static_assert(kThreads == kThreadRows * kThreadCols, "thread layout");
static_assert(kThreadCols == 16, "row reductions are half-warp shuffles");

// Row max / row sum over the 16 threads of a thread row (one half-warp). xor offsets < 16 never leave the
// half-warp; both halves of the warp run the same instruction, so the full mask is right.
struct HalfWarpReduce {
  __device__ float max(float v) const {
#pragma unroll
    for (int off = kThreadCols / 2; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
  }
  __device__ float sum(float v) const {
#pragma unroll
    for (int off = kThreadCols / 2; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
  }
};

template <class T>  // activation element type: float or bf16 bits
struct FwdArgs {
  const T* q;  // [B*L, heads*hd], row stride ldq
  const T* k;  // [B*L, kv_heads*hd]
  const T* v;  // [B*L, kv_heads*hd]
  const uint8_t* mask;  // [B, L] or nullptr
  T* o;                 // [B*L, heads*hd]
  float* lse;           // [B, heads, L]
  int64_t ldq, ldk, ldv, ldo, L, n_heads, n_kv;
  float scale;  // 1 / sqrt(hd)
  bool vec_q, vec_k, vec_v, vec_o;
};

template <class T>
struct BwdArgs {
  const T *q, *k, *v, *o;             // forward inputs [B*L, *] and output [B*L, heads*hd]
  const float* dout;                  // [B*L, heads*hd]
  const float* lse;                   // [B, heads, L]
  const uint8_t* mask;                // [B, L] or nullptr
  float* D;                           // [B, heads, L] workspace: rowsum(dO o O)
  float *dq, *dk, *dv;                // like q, k, v
  int64_t ldq, ldk, ldv, ldo, lddo, lddq, lddk, lddv, L, n_heads, n_kv;
  float scale;
  bool vec_q, vec_k, vec_v, vec_do, vec_dq, vec_dk, vec_dv;
};

// ------------------------------------------------------------------------------------------ tile movers
// s [ROWS][smem_ld(HD)] = scale * widen(rows [0, valid) of g, row stride ld); rows [valid, ROWS) = 0, so a tail
// tile multiplies finite zeros (0 * garbage could be NaN). g is float or bf16 (T); s is fp32.
template <int ROWS, int HD, class T>
__device__ __forceinline__ void load_rows(float* __restrict__ s, const T* __restrict__ g, int64_t ld, int valid,
                                          bool vec, float scale) {
  constexpr int LD = smem_ld(HD);
  if (vec) {
    constexpr int C4 = HD / 4;
    for (int idx = threadIdx.x; idx < ROWS * C4; idx += kThreads) {
      const int r = idx / C4, c = (idx % C4) * 4;
      cuda::F4 x{0.0f, 0.0f, 0.0f, 0.0f};
      if (r < valid) x = cuda::ld4(g + r * ld + c);
      x.x *= scale;
      x.y *= scale;
      x.z *= scale;
      x.w *= scale;
      cuda::st4(s + r * LD + c, x);
    }
  } else {
    for (int idx = threadIdx.x; idx < ROWS * HD; idx += kThreads) {
      const int r = idx / HD, c = idx % HD;
      s[r * LD + c] = r < valid ? scale * cuda::widen(g[r * ld + c]) : 0.0f;
    }
  }
}

// keep[c] = 1 when key k0 + c exists and is not masked.
template <int K>
__device__ __forceinline__ void load_keep(int* keep, int64_t k0, int64_t L, const uint8_t* mask_row) {
  for (int c = threadIdx.x; c < K; c += kThreads) keep[c] = flash::key_valid(k0 + c, L, mask_row) ? 1 : 0;
}

// N consecutive floats from shared memory (16-byte aligned when N % 4 == 0, 8-byte when N == 2).
template <int N>
__device__ __forceinline__ void load_smem(float (&x)[N], const float* p) {
  if constexpr (N % 4 == 0) {
#pragma unroll
    for (int n = 0; n < N; n += 4) {
      const float4 t = *reinterpret_cast<const float4*>(p + n);
      x[n] = t.x, x[n + 1] = t.y, x[n + 2] = t.z, x[n + 3] = t.w;
    }
  } else if constexpr (N == 2) {
    const float2 t = *reinterpret_cast<const float2*>(p);
    x[0] = t.x, x[1] = t.y;
  } else {
#pragma unroll
    for (int n = 0; n < N; ++n) x[n] = p[n];
  }
}

// N consecutive fp32 values of one output row to global memory of type T (float, or bf16: each rounded once),
// 4 at a time when vec and N % 4 == 0.
template <int N, class T>
__device__ __forceinline__ void store_row(T* g, const float (&x)[N], bool vec) {
  if constexpr (N % 4 == 0) {
    if (vec) {
#pragma unroll
      for (int n = 0; n < N; n += 4) cuda::st4(g + n, cuda::F4{x[n], x[n + 1], x[n + 2], x[n + 3]});
      return;
    }
  }
#pragma unroll
  for (int n = 0; n < N; ++n) g[n] = cuda::narrow<T>(x[n]);
}

__device__ __forceinline__ float comp(const float4& v, int c) { return c == 0 ? v.x : c == 1 ? v.y : c == 2 ? v.z : v.w; }

// ------------------------------------------------------------------------------------------ tile products
// acc[i][j] += sum_d A[ty*TM + i][d] * B[tx + 16 j][d]        A, B [., HD] in smem (row stride smem_ld(HD))
// (S = Q K^T, dP = dO V^T and their transposes; d runs in order 0..HD-1 for every element.)
template <int TM, int TN, int HD>
__device__ __forceinline__ void mma_nt(float (&acc)[TM][TN], const float* __restrict__ A, const float* __restrict__ B,
                                       int ty, int tx) {
  constexpr int LD = smem_ld(HD);
  const float* a0 = A + ty * TM * LD;
  const float* b0 = B + tx * LD;
#pragma unroll 4
  for (int d = 0; d < HD; d += 4) {
    float4 a[TM], b[TN];
#pragma unroll
    for (int i = 0; i < TM; ++i) a[i] = *reinterpret_cast<const float4*>(a0 + i * LD + d);
#pragma unroll
    for (int j = 0; j < TN; ++j) b[j] = *reinterpret_cast<const float4*>(b0 + j * kThreadCols * LD + d);
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        float t = acc[i][j];
        t = fmaf(a[i].x, b[j].x, t);
        t = fmaf(a[i].y, b[j].y, t);
        t = fmaf(a[i].z, b[j].z, t);
        t = fmaf(a[i].w, b[j].w, t);
        acc[i][j] = t;
      }
  }
}

// acc[i][n] += sum_c P[ty*TM + i][c] * B[c][tx*NV + n]        P [., KC] (row stride smem_ld(KC)), B [KC, HD]
// (O += P V, dV += P^T dO, dK += dS^T Q, dQ += dS K; c runs in order 0..KC-1.)
template <int TM, int NV, int KC, int HD>
__device__ __forceinline__ void mma_nn(float (&acc)[TM][NV], const float* __restrict__ P, const float* __restrict__ B,
                                       int ty, int tx) {
  constexpr int LDP = smem_ld(KC), LDB = smem_ld(HD);
  static_assert(KC % 4 == 0, "tile width must be a multiple of 4");
  const float* p0 = P + ty * TM * LDP;
  const float* b0 = B + tx * NV;
#pragma unroll 2
  for (int c = 0; c < KC; c += 4) {
    float4 p[TM];
#pragma unroll
    for (int i = 0; i < TM; ++i) p[i] = *reinterpret_cast<const float4*>(p0 + i * LDP + c);
#pragma unroll
    for (int cc = 0; cc < 4; ++cc) {
      float b[NV];
      load_smem<NV>(b, b0 + (c + cc) * LDB);
#pragma unroll
      for (int i = 0; i < TM; ++i) {
        const float pi = comp(p[i], cc);
#pragma unroll
        for (int n = 0; n < NV; ++n) acc[i][n] = fmaf(pi, b[n], acc[i][n]);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------ forward
// FA-2 Alg. 1 for one (query tile, head, batch): Q_i in smem (pre-scaled by 1/sqrt(hd), so S = Q K^T is the
// scaled score); for each key tile j: S = Q_i K_j^T, online softmax (m, l, O rescale), O += P V_j; finally
// O /= l and lse = m + log l. Query rows past L (tail) compute on zero rows and are not stored.
template <int HD, class T>
__global__ void __launch_bounds__(kThreads) attn_fwd_kernel(const FwdArgs<T> a) {
  constexpr int BQ = Tiles<HD>::kFwdQ, BK = Tiles<HD>::kFwdK;
  constexpr int TM = BQ / kThreadRows, TN = BK / kThreadCols, NV = HD / kThreadCols;
  constexpr int LDH = smem_ld(HD), LDP = smem_ld(BK);
  static_assert(BQ % kThreadRows == 0 && BK % kThreadCols == 0 && HD % kThreadCols == 0, "tile shape");
  extern __shared__ float4 smem4[];
  float* Qs = reinterpret_cast<float*>(smem4);  // [BQ][LDH]
  float* Ks = Qs + BQ * LDH;                    // [BK][LDH]
  float* Vs = Ks + BK * LDH;                    // [BK][LDH]
  float* Ps = Vs + BK * LDH;                    // [BQ][LDP]  probabilities of the current key tile
  int* keep_s = reinterpret_cast<int*>(Ps + BQ * LDP);  // [BK]

  const flash::TileCoord t = flash::tile_coord(blockIdx.x, blockIdx.y, blockIdx.z, BQ);
  const int64_t g = flash::kv_head_of(t.head, a.n_heads, a.n_kv);
  const int ty = threadIdx.x / kThreadCols, tx = threadIdx.x % kThreadCols;
  const int rows = flash::tile_extent(t.row0, BQ, a.L);
  const uint8_t* mask_row = a.mask ? a.mask + t.b * a.L : nullptr;

  load_rows<BQ, HD>(Qs, a.q + flash::row_offset(t.b, a.L, t.row0, a.ldq, t.head, HD), a.ldq, rows, a.vec_q, a.scale);
  float o[TM][NV], m[TM], l[TM];
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int n = 0; n < NV; ++n) o[i][n] = 0.0f;
  }

  for (int64_t k0 = 0; k0 < a.L; k0 += BK) {
    const int keys = flash::tile_extent(k0, BK, a.L);
    __syncthreads();  // the previous tile's readers of Ks, Vs, Ps, keep_s are done
    load_rows<BK, HD>(Ks, a.k + flash::row_offset(t.b, a.L, k0, a.ldk, g, HD), a.ldk, keys, a.vec_k, 1.0f);
    load_rows<BK, HD>(Vs, a.v + flash::row_offset(t.b, a.L, k0, a.ldv, g, HD), a.ldv, keys, a.vec_v, 1.0f);
    load_keep<BK>(keep_s, k0, a.L, mask_row);
    __syncthreads();

    float s[TM][TN] = {};
    mma_nt<TM, TN, HD>(s, Qs, Ks, ty, tx);  // S = (Q / sqrt(hd)) K^T       Alg. 1 line 8
    bool keep[TN];
#pragma unroll
    for (int j = 0; j < TN; ++j) keep[j] = keep_s[tx + j * kThreadCols] != 0;
#pragma unroll
    for (int i = 0; i < TM; ++i) flash::online_softmax_update(s[i], keep, m[i], l[i], o[i], HalfWarpReduce{});
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) Ps[(ty * TM + i) * LDP + tx + j * kThreadCols] = s[i][j];
    __syncthreads();
    mma_nn<TM, NV, BK, HD>(o, Ps, Vs, ty, tx);  // O += P V                  Alg. 1 line 10
  }

#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const float lse_i = flash::finalize_row(m[i], l[i], o[i]);  // Alg. 1 lines 12-13
    const int r = ty * TM + i;
    if (r < rows) {
      store_row<NV>(a.o + flash::row_offset(t.b, a.L, t.row0 + r, a.ldo, t.head, HD) + tx * NV, o[i], a.vec_o);
      if (tx == 0) a.lse[(t.b * a.n_heads + t.head) * a.L + t.row0 + r] = lse_i;
    }
  }
}

// ------------------------------------------------------------------------------------------ backward
// FA-2 Alg. 2 line 4: D_i = sum_d dO_id O_id for every (b, h, i), D [B, heads, L]. One warp per row; the
// lanes' partial sums meet in a fixed xor butterfly.
template <class T>
__global__ void attn_bwd_dot_kernel(const BwdArgs<T> a, int hd) {
  const int64_t rows = a.n_heads * a.L;  // (h, i) rows of batch b = blockIdx.y: w = h*L + i
  const int64_t b = blockIdx.y;
  const int lane = threadIdx.x % 32;
  const int64_t warps_per_block = blockDim.x / 32;
  for (int64_t w = blockIdx.x * warps_per_block + threadIdx.x / 32; w < rows; w += gridDim.x * warps_per_block) {
    const int64_t h = w / a.L, i = w % a.L;
    const T* od = a.o + flash::row_offset(b, a.L, i, a.ldo, h, hd);
    const float* dd = a.dout + flash::row_offset(b, a.L, i, a.lddo, h, hd);
    float acc = 0.0f;
    for (int c = lane; c < hd; c += 32) acc = fmaf(dd[c], cuda::widen(od[c]), acc);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (lane == 0) a.D[b * rows + w] = acc;  // (b*heads + h)*L + i
  }
}

// FA-2 Alg. 2 outer loop for one (key tile, kv head, batch): K_j, V_j stay in smem, dK_j, dV_j in registers.
// Inner loop over the query tiles of every query head h of the group (GQA: dk, dv of a kv head sum over its
// query heads): S^T = K_j Q_i^T (Q pre-scaled), P^T = exp(S^T - lse) (line 11), dV_j += P^T dO_i (line 12),
// dP^T = V_j dO_i^T (line 13), dS^T = P^T o (dP^T - D) (line 16), dK_j += dS^T Q_i (line 18, the scale is in Q).
template <int HD, class T>
__global__ void __launch_bounds__(kThreads) attn_bwd_dkdv_kernel(const BwdArgs<T> a) {
  constexpr int BQ = Tiles<HD>::kDkvQ, BK = Tiles<HD>::kDkvK;
  constexpr int TM = BK / kThreadRows, TN = BQ / kThreadCols, NV = HD / kThreadCols;
  constexpr int LDH = smem_ld(HD), LDQ = smem_ld(BQ);
  static_assert(BK % kThreadRows == 0 && BQ % kThreadCols == 0 && HD % kThreadCols == 0, "tile shape");
  extern __shared__ float4 smem4[];
  float* Ks = reinterpret_cast<float*>(smem4);  // [BK][LDH]
  float* Vs = Ks + BK * LDH;                    // [BK][LDH]
  float* Qs = Vs + BK * LDH;                    // [BQ][LDH]
  float* dOs = Qs + BQ * LDH;                   // [BQ][LDH]
  float* Pt = dOs + BQ * LDH;                   // [BK][LDQ]  P^T of the current query tile
  float* dSt = Pt + BK * LDQ;                   // [BK][LDQ]  dS^T
  float* lse_s = dSt + BK * LDQ;                // [BQ]
  float* D_s = lse_s + BQ;                      // [BQ]
  int* keep_s = reinterpret_cast<int*>(D_s + BQ);  // [BK]

  const flash::TileCoord t = flash::tile_coord(blockIdx.x, blockIdx.y, blockIdx.z, BK);  // t.head: kv head
  const int ty = threadIdx.x / kThreadCols, tx = threadIdx.x % kThreadCols;
  const int keys = flash::tile_extent(t.row0, BK, a.L);
  const uint8_t* mask_row = a.mask ? a.mask + t.b * a.L : nullptr;

  load_rows<BK, HD>(Ks, a.k + flash::row_offset(t.b, a.L, t.row0, a.ldk, t.head, HD), a.ldk, keys, a.vec_k, 1.0f);
  load_rows<BK, HD>(Vs, a.v + flash::row_offset(t.b, a.L, t.row0, a.ldv, t.head, HD), a.ldv, keys, a.vec_v, 1.0f);
  load_keep<BK>(keep_s, t.row0, a.L, mask_row);
  __syncthreads();
  bool keep[TM];  // this thread's key rows
#pragma unroll
  for (int i = 0; i < TM; ++i) keep[i] = keep_s[ty * TM + i] != 0;

  float dk[TM][NV] = {}, dv[TM][NV] = {};
  const int64_t group = a.n_heads / a.n_kv;
  for (int64_t h = t.head * group; h < (t.head + 1) * group; ++h) {
    const float* lse_h = a.lse + (t.b * a.n_heads + h) * a.L;
    const float* D_h = a.D + (t.b * a.n_heads + h) * a.L;
    for (int64_t q0 = 0; q0 < a.L; q0 += BQ) {
      const int qrows = flash::tile_extent(q0, BQ, a.L);
      __syncthreads();  // the previous tile's readers of Qs, dOs, Pt, dSt, lse_s, D_s are done
      load_rows<BQ, HD>(Qs, a.q + flash::row_offset(t.b, a.L, q0, a.ldq, h, HD), a.ldq, qrows, a.vec_q, a.scale);
      load_rows<BQ, HD>(dOs, a.dout + flash::row_offset(t.b, a.L, q0, a.lddo, h, HD), a.lddo, qrows, a.vec_do, 1.0f);
      for (int c = threadIdx.x; c < BQ; c += kThreads) {
        lse_s[c] = c < qrows ? lse_h[q0 + c] : -INFINITY;  // a missing query row: P = 0, no gradient
        D_s[c] = c < qrows ? D_h[q0 + c] : 0.0f;
      }
      __syncthreads();

      float st[TM][TN] = {}, dpt[TM][TN] = {};
      mma_nt<TM, TN, HD>(st, Ks, Qs, ty, tx);   // S^T = K (Q / sqrt(hd))^T
      mma_nt<TM, TN, HD>(dpt, Vs, dOs, ty, tx);  // dP^T = V dO^T
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) {
          const int c = tx + j * kThreadCols;
          const float p = flash::recompute_p(st[i][j], keep[i], lse_s[c]);
          Pt[(ty * TM + i) * LDQ + c] = p;
          dSt[(ty * TM + i) * LDQ + c] = flash::grad_score(p, dpt[i][j], D_s[c]);
        }
      __syncthreads();
      mma_nn<TM, NV, BQ, HD>(dv, Pt, dOs, ty, tx);  // dV += P^T dO
      mma_nn<TM, NV, BQ, HD>(dk, dSt, Qs, ty, tx);  // dK += dS^T (Q / sqrt(hd))
    }
  }

#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int r = ty * TM + i;
    if (r < keys) {
      store_row<NV>(a.dk + flash::row_offset(t.b, a.L, t.row0 + r, a.lddk, t.head, HD) + tx * NV, dk[i], a.vec_dk);
      store_row<NV>(a.dv + flash::row_offset(t.b, a.L, t.row0 + r, a.lddv, t.head, HD) + tx * NV, dv[i], a.vec_dv);
    }
  }
}

// dQ for one (query tile, head, batch), FA-2 Alg. 2 lines 11-17 with the loops swapped (queries outer) so dq
// is summed in registers and written once instead of accumulated across blocks: Q_i, dO_i, lse_i, D_i stay in
// smem; for each key tile j: S = Q_i K_j^T, P = exp(S - lse), dP = dO_i V_j^T, dS = P o (dP - D),
// dQ_i += dS K_j; finally dq = dQ_i / sqrt(hd).
template <int HD, class T>
__global__ void __launch_bounds__(kThreads) attn_bwd_dq_kernel(const BwdArgs<T> a) {
  constexpr int BQ = Tiles<HD>::kDqQ, BK = Tiles<HD>::kDqK;
  constexpr int TM = BQ / kThreadRows, TN = BK / kThreadCols, NV = HD / kThreadCols;
  constexpr int LDH = smem_ld(HD), LDK = smem_ld(BK);
  static_assert(BQ % kThreadRows == 0 && BK % kThreadCols == 0 && HD % kThreadCols == 0, "tile shape");
  extern __shared__ float4 smem4[];
  float* Qs = reinterpret_cast<float*>(smem4);  // [BQ][LDH]
  float* dOs = Qs + BQ * LDH;                   // [BQ][LDH]
  float* Ks = dOs + BQ * LDH;                   // [BK][LDH]
  float* Vs = Ks + BK * LDH;                    // [BK][LDH]
  float* dSs = Vs + BK * LDH;                   // [BQ][LDK]
  float* lse_s = dSs + BQ * LDK;                // [BQ]
  float* D_s = lse_s + BQ;                      // [BQ]
  int* keep_s = reinterpret_cast<int*>(D_s + BQ);  // [BK]

  const flash::TileCoord t = flash::tile_coord(blockIdx.x, blockIdx.y, blockIdx.z, BQ);
  const int64_t g = flash::kv_head_of(t.head, a.n_heads, a.n_kv);
  const int ty = threadIdx.x / kThreadCols, tx = threadIdx.x % kThreadCols;
  const int rows = flash::tile_extent(t.row0, BQ, a.L);
  const uint8_t* mask_row = a.mask ? a.mask + t.b * a.L : nullptr;

  load_rows<BQ, HD>(Qs, a.q + flash::row_offset(t.b, a.L, t.row0, a.ldq, t.head, HD), a.ldq, rows, a.vec_q, a.scale);
  load_rows<BQ, HD>(dOs, a.dout + flash::row_offset(t.b, a.L, t.row0, a.lddo, t.head, HD), a.lddo, rows, a.vec_do,
                    1.0f);
  const float* lse_h = a.lse + (t.b * a.n_heads + t.head) * a.L;
  const float* D_h = a.D + (t.b * a.n_heads + t.head) * a.L;
  for (int r = threadIdx.x; r < BQ; r += kThreads) {
    lse_s[r] = r < rows ? lse_h[t.row0 + r] : -INFINITY;
    D_s[r] = r < rows ? D_h[t.row0 + r] : 0.0f;
  }

  float dq[TM][NV] = {};
  for (int64_t k0 = 0; k0 < a.L; k0 += BK) {
    const int keys = flash::tile_extent(k0, BK, a.L);
    __syncthreads();  // the previous tile's readers of Ks, Vs, dSs, keep_s are done
    load_rows<BK, HD>(Ks, a.k + flash::row_offset(t.b, a.L, k0, a.ldk, g, HD), a.ldk, keys, a.vec_k, 1.0f);
    load_rows<BK, HD>(Vs, a.v + flash::row_offset(t.b, a.L, k0, a.ldv, g, HD), a.ldv, keys, a.vec_v, 1.0f);
    load_keep<BK>(keep_s, k0, a.L, mask_row);
    __syncthreads();

    float s[TM][TN] = {}, dp[TM][TN] = {};
    mma_nt<TM, TN, HD>(s, Qs, Ks, ty, tx);    // S = (Q / sqrt(hd)) K^T
    mma_nt<TM, TN, HD>(dp, dOs, Vs, ty, tx);  // dP = dO V^T
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const int r = ty * TM + i, c = tx + j * kThreadCols;
        const float p = flash::recompute_p(s[i][j], keep_s[c] != 0, lse_s[r]);
        dSs[r * LDK + c] = flash::grad_score(p, dp[i][j], D_s[r]);
      }
    __syncthreads();
    mma_nn<TM, NV, BK, HD>(dq, dSs, Ks, ty, tx);  // dQ += dS K
  }

#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int r = ty * TM + i;
#pragma unroll
    for (int n = 0; n < NV; ++n) dq[i][n] *= a.scale;
    if (r < rows)
      store_row<NV>(a.dq + flash::row_offset(t.b, a.L, t.row0 + r, a.lddq, t.head, HD) + tx * NV, dq[i], a.vec_dq);
  }
}

// ------------------------------------------------------------------------------------------ launchers
template <class Args>
void launch(void (*kernel)(Args), dim3 grid, int smem_floats, cudaStream_t stream, const Args& a) {
  const int bytes = smem_floats * static_cast<int>(sizeof(float));
  CGRPO_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  kernel<<<grid, kThreads, bytes, stream>>>(a);
  CGRPO_CUDA(cudaGetLastError());
}

template <int HD, class T>
void launch_fwd(const FwdArgs<T>& a, int64_t B, cudaStream_t stream) {
  using TS = Tiles<HD>;
  static_assert(flash::fwd_smem_floats(HD, TS::kFwdQ, TS::kFwdK) * 4 <= kMaxSmemBytes, "fwd smem");
  const dim3 grid(static_cast<unsigned>(flash::tile_count(a.L, TS::kFwdQ)), static_cast<unsigned>(a.n_heads),
                  static_cast<unsigned>(B));
  launch(attn_fwd_kernel<HD, T>, grid, flash::fwd_smem_floats(HD, TS::kFwdQ, TS::kFwdK), stream, a);
}

template <int HD, class T>
void launch_bwd(const BwdArgs<T>& a, int64_t B, cudaStream_t stream) {
  using TS = Tiles<HD>;
  static_assert(flash::dkdv_smem_floats(HD, TS::kDkvQ, TS::kDkvK) * 4 <= kMaxSmemBytes, "dkdv smem");
  static_assert(flash::dq_smem_floats(HD, TS::kDqQ, TS::kDqK) * 4 <= kMaxSmemBytes, "dq smem");
  const dim3 gkv(static_cast<unsigned>(flash::tile_count(a.L, TS::kDkvK)), static_cast<unsigned>(a.n_kv),
                 static_cast<unsigned>(B));
  launch(attn_bwd_dkdv_kernel<HD, T>, gkv, flash::dkdv_smem_floats(HD, TS::kDkvQ, TS::kDkvK), stream, a);
  const dim3 gq(static_cast<unsigned>(flash::tile_count(a.L, TS::kDqQ)), static_cast<unsigned>(a.n_heads),
                static_cast<unsigned>(B));
  launch(attn_bwd_dq_kernel<HD, T>, gq, flash::dq_smem_floats(HD, TS::kDqQ, TS::kDqK), stream, a);
}

// The checks both directions share beyond attention_layout: device memory, a compiled head_dim, grid limits.
void check_cuda_attention(const char* op, const AttnShape& s, std::initializer_list<std::pair<const char*, const TensorView*>> views) {
  for (const auto& [name, t] : views)
    CGRPO_CHECK(t->device == Device::CUDA, "CudaBackend::", op, " needs device memory, got ", name, " on ",
                device_name(t->device));
  CGRPO_CHECK(s.head_dim == 16 || s.head_dim == 32 || s.head_dim == 64 || s.head_dim == 128, "CudaBackend::", op,
              ": head_dim ", s.head_dim, " is not supported", hint("the CUDA kernels are built for head_dim 16, 32, 64 and 128"));
  CGRPO_CHECK(s.n_heads <= 65535 && s.B <= 65535 && s.L <= (int64_t(1) << 30), "CudaBackend::", op, ": B=", s.B,
              " heads=", s.n_heads, " L=", s.L, " exceed the grid limits (B, heads <= 65535, L <= 2^30)");
}

// The kernels for one head_dim (16, 32, 64 or 128; check_cuda_attention has refused the rest).
template <class Launch>
void for_head_dim(int64_t hd, Launch&& launch_hd) {
  switch (hd) {
    case 16: launch_hd(std::integral_constant<int, 16>{}); break;
    case 32: launch_hd(std::integral_constant<int, 32>{}); break;
    case 64: launch_hd(std::integral_constant<int, 64>{}); break;
    case 128: launch_hd(std::integral_constant<int, 128>{}); break;
  }
}

// Whether this call runs the tensor-core kernels (cuda_ops_attention_tc.cu): bf16 q, k, v, o, a head_dim they are
// built for and 16-byte aligned views, unless impl says otherwise (CudaBackend::AttnImpl).
bool take_tc(CudaBackend::AttnImpl impl, const char* op, const AttnShape& s, const AttnLayout& lay, const TensorView& q,
             const TensorView& k, const TensorView& v, const TensorView& o) {
  if (impl == CudaBackend::AttnImpl::Simt) return false;
  const bool ok = q.dtype == DType::BF16 && flash::tc_supported_head_dim(s.head_dim) &&
                  cuda::tc::aligned16(q, lay.ldq) && cuda::tc::aligned16(k, lay.ldk) &&
                  cuda::tc::aligned16(v, lay.ldv) && cuda::tc::aligned16(o, lay.ldo);
  CGRPO_CHECK(ok || impl == CudaBackend::AttnImpl::Auto, "CudaBackend::", op,
              ": AttnImpl::TensorCore needs bf16 q, k, v, o, head_dim 32, 64 or 128 and 16-byte aligned views (base "
              "and row stride), got ", dtype_name(q.dtype), " head_dim ", s.head_dim, " row strides ", lay.ldq, ", ",
              lay.ldk, ", ", lay.ldv, ", ", lay.ldo);
  return ok;
}

}  // namespace

float* CudaBackend::attention_workspace(size_t floats) {
  const size_t bytes = floats * sizeof(float);
  if (attn_ws_.bytes() < bytes) {
    if (!attn_ws_.empty()) ctx_.synchronize();  // queued kernels may still read the old buffer
    attn_ws_.reset();
    attn_ws_ = Buffer(bytes, Device::CUDA, MemCategory::Workspace);
  }
  return attn_ws_.as<float>();
}

void CudaBackend::attention_fwd(const AttnShape& s, const TensorView& q, const TensorView& k, const TensorView& v,
                                const uint8_t* key_mask, const TensorView& o, float* lse) {
  const AttnLayout lay = attention_layout(s, q, k, v, o);  // q, k, v, o: one dtype, f32 or bf16
  check_cuda_attention("attention_fwd", s, {{"q", &q}, {"k", &k}, {"v", &v}, {"o", &o}});
  const cudaStream_t stream = static_cast<cudaStream_t>(ctx_.stream());
  const float scale = static_cast<float>(1.0 / std::sqrt(double(s.head_dim)));  // the CPU oracle's 1/sqrt(hd)
  if (take_tc(attn_impl_, "attention_fwd", s, lay, q, k, v, o)) {
    cuda::tc::FwdArgs a{};
    a.q = cuda::dp<const uint16_t>(q), a.k = cuda::dp<const uint16_t>(k), a.v = cuda::dp<const uint16_t>(v);
    a.mask = key_mask, a.o = cuda::dp<uint16_t>(o), a.lse = lse;
    a.ldq = lay.ldq, a.ldk = lay.ldk, a.ldv = lay.ldv, a.ldo = lay.ldo;
    a.L = s.L, a.n_heads = s.n_heads, a.n_kv = s.n_kv_heads, a.scale = scale;
    cuda::tc::launch_fwd(a, s.B, s.head_dim, stream);
    return;
  }
  cuda::with_act_type(q.dtype, [&](auto elem) {
    using T = decltype(elem);
    FwdArgs<T> a{};
    a.q = cuda::dp<const T>(q), a.k = cuda::dp<const T>(k), a.v = cuda::dp<const T>(v), a.mask = key_mask;
    a.o = cuda::dp<T>(o), a.lse = lse;
    a.ldq = lay.ldq, a.ldk = lay.ldk, a.ldv = lay.ldv, a.ldo = lay.ldo;
    a.L = s.L, a.n_heads = s.n_heads, a.n_kv = s.n_kv_heads;
    a.scale = scale;
    a.vec_q = cuda::vec4_ok(q, a.ldq), a.vec_k = cuda::vec4_ok(k, a.ldk), a.vec_v = cuda::vec4_ok(v, a.ldv);
    a.vec_o = cuda::vec4_ok(o, a.ldo);
    for_head_dim(s.head_dim, [&](auto hd) { launch_fwd<decltype(hd)::value>(a, s.B, stream); });
  });
}

void CudaBackend::attention_bwd(const AttnShape& s, const TensorView& q, const TensorView& k, const TensorView& v,
                                const uint8_t* key_mask, const TensorView& o, const float* lse, const TensorView& dout,
                                const TensorView& dq, const TensorView& dk, const TensorView& dv) {
  const AttnLayout lay = attention_layout(s, q, k, v, o);      // one dtype, f32 or bf16
  const AttnLayout dl = attention_layout(s, dq, dk, dv, dout);  // one dtype, which must be f32
  CGRPO_CHECK(dq.dtype == DType::F32, "CudaBackend::attention_bwd: dq, dk, dv and dout must be f32 (gradients stay "
              "fp32 for bf16 activations), got dq ", dq.str());
  check_cuda_attention("attention_bwd", s,
                       {{"q", &q}, {"k", &k}, {"v", &v}, {"o", &o}, {"dout", &dout}, {"dq", &dq}, {"dk", &dk},
                        {"dv", &dv}});
  const cudaStream_t stream = static_cast<cudaStream_t>(ctx_.stream());
  const float scale = static_cast<float>(1.0 / std::sqrt(double(s.head_dim)));
  if (take_tc(attn_impl_, "attention_bwd", s, lay, q, k, v, o)) {
    float* ws = attention_workspace(  // D [B, heads, L], bf16(dO)
        size_t(flash::tc_bwd_workspace_floats(s.B, s.n_heads, s.L, s.head_dim)));
    cuda::tc::BwdArgs a{};
    a.q = cuda::dp<const uint16_t>(q), a.k = cuda::dp<const uint16_t>(k), a.v = cuda::dp<const uint16_t>(v);
    a.o = cuda::dp<const uint16_t>(o), a.dout = cuda::dp<const float>(dout), a.lse = lse, a.mask = key_mask;
    a.D = ws, a.dob = cuda::tc::bwd_dob(ws, s);
    a.dq = cuda::dp<float>(dq), a.dk = cuda::dp<float>(dk), a.dv = cuda::dp<float>(dv);
    a.ldq = lay.ldq, a.ldk = lay.ldk, a.ldv = lay.ldv, a.ldo = lay.ldo;
    a.lddo = dl.ldo, a.lddq = dl.ldq, a.lddk = dl.ldk, a.lddv = dl.ldv;
    a.L = s.L, a.n_heads = s.n_heads, a.n_kv = s.n_kv_heads, a.scale = scale;
    auto vec2 = [](const TensorView& t, int64_t ld) {  // float2 stores: 8-byte aligned base, even row stride
      return reinterpret_cast<uintptr_t>(t.data) % 8 == 0 && ld % 2 == 0;
    };
    a.vec_dq = vec2(dq, a.lddq), a.vec_dk = vec2(dk, a.lddk), a.vec_dv = vec2(dv, a.lddv);
    cuda::tc::launch_bwd(a, s.B, s.head_dim, stream);
    return;
  }
  float* D = attention_workspace(static_cast<size_t>(s.B * s.n_heads * s.L));  // [B, heads, L]
  cuda::with_act_type(q.dtype, [&](auto elem) {
    using T = decltype(elem);
    BwdArgs<T> a{};
    a.q = cuda::dp<const T>(q), a.k = cuda::dp<const T>(k), a.v = cuda::dp<const T>(v), a.o = cuda::dp<const T>(o);
    a.dout = cuda::dp<const float>(dout), a.lse = lse, a.mask = key_mask, a.D = D;
    a.dq = cuda::dp<float>(dq), a.dk = cuda::dp<float>(dk), a.dv = cuda::dp<float>(dv);
    a.ldq = lay.ldq, a.ldk = lay.ldk, a.ldv = lay.ldv, a.ldo = lay.ldo;
    a.lddo = dl.ldo, a.lddq = dl.ldq, a.lddk = dl.ldk, a.lddv = dl.ldv;
    a.L = s.L, a.n_heads = s.n_heads, a.n_kv = s.n_kv_heads;
    a.scale = scale;
    a.vec_q = cuda::vec4_ok(q, a.ldq), a.vec_k = cuda::vec4_ok(k, a.ldk), a.vec_v = cuda::vec4_ok(v, a.ldv);
    a.vec_do = cuda::vec4_ok(dout, a.lddo), a.vec_dq = cuda::vec4_ok(dq, a.lddq), a.vec_dk = cuda::vec4_ok(dk, a.lddk);
    a.vec_dv = cuda::vec4_ok(dv, a.lddv);

    // D = rowsum(dO o O): 8 warps per block, grid (row blocks, B)
    const int64_t rows = s.n_heads * s.L;  // per batch row
    const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((rows + 7) / 8, 8192));
    attn_bwd_dot_kernel<<<dim3(blocks, static_cast<unsigned>(s.B)), 256, 0, stream>>>(a, static_cast<int>(s.head_dim));
    CGRPO_CUDA(cudaGetLastError());
    for_head_dim(s.head_dim, [&](auto hd) { launch_bwd<decltype(hd)::value>(a, s.B, stream); });
  });
}

}  // namespace cgrpo
