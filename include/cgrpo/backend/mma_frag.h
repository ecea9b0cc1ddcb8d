// Register fragments of the warp-level tensor-core product mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// and of ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16 (PTX ISA, "Matrix fragments for mma.m16n8k16 with
// floating point type" and "Warp-level matrix load instruction: ldmatrix"), as index maps: which element of a
// tile lane `lane` of a warp holds in which register. The tensor-core attention (src/backend/
// cuda_ops_attention_tc.cu) addresses shared memory and reads its accumulators only through these maps; the CPU
// test (tests/unit/test_mma_frag.cpp) emulates ldmatrix and the mma lane by lane from them and checks the
// products against plain matrix products.
//
// Notation: a lane's "group" g = lane / 4 (0..7) and its index in the quad t = lane % 4 (0..3). A 32-bit
// register holding two 16-bit elements keeps the lower column (or k) index in its low half.
//   A  16x16 (row-major, M x K), 4 registers a0..a3:  a_r half h = A[g + 8 (r % 2)][2t + h + 8 (r / 2)]
//   B  16x8  (K x N, "col"), 2 registers b0, b1:        b_r half h = B[2t + h + 8 r][g]
//   C  16x8  f32 accumulator, 4 registers c0..c3:       c_i        = C[g + 8 (i / 2)][2t + i % 2]
// So a C row is spread over the 4 lanes of one quad (rows g and g + 8 of lane 4g..4g+3): row reductions are
// __shfl_xor over lane offsets 1 and 2.
#pragma once

#include "cgrpo/core/hd.h"

namespace cgrpo::mma {

struct RowCol {
  int row, col;
};

CGRPO_HD int group_of(int lane) { return lane >> 2; }
CGRPO_HD int quad_index(int lane) { return lane & 3; }

// Element c_i (i in 0..3) of a 16x8 f32 accumulator.
CGRPO_HD RowCol c_elem(int lane, int i) { return {group_of(lane) + 8 * (i >> 1), 2 * quad_index(lane) + (i & 1)}; }
// Half h of register a_r (r in 0..3) of a 16x16 A operand: (row m, column k).
CGRPO_HD RowCol a_elem(int lane, int r, int h) {
  return {group_of(lane) + 8 * (r & 1), 2 * quad_index(lane) + h + 8 * (r >> 1)};
}
// Half h of register b_r (r in 0..1) of a 16x8 B operand: (row k, column n).
CGRPO_HD RowCol b_elem(int lane, int r, int h) { return {2 * quad_index(lane) + h + 8 * r, group_of(lane)}; }

// Row reductions over a quad: a butterfly of __shfl_xor steps with lane offsets quad_xor(0..kQuadSteps-1)
// leaves the combination of lanes 4g..4g+3 (exactly the lanes holding a C row) in all four of them.
constexpr int kQuadSteps = 2;
CGRPO_HD constexpr int quad_xor(int step) { return 1 << step; }

// The FA-2 register reuse: the C fragments of two adjacent n-tiles (columns 0-7 and 8-15 of a 16-wide slice)
// are, after rounding to bf16, the A fragment of that slice as the k dimension of the next product. Register
// a_r half h of the A fragment is element c_{c_index} of the C fragment of n-tile c_tile (0 or 1).
struct CToA {
  int c_tile, c_index;
};
CGRPO_HD CToA c_to_a(int r, int h) { return {r >> 1, 2 * (r & 1) + h}; }

// ldmatrix .x4: lanes 8i..8i+7 supply the addresses of rows 0..7 of 8x8 matrix i (8 consecutive 16-bit
// elements each); destination register i of every lane receives matrix i. Half h of it is the matrix element
// (row, col) of the 8x8 block as stored: (g, 2t + h) plain, (2t + h, g) with .trans.
CGRPO_HD RowCol ldsm_elem(int lane, int h, bool trans) {
  return trans ? RowCol{2 * quad_index(lane) + h, group_of(lane)} : RowCol{group_of(lane), 2 * quad_index(lane) + h};
}

// The (row, col) offset, inside a row-major shared tile, of the row address lane `lane` supplies to one
// ldmatrix.x4, for the three ways the attention kernels read operands:
// - ldsm_a_addr: a 16x16 A operand from a [m][k] tile (plain): matrix i = rows 8 (i % 2), columns 8 (i / 2),
//   so registers 0..3 are a0..a3.
CGRPO_HD RowCol ldsm_a_addr(int lane) { return {lane & 15, 8 * (lane >> 4)}; }
// - ldsm_b_addr: the B operands of two adjacent n-tiles (n 0-7 and 8-15) over one k16 step, from a [n][k] tile
//   (K for S = Q K^T; plain): matrix i = n rows 8 (i / 2), k columns 8 (i % 2), so registers {0, 1} are b0, b1
//   of n-tile 0 and {2, 3} those of n-tile 1.
CGRPO_HD RowCol ldsm_b_addr(int lane) { return {(lane & 7) + 8 * (lane >> 4), 8 * ((lane >> 3) & 1)}; }
// - ldsm_bt_addr: the same two B operands from a [k][n] tile (V for O = P V; .trans): matrix i = k rows 8 (i % 2),
//   n columns 8 (i / 2).
CGRPO_HD RowCol ldsm_bt_addr(int lane) { return {(lane & 7) + 8 * ((lane >> 3) & 1), 8 * (lane >> 4)}; }

}  // namespace cgrpo::mma
