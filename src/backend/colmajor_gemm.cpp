#include "cgrpo/backend/colmajor_gemm.h"

#include <climits>

namespace cgrpo {

ColMajorGemm colmajor_gemm(const GemmShape& s, bool trans_a, bool trans_b) {
  ColMajorGemm g;
  g.trans_a = trans_b;
  g.trans_b = trans_a;
  g.m = s.n;
  g.n = s.m;
  g.k = s.k;
  g.batch = s.batch;
  // our B as stored row-major is [k, n] (or [n, k] when trans_b); column-major that is [n, k] ([k, n])
  g.a = {trans_b ? s.k : s.n, trans_b ? s.n : s.k, s.ldb, s.stride_b};
  g.b = {trans_a ? s.m : s.k, trans_a ? s.k : s.m, s.lda, s.stride_a};
  g.c = {s.n, s.m, s.ldc, s.stride_c};
  for (const ColMajorMatrix* x : {&g.a, &g.b, &g.c}) {
    CGRPO_CHECK(x->rows <= INT_MAX && x->cols <= INT_MAX && x->ld <= INT_MAX, "gemm operand [", x->rows, ",", x->cols,
                "] ld ", x->ld, " exceeds cuBLASLt's int32 limits", hint("split the gemm"));
    CGRPO_CHECK(x->ld >= x->rows || x->cols <= 1, "gemm operand [", x->rows, ",", x->cols, "] has ld ", x->ld,
                " < rows (overlapping columns)");
  }
  CGRPO_CHECK(g.batch <= INT_MAX, "gemm batch ", g.batch, " exceeds cuBLASLt's int32 batch count");
  return g;
}

}  // namespace cgrpo
