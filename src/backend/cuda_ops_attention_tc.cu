// bf16 flash attention on tensor cores: FlashAttention-2 (Dao 2023, arXiv:2307.08691, Alg. 1 and 2) with every
// product a warp-level mma.sync.m16n8k16 (bf16 operands, fp32 accumulators in registers). CudaBackend's
// attention_fwd/bwd (cuda_ops_attention.cu) dispatch here for bf16 q, k, v, o with head_dim 32, 64 or 128 and
// 16-byte aligned views; the semantics are those of backend.h and of the SIMT kernels (bidirectional GQA, key
// mask, safe softmax, lse [B, heads, L] saved, dq/dk/dv fp32 written once, no atomics: bit-identical reruns).
//
// Numerics (backend.h): q, k, v and dO enter the products as bf16; S = Q K^T, dP = dO V^T and every sum are
// fp32; the probabilities P and the score gradients dS are rounded to bf16 as the A operand of the second
// product of each pair (O += P V, dV += P^T dO, dK += dS^T Q, dQ += dS K), as FlashAttention does. The
// softmax runs in the log2 domain (s2 = s log2 e, exp2). D = rowsum(bf16(dO) o O) uses the same rounded dO as
// dP, so the identity D_i = sum_j P_ij dP_ij that dS = P (dP - D) relies on holds for the values used.
//
// Kernels (4 warps = 128 threads; each warp owns 16 rows of the block's 64-row tile; flash::TcTiles):
//   fwd_kernel   one block per (64 queries, head, batch): S = Q K^T per key tile, online softmax on the S
//                fragments (row max / sum over the 4 lanes of a quad), P -> bf16 A fragments, O += P V.
//   prep_kernel  one warp per (batch, head, query): bf16(dO) into the workspace and D.
//   dkdv_kernel  one block per (64 keys, kv head, batch): S^T = K Q^T and dP^T = V dO^T per query tile of every
//                query head of the group, P^T and dS^T -> A fragments, dV += P^T dO, dK += dS^T Q; written once.
//   dq_kernel    one block per (64 queries, head, batch): S = Q K^T, dP = dO V^T per key tile, dQ += dS K.
// The streamed tiles (K, V in fwd and dq; Q, dO in dkdv) are double-buffered: cp.async (16 bytes, zero-filled
// past the end of the sequence) loads tile j + 1 while tile j is computed. Shared tiles are row-major bf16 with
// row stride hd + 8 (flash::tc_ld: ldmatrix rows on distinct banks without a swizzle). Operands reach
// registers by ldmatrix.x4 (.trans for the [k][n] tiles V, dO, Q, K that are B operands of the second
// products); the lane <-> element maps are mma_frag.h, unit-tested on the CPU.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "cgrpo/backend/flash_tile.h"
#include "cgrpo/backend/mma_frag.h"
#include "cuda_attention_tc.h"
#include "cuda_check.h"
#include "cuda_kernels.cuh"

namespace cgrpo::cuda::tc {

namespace {

using flash::kTcRows;
using flash::kTcThreads;
using flash::tc_ld;
using flash::TcTiles;

constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;
constexpr int kMaxSmemBytes = 227 * 1024;  // sm_90 opt-in limit per block; sm_80's is 163 KB

// ------------------------------------------------------------------------------------------ PTX
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// Four 8x8 bf16 matrices (mma_frag.h: ldsm_elem); p is this lane's row address.
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const uint16_t* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const uint16_t* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
// d += A B: A 16x16 (a0..a3), B 16x8 (b0, b1) bf16, d 16x8 fp32 (mma_frag.h maps).
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// 16 bytes global -> shared, asynchronous; src-size 0 writes 16 zero bytes and reads nothing.
__device__ __forceinline__ void cp_async16(uint16_t* s, const uint16_t* g, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(s)), "l"(g), "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most N of this thread's committed groups are pending.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
// Two fp32 -> one register of two bf16 (round to nearest even), lo in the low half (the lower column).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  uint32_t r;
  memcpy(&r, &v, sizeof(r));
  return r;
}

// Row reductions of a C fragment: the lanes holding a row are one quad (mma_frag.h quad_xor).
__device__ __forceinline__ float quad_max(float v) {
#pragma unroll
  for (int s = 0; s < mma::kQuadSteps; ++s) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, mma::quad_xor(s)));
  return v;
}
__device__ __forceinline__ float quad_sum(float v) {
#pragma unroll
  for (int s = 0; s < mma::kQuadSteps; ++s) v += __shfl_xor_sync(0xffffffffu, v, mma::quad_xor(s));
  return v;
}

