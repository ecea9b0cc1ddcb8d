// The row-major -> column-major (cuBLASLt) gemm mapping, checked on the host by running a naive
// column-major BLAS on the mapped problem and comparing with a row-major reference.
#include <catch2/catch.hpp>
#include <cmath>
#include <tuple>
#include <vector>

#include "cgrpo/backend/colmajor_gemm.h"
#include "cgrpo/core/philox.h"

using namespace cgrpo;

namespace {
std::vector<float> randn(size_t n, uint32_t sample) {
  std::vector<float> v(n);
  RngStream(11, RngPurpose::Test, 0, sample).fill_normal(v.data(), static_cast<int64_t>(n), 0.0f, 1.0f);
  return v;
}

// What cuBLASLt computes: D = alpha op(a) op(b) + beta C, column-major, strided batched.
void colmajor_ref(const ColMajorGemm& g, float alpha, const float* a, const float* b, float beta, double* c) {
  for (int64_t t = 0; t < g.batch; ++t)
    for (int64_t i = 0; i < g.m; ++i)
      for (int64_t j = 0; j < g.n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < g.k; ++p) {
          const float x = g.trans_a ? a[t * g.a.batch_stride + p + i * g.a.ld] : a[t * g.a.batch_stride + i + p * g.a.ld];
          const float y = g.trans_b ? b[t * g.b.batch_stride + j + p * g.b.ld] : b[t * g.b.batch_stride + p + j * g.b.ld];
          s += double(x) * y;
        }
        double& cv = c[t * g.c.batch_stride + i + j * g.c.ld];
        cv = alpha * s + beta * cv;
      }
}

// Row-major reference of backend.h's contract.
void rowmajor_ref(const GemmShape& s, bool ta, bool tb, float alpha, const float* a, const float* b, float beta,
                  double* c) {
  for (int64_t t = 0; t < s.batch; ++t)
    for (int64_t i = 0; i < s.m; ++i)
      for (int64_t j = 0; j < s.n; ++j) {
        double acc = 0;
        for (int64_t p = 0; p < s.k; ++p) {
          const float x = ta ? a[t * s.stride_a + p * s.lda + i] : a[t * s.stride_a + i * s.lda + p];
          const float y = tb ? b[t * s.stride_b + j * s.ldb + p] : b[t * s.stride_b + p * s.ldb + j];
          acc += double(x) * y;
        }
        double& cv = c[t * s.stride_c + i * s.ldc + j];
        cv = alpha * acc + beta * cv;
      }
}
}  // namespace

TEST_CASE("colmajor gemm mapping: swaps operands, m and n, layouts are the stored operands", "[unit][backend]") {
  std::vector<float> a(6 * 4), b(4 * 5), c(6 * 5);
  // A [6,4] (m=6,k=4), B^T stored [5,4] (n=5), C [6,5]
  const GemmShape s = gemm_shape(TensorView::of(a.data(), {6, 4}), false, TensorView::of(b.data(), {5, 4}), true,
                                 TensorView::of(c.data(), {6, 5}));
  const ColMajorGemm g = colmajor_gemm(s, false, true);
  CHECK(g.trans_a);        // op on the column-major first operand = our trans_b
  CHECK_FALSE(g.trans_b);  // = our trans_a
  CHECK((g.m == 5 && g.n == 6 && g.k == 4 && g.batch == 1));
  CHECK((g.a.rows == 4 && g.a.cols == 5 && g.a.ld == 4));  // B stored row-major [5,4] = column-major [4,5]
  CHECK((g.b.rows == 4 && g.b.cols == 6 && g.b.ld == 4));  // A stored row-major [6,4] = column-major [4,6]
  CHECK((g.c.rows == 5 && g.c.cols == 6 && g.c.ld == 5));
}

TEST_CASE("colmajor gemm mapping: a column-major BLAS on the mapped problem equals the row-major gemm",
          "[unit][backend]") {
  const float alpha = 0.5f, beta = -1.25f;
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {7, 5, 3}, {3, 9, 1}, {17, 4, 11}})
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (int variant = 0; variant < 3; ++variant) {  // 0: 2-D, 1: batched, 2: batched with broadcast B + padding
          const int64_t batch = variant == 0 ? 1 : 3, pad = variant == 2 ? 3 : 0;
          const int64_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
          const int64_t lda = ac + pad, ldb = bc + pad, ldc = n + pad;
          const int64_t bb = variant == 2 ? 1 : batch;
          auto a = randn(batch * ar * lda, 1), b = randn(bb * br * ldb, 2), c0 = randn(batch * m * ldc, 3);
          TensorView A = variant == 0 ? TensorView::of(a.data(), {ar, ac}) : TensorView::of(a.data(), {batch, ar, ac});
          TensorView B = variant == 0 ? TensorView::of(b.data(), {br, bc}) : TensorView::of(b.data(), {bb, br, bc});
          TensorView C = variant == 0 ? TensorView::of(c0.data(), {m, n}) : TensorView::of(c0.data(), {batch, m, n});
          A.strides[A.ndim - 2] = lda;
          B.strides[B.ndim - 2] = ldb;
          C.strides[C.ndim - 2] = ldc;
          if (variant) {
            A.strides[0] = ar * lda;
            B.strides[0] = br * ldb;
            C.strides[0] = m * ldc;
          }
          const GemmShape s = gemm_shape(A, ta, B, tb, C);
          const ColMajorGemm g = colmajor_gemm(s, ta, tb);
          if (variant == 2) CHECK(g.a.batch_stride == 0);  // the broadcast B is column-major operand a
          std::vector<double> want(c0.begin(), c0.end()), got(c0.begin(), c0.end());
          rowmajor_ref(s, ta, tb, alpha, a.data(), b.data(), beta, want.data());
          colmajor_ref(g, alpha, b.data(), a.data(), beta, got.data());  // operands swapped
          INFO("m " << m << " n " << n << " k " << k << " ta " << ta << " tb " << tb << " variant " << variant);
          for (size_t i = 0; i < want.size(); ++i) REQUIRE(got[i] == Approx(want[i]).margin(1e-9));
        }
}

TEST_CASE("colmajor gemm mapping: rejects sizes beyond cuBLASLt's int32 limits", "[unit][backend]") {
  GemmShape s{1, 4, int64_t(1) << 31, 2, 2, int64_t(1) << 31, int64_t(1) << 31, 0, 0, 0};
  REQUIRE_THROWS_WITH(colmajor_gemm(s, false, false), Catch::Contains("int32"));
}
