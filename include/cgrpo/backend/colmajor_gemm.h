// Host-side mapping of a row-major gemm (backend.h: C = alpha op(A) op(B) + beta C) onto a column-major
// BLAS (cuBLASLt). Pure arithmetic, compiled in every build, so it is unit-tested on machines without a GPU.
//
// A row-major X [r, c] with row stride ld is, read column-major, X^T [c, r] with leading dimension ld.
// So row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: the column-major call takes our B as
// its first operand and our A as its second, with the same transpose flags, m and n swapped, k unchanged:
//   cm.m = n, cm.n = m, cm.k = k;  cm.a = B stored [rows = B.cols, cols = B.rows, ld = ldb]; cm.b likewise A;
//   cm.c = C stored [rows = n, cols = m, ld = ldc].
// Layout rows/cols describe the operand as stored (before op), which is what cuBLASLt's layouts want.
#pragma once

#include <cstdint>

#include "cgrpo/backend/backend.h"

namespace cgrpo {

struct ColMajorMatrix {
  int64_t rows = 0, cols = 0, ld = 0;  // as stored, column-major: element (i, j) at i + j * ld
  int64_t batch_stride = 0;            // elements between batch items; 0 = broadcast (or batch 1)
};

struct ColMajorGemm {
  bool trans_a = false, trans_b = false;  // op() on cm.a / cm.b
  int64_t m = 0, n = 0, k = 0, batch = 1;
  ColMajorMatrix a, b, c;  // cm.a is the row-major call's B, cm.b its A
};

// Checks that every dimension, leading dimension and batch count fits cuBLASLt's int32 limits and that
// every ld covers its rows (fatal otherwise).
ColMajorGemm colmajor_gemm(const GemmShape& s, bool trans_a, bool trans_b);

}  // namespace cgrpo