// ------------------------------------------------------------------------------------------ tiles
// s [ROWS][tc_ld(HD)] <- rows [0, valid) of g (row stride ld, 16-byte aligned rows), zero rows past valid (so
// a tail tile multiplies finite zeros). Asynchronous: the caller commits and waits.
template <int ROWS, int HD>
__device__ __forceinline__ void tile_async(uint16_t* s, const uint16_t* g, int64_t ld, int valid) {
  constexpr int LD = tc_ld(HD), CH = HD / 8;  // 16-byte chunks per row
  for (int idx = threadIdx.x; idx < ROWS * CH; idx += kTcThreads) {
    const int r = idx / CH, c = (idx % CH) * 8;
    const bool ok = r < valid;
    cp_async16(s + r * LD + c, g + (ok ? r : 0) * ld + c, ok);  // row 0 exists: a valid address either way
  }
}

// acc[n][.] += A B^T for this warp's 16 rows: A = rows [0, 16) of a [m][KD] tile (row stride LD), B^T read from
// a [n][KD] tile (rows 8 n ..): S = Q K^T, S^T = K Q^T, dP = dO V^T, dP^T = V dO^T.
template <int NT, int KD, int LD>
__device__ __forceinline__ void warp_abt(float (&acc)[NT][4], const uint16_t* A, const uint16_t* Bn, int lane) {
  static_assert(NT % 2 == 0 && KD % 16 == 0, "n-tile pairs, k16 steps");
  const mma::RowCol pa = mma::ldsm_a_addr(lane), pb = mma::ldsm_b_addr(lane);
#pragma unroll
  for (int kk = 0; kk < KD; kk += 16) {
    uint32_t a[4];
    ldsm_x4(a, A + pa.row * LD + kk + pa.col);
#pragma unroll
    for (int n = 0; n < NT; n += 2) {
      uint32_t b[4];
      ldsm_x4(b, Bn + (n * 8 + pb.row) * LD + kk + pb.col);
      mma_bf16(acc[n], a, b[0], b[1]);
      mma_bf16(acc[n + 1], a, b[2], b[3]);
    }
  }
}

// acc[n][.] += P B for this warp's 16 rows: P [16][KP] as bf16 A fragments in registers (to_a_frags), B a [KP][n]
// tile (row stride LD): O += P V, dV += P^T dO, dK += dS^T Q, dQ += dS K.
template <int NO, int KP, int LD>
__device__ __forceinline__ void warp_pb(float (&acc)[NO][4], const uint32_t (&p)[KP / 16][4], const uint16_t* Bk,
                                        int lane) {
  static_assert(NO % 2 == 0 && KP % 16 == 0, "n-tile pairs, k16 steps");
  const mma::RowCol pb = mma::ldsm_bt_addr(lane);
#pragma unroll
  for (int j = 0; j < KP / 16; ++j)
#pragma unroll
    for (int n = 0; n < NO; n += 2) {
      uint32_t b[4];
      ldsm_x4_trans(b, Bk + (j * 16 + pb.row) * LD + n * 8 + pb.col);
      mma_bf16(acc[n], p[j], b[0], b[1]);
      mma_bf16(acc[n + 1], p[j], b[2], b[3]);
    }
}

