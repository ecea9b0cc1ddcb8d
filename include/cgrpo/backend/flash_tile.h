// Flash-attention tile logic shared by the CUDA kernels (src/backend/cuda_ops_attention.cu) and their CPU
// emulation (tests/unit/test_flash_tile.cpp): the online-softmax update of one row over one key tile, the
// finalisation, the backward's recomputed probabilities and score gradients, and the tile bookkeeping
// (grid -> (batch, head, first row), kv head of a query head, tile extents with tails, key validity).
//
// Equations cite FlashAttention-2 (Dao 2023, arXiv:2307.08691): Algorithm 1 (forward) and Algorithm 2 (backward).
// Scores are already scaled, s = q k^T / sqrt(head_dim). A key with key_mask == 0 (or past the end of the
// sequence in a tail tile) is excluded by setting its score to -inf; a row with no attendable key keeps
// m = -inf, l = 0 and finishes with o = 0, lse = -inf (safe softmax, spec/coupled_grpo.md §1.4): no
// expression below ever evaluates exp(-inf - (-inf)), so nothing is NaN.
//
// Every function is CGRPO_HD (host and device) and free of CUDA intrinsics; the cross-thread parts of a row
// (max and sum over the columns several threads hold) go through a Reduce policy: RowLocal here (one thread
// holds the whole row: the CPU emulation), a half-warp shuffle butterfly in the kernels.
#pragma once

#include <math.h>  // expf, logf, fmaxf, INFINITY: the same names in host and device code

#include <cstdint>

#include "cgrpo/core/hd.h"

