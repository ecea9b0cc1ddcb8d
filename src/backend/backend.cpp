#include "cgrpo/backend/backend.h"

namespace cgrpo {

namespace {
struct Mat {
  int64_t batch, rows, cols, ld, bstride;
};
// Logical (rows, cols) of a 2-D or 3-D row-major operand, before op().
Mat mat_of(const TensorView& t, const char* which) {
  CGRPO_CHECK(t.ndim == 2 || t.ndim == 3, "gemm operand ", which, " must be 2-D or 3-D, got ", t.str());
  CGRPO_CHECK(t.stride(-1) == 1 || t.dim(-1) == 1, "gemm operand ", which, " ", t.str(), " has inner stride ",
              t.stride(-1), " (must be 1)");
  Mat m;
  m.rows = t.dim(-2);
  m.cols = t.dim(-1);
  m.ld = std::max<int64_t>(t.stride(-2), std::max<int64_t>(m.cols, 1));
  m.batch = t.ndim == 3 ? t.dim(0) : 1;
  m.bstride = t.ndim == 3 && t.dim(0) > 1 ? t.stride(0) : 0;
  return m;
}
}  // namespace

GemmShape gemm_shape(const TensorView& A, bool trans_a, const TensorView& B, bool trans_b, const TensorView& C) {
  const Mat a = mat_of(A, "A"), b = mat_of(B, "B"), c = mat_of(C, "C");
  CGRPO_CHECK(A.dtype == B.dtype, "gemm: A ", A.str(), " and B ", B.str(), " differ in dtype");
  GemmShape s;
  s.m = trans_a ? a.cols : a.rows;
  s.k = trans_a ? a.rows : a.cols;
  const int64_t kb = trans_b ? b.cols : b.rows;
  s.n = trans_b ? b.rows : b.cols;
  CGRPO_CHECK(s.k == kb, "gemm: inner dimensions differ: op(A) ", A.str(), (trans_a ? "^T" : ""), " vs op(B) ",
              B.str(), (trans_b ? "^T" : ""));
  CGRPO_CHECK(c.rows == s.m && c.cols == s.n, "gemm: C ", C.str(), " is not [", s.m, ",", s.n, "]");
  s.batch = c.batch;
  CGRPO_CHECK(a.batch == s.batch || a.batch == 1, "gemm: batch of A ", A.str(), " vs C ", C.str());
  CGRPO_CHECK(b.batch == s.batch || b.batch == 1, "gemm: batch of B ", B.str(), " vs C ", C.str());
  CGRPO_CHECK(c.batch == 1 || C.stride(0) != 0, "gemm: C must not broadcast over the batch");
  s.lda = a.ld;
  s.ldb = b.ld;
  s.ldc = c.ld;
  s.stride_a = a.batch == 1 ? 0 : a.bstride;
  s.stride_b = b.batch == 1 ? 0 : b.bstride;
  s.stride_c = c.batch == 1 ? 0 : c.bstride;
  return s;
}

}  // namespace cgrpo

namespace cgrpo {

namespace {
int64_t checked_row_stride(const TensorView& t, int64_t rows, int64_t cols, const char* what) {
  if (t.ndim == 1) {
    CGRPO_CHECK(rows == 1 && t.dim(0) == cols && (t.stride(0) == 1 || cols <= 1), what, " ", t.str(), " is not [",
                cols, "]");
    return cols;
  }
  CGRPO_CHECK(t.ndim == 2 && t.dim(0) == rows && t.dim(1) == cols, what, " ", t.str(), " is not [", rows, ",", cols,
              "]");
  CGRPO_CHECK(t.stride(1) == 1 || cols <= 1, what, " ", t.str(), " has inner stride ", t.stride(1), " (must be 1)");
  CGRPO_CHECK(t.stride(0) >= cols || rows <= 1, what, " ", t.str(), " has overlapping rows (row stride ", t.stride(0),
              ")");
  return t.stride(0);
}
}  // namespace

int64_t row_stride(const TensorView& t, int64_t rows, int64_t cols, const char* what) {
  CGRPO_CHECK(t.dtype == DType::F32, what, " must be f32, got ", t.str());
  return checked_row_stride(t, rows, cols, what);
}

int64_t act_row_stride(const TensorView& t, int64_t rows, int64_t cols, const char* what) {
  CGRPO_CHECK(t.dtype == DType::F32 || t.dtype == DType::BF16, what, " must be f32 or bf16, got ", t.str());
  return checked_row_stride(t, rows, cols, what);
}

AttnLayout attention_layout(const AttnShape& s, const TensorView& q, const TensorView& k, const TensorView& v,
                            const TensorView& o) {
  CGRPO_CHECK(s.B > 0 && s.L > 0 && s.head_dim > 0 && s.n_kv_heads > 0 && s.n_heads % s.n_kv_heads == 0,
              "attention: bad shape B=", s.B, " L=", s.L, " heads=", s.n_heads, " kv_heads=", s.n_kv_heads,
              " head_dim=", s.head_dim, hint("num_attention_heads must be a multiple of num_key_value_heads"));
  const int64_t N = s.B * s.L;
  CGRPO_CHECK(k.dtype == q.dtype && v.dtype == q.dtype && o.dtype == q.dtype, "attention: q ", q.str(), ", k ",
              k.str(), ", v ", v.str(), " and o ", o.str(), " must share one dtype");
  AttnLayout a;
  a.ldq = act_row_stride(q, N, s.n_heads * s.head_dim, "attention q");     // [B*L, heads*hd]
  a.ldk = act_row_stride(k, N, s.n_kv_heads * s.head_dim, "attention k");  // [B*L, kv_heads*hd]
  a.ldv = act_row_stride(v, N, s.n_kv_heads * s.head_dim, "attention v");  // [B*L, kv_heads*hd]
  a.ldo = act_row_stride(o, N, s.n_heads * s.head_dim, "attention o");     // [B*L, heads*hd]
  a.group = s.n_heads / s.n_kv_heads;
  return a;
}

LsgShape logsoftmax_gather_shape(const TensorView& h, const TensorView& W, int64_t chunk) {
  LsgShape s;
  s.R = h.dim(0);
  s.H = h.dim(-1);
  s.V = W.dim(0);
  CGRPO_CHECK(chunk > 0, "logsoftmax_gather: chunk must be > 0, got ", chunk);
  CGRPO_CHECK(s.V > 0 || s.R == 0, "logsoftmax_gather: empty vocabulary ", W.str());
  s.C = std::min(chunk, s.V);
  CGRPO_CHECK(h.dtype == W.dtype && (h.dtype == DType::F32 || h.dtype == DType::BF16),
              "logsoftmax_gather: h and W must be both f32 or both bf16, got ", h.str(), " and ", W.str());
  s.ldh = act_row_stride(h, s.R, s.H, "logsoftmax_gather h");  // [R, H]
  s.ldw = act_row_stride(W, s.V, s.H, "logsoftmax_gather W");  // [V, H]
  s.dtype = h.dtype;
  return s;
}

void Backend::allow_tf32(bool on) {
  CGRPO_CHECK(!on, "parallel.tf32 = true needs the CUDA backend (backend '", name(), "' has no TF32 math)",
              hint("set parallel.tf32 = false or parallel.backend = cuda"));
}

}  // namespace cgrpo