// The FA-2 register trick: the C fragments of n-tiles 2j, 2j+1 rounded to bf16 are A fragment j (mma_frag.h c_to_a).
template <int NT>
__device__ __forceinline__ void to_a_frags(const float (&c)[NT][4], uint32_t (&a)[NT / 2][4]) {
#pragma unroll
  for (int j = 0; j < NT / 2; ++j)
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const mma::CToA lo = mma::c_to_a(r, 0), hi = mma::c_to_a(r, 1);
      a[j][r] = pack_bf16(c[2 * j + lo.c_tile][lo.c_index], c[2 * j + hi.c_tile][hi.c_index]);
    }
}

// FA-2 Alg. 2 line 11 in the log2 domain: P = exp2(s2 - lse2), 0 for an excluded key or a row with lse = -inf.
__device__ __forceinline__ float prob2(float s2, bool keep, float lse2) {
  return keep && lse2 != -INFINITY ? exp2f(s2 - lse2) : 0.0f;
}

// Row `row` (of this warp's tile) of an fp32 [rows][hd] output: the lane's two columns of every n-tile.
template <int NO>
__device__ __forceinline__ void store_f32_row(float* g, const float (&acc)[NO][4], int half, int col, float scale,
                                              bool vec2) {
#pragma unroll
  for (int n = 0; n < NO; ++n) {
    const float x = acc[n][2 * half] * scale, y = acc[n][2 * half + 1] * scale;
    if (vec2) {
      *reinterpret_cast<float2*>(g + n * 8 + col) = make_float2(x, y);
    } else {
      g[n * 8 + col] = x;
      g[n * 8 + col + 1] = y;
    }
  }
}

// ------------------------------------------------------------------------------------------ pipeline
// One step of the 2-stage cp.async pipeline over n streamed tiles: queue tile it + 1 (when there is one) into the
// other stage, then wait until tile it (queued one step earlier; tile 0 and the block's fixed tiles before the loop)
// has landed for the whole block. issue(j, stage) loads tile j and commits exactly one cp.async group, so "all
// but the newest group" is tile it. The caller ends each step with __syncthreads() before the stage is refilled.
template <class Issue>
__device__ __forceinline__ void pipeline_step(int64_t it, int64_t n, const Issue& issue) {
  if (it + 1 < n)
    issue(it + 1, static_cast<int>((it + 1) & 1));
  else
    cp_async_commit();  // an empty group keeps the count
  cp_async_wait<1>();
  __syncthreads();
}

// The streamed key tiles of fwd_kernel and dq_kernel in shared memory: K, V [2][BK][tc_ld(HD)] and the keep flags
// [2][BK] (key exists and is not masked).
template <int BK, int HD>
struct KeyStages {
  static constexpr int LD = tc_ld(HD);
  uint16_t* Ks;
  uint16_t* Vs;
  int* keep;
  __device__ explicit KeyStages(uint16_t* base)
      : Ks(base), Vs(base + 2 * BK * LD), keep(reinterpret_cast<int*>(base + 4 * BK * LD)) {}
  __device__ const uint16_t* K(int st) const { return Ks + st * BK * LD; }
  __device__ const uint16_t* V(int st) const { return Vs + st * BK * LD; }
  __device__ bool kept(int st, int c) const { return keep[st * BK + c] != 0; }
  // key tile `it` (keys it * BK ..) of batch b, kv head g into stage st: one cp.async group (Args: FwdArgs or BwdArgs)
  template <class Args>
  __device__ void issue(const Args& a, int64_t b, int64_t g, const uint8_t* mask_row, int64_t it, int st) const {
    const int64_t k0 = it * BK;
    const int keys = flash::tile_extent(k0, BK, a.L);
    tile_async<BK, HD>(Ks + st * BK * LD, a.k + flash::row_offset(b, a.L, k0, a.ldk, g, HD), a.ldk, keys);
    tile_async<BK, HD>(Vs + st * BK * LD, a.v + flash::row_offset(b, a.L, k0, a.ldv, g, HD), a.ldv, keys);
    for (int c = threadIdx.x; c < BK; c += kTcThreads) keep[st * BK + c] = flash::key_valid(k0 + c, a.L, mask_row);
    cp_async_commit();
  }
};