namespace cgrpo::flash {

// ------------------------------------------------------------------------------------------ tile sizes
// Per head_dim tile sizes of the three CUDA kernels (all 128 threads: 8 thread rows x 16 thread columns; the
// 16 threads of one thread row are one half-warp). Rows of a kernel's score tile are owned 'rows / 8' per
// thread (contiguous), columns 'cols / 16' per thread (interleaved: column tx + 16 j).
//   fwd:  rows = queries (kFwdQ), cols = keys (kFwdK)
//   dkdv: rows = keys (kDkvK),    cols = queries (kDkvQ)
//   dq:   rows = queries (kDqQ),  cols = keys (kDqK)
template <int HD>
struct Tiles;
template <>
struct Tiles<16> {
  static constexpr int kFwdQ = 64, kFwdK = 64, kDkvQ = 64, kDkvK = 64, kDqQ = 64, kDqK = 64;
};
template <>
struct Tiles<32> {
  static constexpr int kFwdQ = 64, kFwdK = 64, kDkvQ = 64, kDkvK = 32, kDqQ = 64, kDqK = 64;
};
template <>
struct Tiles<64> {
  static constexpr int kFwdQ = 64, kFwdK = 64, kDkvQ = 64, kDkvK = 32, kDqQ = 64, kDqK = 32;
};
template <>
struct Tiles<128> {
  static constexpr int kFwdQ = 64, kFwdK = 32, kDkvQ = 32, kDkvK = 32, kDqQ = 32, kDqK = 32;
};
constexpr int kThreads = 128, kThreadRows = 8, kThreadCols = 16;

// Shared-memory row strides (floats): +4 keeps rows 16-byte aligned for float4 reads and puts the 8 rows a
// quarter-warp reads at once (rows tx, tx+1, ...) on distinct 4-bank groups.
CGRPO_HD constexpr int smem_ld(int width) { return width + 4; }
// fwd:  Q [Q][hd], K [K][hd], V [K][hd], P [Q][K], keep [K]
CGRPO_HD constexpr int fwd_smem_floats(int hd, int q, int k) { return (q + 2 * k) * smem_ld(hd) + q * smem_ld(k) + k; }
// dkdv: K, V [K][hd], Q, dO [Q][hd], P^T, dS^T [K][Q], lse, D [Q], keep [K]
CGRPO_HD constexpr int dkdv_smem_floats(int hd, int q, int k) {
  return (2 * k + 2 * q) * smem_ld(hd) + 2 * k * smem_ld(q) + 2 * q + k;
}
// dq:   Q, dO [Q][hd], K, V [K][hd], dS [Q][K], lse, D [Q], keep [K]
CGRPO_HD constexpr int dq_smem_floats(int hd, int q, int k) { return (2 * q + 2 * k) * smem_ld(hd) + q * smem_ld(k) + 2 * q + k; }

// Tensor-core kernels (bf16 q, k, v, o; cuda_ops_attention_tc.cu). kTcWarps warps of 16 rows own the rows
// of a block's score tile (fwd and dq: queries, dkdv: keys), kTcRows = 64 rows per block; the other tile
// dimension is streamed through a 2-stage shared-memory buffer:
//   fwd:  key tiles of kFwdK,   dkdv: query tiles of kDkvQ (of every query head of the group),
//   dq:   key tiles of kDqK.
// hd 128 halves the streamed tile of the backward kernels: their per-lane accumulators (dK and dV: a 16 x hd warp
// tile each, hd / 2 fp32 registers per lane; the 16 x cols score and dP tiles) must fit 255 registers.
// Shared memory per block (bytes; the functions below):  hd 32: fwd 26112, dkdv 31744, dq 31232;
// hd 64: fwd 46592, dkdv 56320, dq 55808;  hd 128: fwd 87552, dkdv 70144, dq 69888.
// head_dim the tensor-core kernels are built for (bf16 attention with another head_dim takes the SIMT kernels)
CGRPO_HD constexpr bool tc_supported_head_dim(int64_t hd) { return hd == 32 || hd == 64 || hd == 128; }
// Floats of the tensor-core backward's workspace: D [B, heads, L] fp32, then bf16(dO) [B*L, heads*hd] from a
// 16-byte boundary. (The SIMT backward's workspace is D alone.) Also what `cgrpo plan` counts for it.
CGRPO_HD constexpr int64_t tc_bwd_workspace_floats(int64_t B, int64_t heads, int64_t L, int64_t hd) {
  return (B * heads * L + 3) / 4 * 4 + (B * L * heads * hd + 1) / 2;
}
template <int HD>
struct TcTiles {
  static_assert(tc_supported_head_dim(HD), "tensor-core attention: head_dim 32, 64 or 128");
  static constexpr int kFwdK = 64, kDkvQ = HD == 128 ? 32 : 64, kDqK = HD == 128 ? 32 : 64;
};
constexpr int kTcWarps = 4, kTcThreads = 32 * kTcWarps, kTcRows = 16 * kTcWarps;
// bf16 shared row stride (elements): +8 (16 bytes) keeps every row 16-byte aligned for cp.async and ldmatrix,
// and the 8 rows one ldmatrix matrix reads land on distinct 4-bank groups (row stride hd + 8 = 4 banks mod 32
// for hd 64 and 128, 20 for hd 32).
CGRPO_HD constexpr int tc_ld(int hd) { return hd + 8; }
// fwd:  Q [64][ld], K, V [2][k][ld] (bf16), keep [2][k] (int)
CGRPO_HD constexpr int tc_fwd_smem_bytes(int hd, int k) { return (kTcRows + 4 * k) * tc_ld(hd) * 2 + 2 * k * 4; }
// dkdv: K, V [64][ld], Q, dO [2][q][ld] (bf16), lse, D [2][q] (float)
CGRPO_HD constexpr int tc_dkdv_smem_bytes(int hd, int q) { return (2 * kTcRows + 4 * q) * tc_ld(hd) * 2 + 4 * q * 4; }
// dq:   Q, dO [64][ld], K, V [2][k][ld] (bf16), keep [2][k] (int)
CGRPO_HD constexpr int tc_dq_smem_bytes(int hd, int k) { return (2 * kTcRows + 4 * k) * tc_ld(hd) * 2 + 2 * k * 4; }

// ------------------------------------------------------------------------------------------ bookkeeping
// Which tile a block computes: grid (x = row tile, y = head, z = batch) -> (b, head, first row).
struct TileCoord {
  int64_t b, head, row0;
};
CGRPO_HD TileCoord tile_coord(int64_t bx, int64_t by, int64_t bz, int tile_rows) {
  return TileCoord{bz, by, bx * tile_rows};
}
CGRPO_HD int64_t tile_count(int64_t L, int tile) { return (L + tile - 1) / tile; }
// Rows of the tile starting at row0 that exist (the last tile of a sequence is a tail: L % tile rows).
CGRPO_HD int tile_extent(int64_t row0, int tile, int64_t L) {
  return static_cast<int>(L - row0 < tile ? L - row0 : tile);
}
// Query head h reads kv head h / (n_heads / n_kv_heads) (GQA, spec §1.3: "head j of q uses KV head j//7").
CGRPO_HD int64_t kv_head_of(int64_t h, int64_t n_heads, int64_t n_kv_heads) { return h / (n_heads / n_kv_heads); }
// Element offset of row i of batch b, head `head`, in a [B*L, heads*hd] view with row stride ld.
CGRPO_HD int64_t row_offset(int64_t b, int64_t L, int64_t i, int64_t ld, int64_t head, int64_t hd) {
  return (b * L + i) * ld + head * hd;
}
// Key j of a batch row may be attended: it exists and is not masked (mask_row = key_mask + b*L, or nullptr).
CGRPO_HD bool key_valid(int64_t j, int64_t L, const uint8_t* mask_row) {
  return j < L && (mask_row == nullptr || mask_row[j] != 0);
}

// ------------------------------------------------------------------------------------------ forward
// Row max / row sum over the columns of one row: the identity when one thread holds the whole row.
struct RowLocal {
  CGRPO_HD float max(float v) const { return v; }
  CGRPO_HD float sum(float v) const { return v; }
};

// One row of one key tile, FA-2 Alg. 1 lines 8-10 (this thread's N columns of the row, acc its A output
// columns; reduce combines the threads that share the row):
//   m_new = max(m, rowmax(S))                 S = scores, -inf where !keep
//   P     = exp(S - m_new)                    (0 while m_new = -inf: no attendable key yet)
//   l     = exp(m - m_new) l + rowsum(P)
//   acc   = exp(m - m_new) acc                (the caller then adds P V, line 10)
// s is overwritten with P; m, l, acc are updated in place.
template <int N, int A, class Reduce>
CGRPO_HD void online_softmax_update(float (&s)[N], const bool (&keep)[N], float& m, float& l, float (&acc)[A],
                                    const Reduce& reduce) {
  float mt = -INFINITY;
  for (int j = 0; j < N; ++j) {
    s[j] = keep[j] ? s[j] : -INFINITY;
    mt = fmaxf(mt, s[j]);
  }
  const float m_new = fmaxf(m, reduce.max(mt));
  const bool none = m_new == -INFINITY;              // every key so far excluded: l = 0, acc = 0 stay
  const float alpha = none ? 1.0f : expf(m - m_new);  // m = -inf, m_new finite -> 0
  float rs = 0.0f;
  for (int j = 0; j < N; ++j) {
    s[j] = none ? 0.0f : expf(s[j] - m_new);  // excluded keys: exp(-inf) = 0
    rs += s[j];
  }
  l = alpha * l + reduce.sum(rs);
  for (int a = 0; a < A; ++a) acc[a] *= alpha;
  m = m_new;
}

// After the last key tile, FA-2 Alg. 1 lines 12-13: o = acc / l, lse = m + log(l). A row that never saw an
// attendable key (m = -inf, l = 0) gets o = 0 and lse = -inf. Returns lse; acc becomes o.
template <int A>
CGRPO_HD float finalize_row(float m, float l, float (&acc)[A]) {
  if (m == -INFINITY) {
    for (int a = 0; a < A; ++a) acc[a] = 0.0f;
    return -INFINITY;
  }
  const float inv = 1.0f / l;  // l >= 1: the row max contributes exp(0)
  for (int a = 0; a < A; ++a) acc[a] *= inv;
  return m + logf(l);
}

// ------------------------------------------------------------------------------------------ backward
// FA-2 Alg. 2 line 11: P_ij = exp(S_ij - lse_i), 0 for an excluded key and for a row with lse = -inf (all
// keys masked, or a query past the end of a tail tile), which then gets no gradient at all.
CGRPO_HD float recompute_p(float s, bool keep, float lse) {
  return keep && lse != -INFINITY ? expf(s - lse) : 0.0f;
}
// FA-2 Alg. 2 line 16: dS_ij = P_ij (dP_ij - D_i), dP = dO V^T, D_i = sum_d dO_id O_id (line 4).
CGRPO_HD float grad_score(float p, float dp, float D) { return p * (dp - D); }

}  // namespace cgrpo::flash