// ------------------------------------------------------------------------------------------ forward
// FA-2 Alg. 1 for one (64-query tile, head, batch).
template <int HD>
__global__ void __launch_bounds__(kTcThreads) fwd_kernel(const FwdArgs a) {
  constexpr int BK = TcTiles<HD>::kFwdK, LD = tc_ld(HD), NT = BK / 8, NO = HD / 8;
  extern __shared__ uint4 smem[];
  uint16_t* Qs = reinterpret_cast<uint16_t*>(smem);  // [64][LD]
  const KeyStages<BK, HD> kv(Qs + kTcRows * LD);     // K, V [2][BK][LD], keep [2][BK]

  const flash::TileCoord t = flash::tile_coord(blockIdx.x, blockIdx.y, blockIdx.z, kTcRows);
  const int64_t g = flash::kv_head_of(t.head, a.n_heads, a.n_kv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int rows = flash::tile_extent(t.row0, kTcRows, a.L);
  const uint8_t* mask_row = a.mask ? a.mask + t.b * a.L : nullptr;
  const float sl2 = a.scale * kLog2e;  // s2 = (q . k) / sqrt(hd) * log2 e

  auto issue = [&](int64_t it, int st) { kv.issue(a, t.b, g, mask_row, it, st); };
  tile_async<kTcRows, HD>(Qs, a.q + flash::row_offset(t.b, a.L, t.row0, a.ldq, t.head, HD), a.ldq, rows);
  issue(0, 0);  // group 0: Q and key tile 0

  // this lane's rows: half r in {0, 1} is row c_elem(lane, 2r).row of the warp's 16 (g and g + 8)
  float o[NO][4] = {}, m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // m in log2 units; l per lane
  const int64_t n_tiles = flash::tile_count(a.L, BK);
  for (int64_t it = 0; it < n_tiles; ++it) {
    const int st = static_cast<int>(it & 1);
    pipeline_step(it, n_tiles, issue);

    float s[NT][4] = {};
    warp_abt<NT, HD, LD>(s, Qs + warp * 16 * LD, kv.K(st), lane);  // S = Q K^T                 Alg. 1 line 8
    // Online softmax (lines 8-10, flash_tile.h online_softmax_update in the log2 domain):
    //   m_new = max(m, rowmax S2), P = exp2(S2 - m_new), l = exp2(m - m_new) l + rowsum P, O *= exp2(m - m_new)
    float mt[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < NT; ++n)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        s[n][i] = kv.kept(st, n * 8 + mma::c_elem(lane, i).col) ? s[n][i] * sl2 : -INFINITY;
        mt[i >> 1] = fmaxf(mt[i >> 1], s[n][i]);
      }
    float alpha[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float m_new = fmaxf(m[r], quad_max(mt[r]));
      alpha[r] = m_new == -INFINITY ? 1.0f : exp2f(m[r] - m_new);  // no attendable key yet: l = 0, O = 0 stay
      m[r] = m_new;
      l[r] *= alpha[r];
    }
#pragma unroll
    for (int n = 0; n < NT; ++n)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = i >> 1;
        s[n][i] = m[r] == -INFINITY ? 0.0f : exp2f(s[n][i] - m[r]);  // excluded keys: exp2(-inf) = 0
        l[r] += s[n][i];
      }
#pragma unroll
    for (int n = 0; n < NO; ++n)
#pragma unroll
      for (int i = 0; i < 4; ++i) o[n][i] *= alpha[i >> 1];
    uint32_t p[NT / 2][4];
    to_a_frags(s, p);
    warp_pb<NO, BK, LD>(o, p, kv.V(st), lane);  // O += P V                                   Alg. 1 line 10
    __syncthreads();  // stage st is refilled by the next iteration's issue
  }

  // Alg. 1 lines 12-13: o = O / l, lse = m + log l (natural units: m2 ln 2); no attendable key: o = 0, -inf
  const int64_t lse0 = (t.b * a.n_heads + t.head) * a.L + t.row0;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const mma::RowCol e = mma::c_elem(lane, 2 * r);
    const int row = warp * 16 + e.row;
    const float lsum = quad_sum(l[r]);
    const bool none = m[r] == -INFINITY;
    const float inv = none ? 0.0f : 1.0f / lsum;
    if (row < rows) {
      uint16_t* orow = a.o + flash::row_offset(t.b, a.L, t.row0 + row, a.ldo, t.head, HD);
#pragma unroll
      for (int n = 0; n < NO; ++n)
        *reinterpret_cast<uint32_t*>(orow + n * 8 + e.col) = pack_bf16(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
      if (mma::quad_index(lane) == 0) a.lse[lse0 + row] = none ? -INFINITY : m[r] * kLn2 + logf(lsum);
    }
  }
}

// ------------------------------------------------------------------------------------------ backward
// FA-2 Alg. 2 line 4 with the rounded dO: dob = bf16(dO), D_i = sum_d dob_id O_id. One warp per (b, h, i)
// (grid x strides over h*L + i, y = b); the lanes' partial sums meet in a fixed xor butterfly.
template <int HD>
__global__ void prep_kernel(const BwdArgs a) {
  static_assert(HD % 32 == 0, "whole warps per row");
  const int64_t rows = a.n_heads * a.L, b = blockIdx.y, ldob = a.n_heads * HD;
  const int lane = threadIdx.x % 32;
  for (int64_t w = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; w < rows; w += gridDim.x * (blockDim.x / 32)) {
    const int64_t h = w / a.L, i = w % a.L;
    const float* dorow = a.dout + flash::row_offset(b, a.L, i, a.lddo, h, HD);
    const uint16_t* orow = a.o + flash::row_offset(b, a.L, i, a.ldo, h, HD);
    uint16_t* dbrow = a.dob + flash::row_offset(b, a.L, i, ldob, h, HD);
    float acc = 0.0f;
#pragma unroll
    for (int j = 0; j < HD / 32; ++j) {
      const int d = lane + 32 * j;
      const uint16_t x = narrow<uint16_t>(dorow[d]);
      dbrow[d] = x;
      acc = fmaf(widen(x), widen(orow[d]), acc);
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (lane == 0) a.D[(b * a.n_heads + h) * a.L + i] = acc;
  }
}

// dK, dV for one (64-key tile, kv head, batch), FA-2 Alg. 2 lines 6-19 transposed so each warp owns 16 keys:
// for every query tile of every query head of the group: S^T = K Q^T, P^T = exp(S^T - lse) (line 11),
// dV += P^T dO (line 12), dP^T = V dO^T (line 13), dS^T = P^T o (dP^T - D) (line 16), dK += dS^T Q (line 18);
// finally dk = dK / sqrt(hd). Both are summed in registers over the whole group and written once.
template <int HD>
__global__ void __launch_bounds__(kTcThreads) dkdv_kernel(const BwdArgs a) {
  constexpr int BQ = TcTiles<HD>::kDkvQ, LD = tc_ld(HD), NT = BQ / 8, NO = HD / 8;
  extern __shared__ uint4 smem[];
  uint16_t* Ks = reinterpret_cast<uint16_t*>(smem);       // [64][LD]
  uint16_t* Vs = Ks + kTcRows * LD;                       // [64][LD]
  uint16_t* Qs = Vs + kTcRows * LD;                       // [2][BQ][LD]
  uint16_t* dOs = Qs + 2 * BQ * LD;                       // [2][BQ][LD]
  float* lse_s = reinterpret_cast<float*>(dOs + 2 * BQ * LD);  // [2][BQ] log2 units, -inf past L
  float* D_s = lse_s + 2 * BQ;                                 // [2][BQ]

  const flash::TileCoord t = flash::tile_coord(blockIdx.x, blockIdx.y, blockIdx.z, kTcRows);  // t.head: kv head
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int keys = flash::tile_extent(t.row0, kTcRows, a.L);
  const uint8_t* mask_row = a.mask ? a.mask + t.b * a.L : nullptr;
  const float sl2 = a.scale * kLog2e;
  const int64_t group = a.n_heads / a.n_kv, nq = flash::tile_count(a.L, BQ), ldob = a.n_heads * HD;

  auto issue = [&](int64_t it, int st) {  // query tile it % nq of query head t.head * group + it / nq
    const int64_t h = t.head * group + it / nq, q0 = (it % nq) * BQ;
    const int qrows = flash::tile_extent(q0, BQ, a.L);
    tile_async<BQ, HD>(Qs + st * BQ * LD, a.q + flash::row_offset(t.b, a.L, q0, a.ldq, h, HD), a.ldq, qrows);
    tile_async<BQ, HD>(dOs + st * BQ * LD, a.dob + flash::row_offset(t.b, a.L, q0, ldob, h, HD), ldob, qrows);
    const int64_t r0 = (t.b * a.n_heads + h) * a.L + q0;
    for (int c = threadIdx.x; c < BQ; c += kTcThreads) {
      lse_s[st * BQ + c] = c < qrows ? a.lse[r0 + c] * kLog2e : -INFINITY;  // a missing query: P = 0
      D_s[st * BQ + c] = c < qrows ? a.D[r0 + c] : 0.0f;
    }
    cp_async_commit();
  };
  tile_async<kTcRows, HD>(Ks, a.k + flash::row_offset(t.b, a.L, t.row0, a.ldk, t.head, HD), a.ldk, keys);
  tile_async<kTcRows, HD>(Vs, a.v + flash::row_offset(t.b, a.L, t.row0, a.ldv, t.head, HD), a.ldv, keys);
  issue(0, 0);  // group 0: K, V and the first query tile

  bool keep[2];  // this lane's key rows (halves r = 0, 1)
#pragma unroll
  for (int r = 0; r < 2; ++r)
    keep[r] = flash::key_valid(t.row0 + warp * 16 + mma::c_elem(lane, 2 * r).row, a.L, mask_row);

  float dk[NO][4] = {}, dv[NO][4] = {};
  const int64_t n_it = group * nq;
  for (int64_t it = 0; it < n_it; ++it) {
    const int st = static_cast<int>(it & 1);
    pipeline_step(it, n_it, issue);

    const uint16_t* Qt = Qs + st * BQ * LD;
    const uint16_t* dOt = dOs + st * BQ * LD;
    float s[NT][4] = {}, dp[NT][4] = {};
    warp_abt<NT, HD, LD>(s, Ks + warp * 16 * LD, Qt, lane);   // S^T = K Q^T
    warp_abt<NT, HD, LD>(dp, Vs + warp * 16 * LD, dOt, lane);  // dP^T = V dO^T              line 13
#pragma unroll
    for (int n = 0; n < NT; ++n)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int c = st * BQ + n * 8 + mma::c_elem(lane, i).col;  // query column
        s[n][i] = prob2(s[n][i] * sl2, keep[i >> 1], lse_s[c]);    // P^T                        line 11
        dp[n][i] = flash::grad_score(s[n][i], dp[n][i], D_s[c]);    // dS^T = P^T o (dP^T - D)    line 16
      }
    uint32_t pa[NT / 2][4], da[NT / 2][4];
    to_a_frags(s, pa);
    to_a_frags(dp, da);
    warp_pb<NO, BQ, LD>(dv, pa, dOt, lane);  // dV += P^T dO                                      line 12
    warp_pb<NO, BQ, LD>(dk, da, Qt, lane);   // dK += dS^T Q (the 1/sqrt(hd) is applied once below) line 18
    __syncthreads();
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const mma::RowCol e = mma::c_elem(lane, 2 * r);
    const int row = warp * 16 + e.row;
    if (row < keys) {
      store_f32_row<NO>(a.dk + flash::row_offset(t.b, a.L, t.row0 + row, a.lddk, t.head, HD), dk, r, e.col, a.scale,
                        a.vec_dk);
      store_f32_row<NO>(a.dv + flash::row_offset(t.b, a.L, t.row0 + row, a.lddv, t.head, HD), dv, r, e.col, 1.0f,
                        a.vec_dv);
    }
  }
}

// dQ for one (64-query tile, head, batch), FA-2 Alg. 2 lines 11-17 with queries outer so dq is summed in
// registers and written once: per key tile S = Q K^T, P = exp(S - lse), dP = dO V^T, dS = P o (dP - D),
// dQ += dS K; finally dq = dQ / sqrt(hd).
template <int HD>
__global__ void __launch_bounds__(kTcThreads) dq_kernel(const BwdArgs a) {
  constexpr int BK = TcTiles<HD>::kDqK, LD = tc_ld(HD), NT = BK / 8, NO = HD / 8;
  extern __shared__ uint4 smem[];
  uint16_t* Qs = reinterpret_cast<uint16_t*>(smem);  // [64][LD]
  uint16_t* dOs = Qs + kTcRows * LD;                 // [64][LD]
  const KeyStages<BK, HD> kv(dOs + kTcRows * LD);    // K, V [2][BK][LD], keep [2][BK]

  const flash::TileCoord t = flash::tile_coord(blockIdx.x, blockIdx.y, blockIdx.z, kTcRows);
  const int64_t g = flash::kv_head_of(t.head, a.n_heads, a.n_kv), ldob = a.n_heads * HD;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int rows = flash::tile_extent(t.row0, kTcRows, a.L);
  const uint8_t* mask_row = a.mask ? a.mask + t.b * a.L : nullptr;
  const float sl2 = a.scale * kLog2e;

  auto issue = [&](int64_t it, int st) { kv.issue(a, t.b, g, mask_row, it, st); };
  tile_async<kTcRows, HD>(Qs, a.q + flash::row_offset(t.b, a.L, t.row0, a.ldq, t.head, HD), a.ldq, rows);
  tile_async<kTcRows, HD>(dOs, a.dob + flash::row_offset(t.b, a.L, t.row0, ldob, t.head, HD), ldob, rows);
  issue(0, 0);  // group 0: Q, dO and key tile 0

  float lse2[2], Dr[2];  // this lane's query rows (halves r = 0, 1); a missing row: P = 0, no gradient
  const int64_t r0 = (t.b * a.n_heads + t.head) * a.L + t.row0;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = warp * 16 + mma::c_elem(lane, 2 * r).row;
    lse2[r] = row < rows ? a.lse[r0 + row] * kLog2e : -INFINITY;
    Dr[r] = row < rows ? a.D[r0 + row] : 0.0f;
  }

  float dq[NO][4] = {};
  const int64_t n_tiles = flash::tile_count(a.L, BK);
  for (int64_t it = 0; it < n_tiles; ++it) {
    const int st = static_cast<int>(it & 1);
    pipeline_step(it, n_tiles, issue);

    float s[NT][4] = {}, dp[NT][4] = {};
    warp_abt<NT, HD, LD>(s, Qs + warp * 16 * LD, kv.K(st), lane);    // S = Q K^T
    warp_abt<NT, HD, LD>(dp, dOs + warp * 16 * LD, kv.V(st), lane);  // dP = dO V^T
#pragma unroll
    for (int n = 0; n < NT; ++n)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const bool keep = kv.kept(st, n * 8 + mma::c_elem(lane, i).col);
        const float p = prob2(s[n][i] * sl2, keep, lse2[i >> 1]);
        dp[n][i] = flash::grad_score(p, dp[n][i], Dr[i >> 1]);  // dS = P o (dP - D)
      }
    uint32_t da[NT / 2][4];
    to_a_frags(dp, da);
    warp_pb<NO, BK, LD>(dq, da, kv.K(st), lane);  // dQ += dS K
    __syncthreads();
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const mma::RowCol e = mma::c_elem(lane, 2 * r);
    const int row = warp * 16 + e.row;
    if (row < rows)
      store_f32_row<NO>(a.dq + flash::row_offset(t.b, a.L, t.row0 + row, a.lddq, t.head, HD), dq, r, e.col, a.scale,
                        a.vec_dq);
  }
}

// ------------------------------------------------------------------------------------------ launchers
// A kernel's dynamic shared memory beyond 48 KiB is opted into once per process (a process drives one device,
// CudaBackend): each kernel's function-local static makes the call on its first launch, not on every layer's.
template <auto Kernel, class Args>
void launch(dim3 grid, int smem_bytes, cudaStream_t stream, const char* name, const Args& args) {
  static const bool opted_in = [&] {
    CGRPO_CUDA(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes));
    return true;
  }();
  (void)opted_in;
  Kernel<<<grid, kTcThreads, smem_bytes, stream>>>(args);
  check_launch(name);
}

dim3 row_tiles(int64_t L, int64_t heads, int64_t B) {
  return dim3(static_cast<unsigned>(flash::tile_count(L, kTcRows)), static_cast<unsigned>(heads),
              static_cast<unsigned>(B));
}

template <int HD>
void fwd_hd(const FwdArgs& a, int64_t B, cudaStream_t stream) {
  constexpr int bytes = flash::tc_fwd_smem_bytes(HD, TcTiles<HD>::kFwdK);
  static_assert(bytes <= kMaxSmemBytes, "fwd smem");
  launch<fwd_kernel<HD>>(row_tiles(a.L, a.n_heads, B), bytes, stream, "attention tc fwd_kernel", a);
}

template <int HD>
void bwd_hd(const BwdArgs& a, int64_t B, cudaStream_t stream) {
  constexpr int kv_bytes = flash::tc_dkdv_smem_bytes(HD, TcTiles<HD>::kDkvQ);
  constexpr int q_bytes = flash::tc_dq_smem_bytes(HD, TcTiles<HD>::kDqK);
  static_assert(kv_bytes <= kMaxSmemBytes && q_bytes <= kMaxSmemBytes, "bwd smem");
  const int64_t rows = a.n_heads * a.L;  // per batch row, 8 warps per block
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((rows + 7) / 8, 8192));
  prep_kernel<HD><<<dim3(blocks, static_cast<unsigned>(B)), 256, 0, stream>>>(a);
  check_launch("attention tc prep_kernel");
  launch<dkdv_kernel<HD>>(row_tiles(a.L, a.n_kv, B), kv_bytes, stream, "attention tc dkdv_kernel", a);
  launch<dq_kernel<HD>>(row_tiles(a.L, a.n_heads, B), q_bytes, stream, "attention tc dq_kernel", a);
}

}  // namespace

void launch_fwd(const FwdArgs& a, int64_t B, int64_t hd, cudaStream_t stream) {
  switch (hd) {
    case 32: fwd_hd<32>(a, B, stream); break;
    case 64: fwd_hd<64>(a, B, stream); break;
    case 128: fwd_hd<128>(a, B, stream); break;
    default: CGRPO_CHECK(false, "tensor-core attention: head_dim ", hd, " is not supported");
  }
}

void launch_bwd(const BwdArgs& a, int64_t B, int64_t hd, cudaStream_t stream) {
  switch (hd) {
    case 32: bwd_hd<32>(a, B, stream); break;
    case 64: bwd_hd<64>(a, B, stream); break;
    case 128: bwd_hd<128>(a, B, stream); break;
    default: CGRPO_CHECK(false, "tensor-core attention: head_dim ", hd, " is not supported");
  }
}

}  // namespace cgrpo::cuda::tc
