#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "cgrpo/backend/cpu_backend.h"
#include "cgrpo/core/philox.h"

using namespace cgrpo;

namespace {
std::vector<float> randn(size_t n, uint32_t sample) {
  std::vector<float> v(n);
  RngStream(5, RngPurpose::Test, 0, sample).fill_normal(v.data(), static_cast<int64_t>(n), 0.0f, 1.0f);
  return v;
}
// float64 oracle: C = alpha op(A) op(B) + beta C on row-major storage with leading dims.
void ref_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const float* a, int64_t lda,
              const float* b, int64_t ldb, double beta, std::vector<double>& c, int64_t ldc, int64_t coff) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p) s += double(ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
      double& cv = c[coff + i * ldc + j];
      cv = alpha * s + beta * cv;
    }
}
}  // namespace

TEST_CASE("cpu gemm: all four transpose combinations, alpha and beta, odd sizes", "[unit][backend]") {
  CpuBackend be;
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {7, 5, 3}, {33, 17, 65}, {64, 128, 96}})
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        auto a = randn(m * k, 1), b = randn(k * n, 2), c = randn(m * n, 3);
        std::vector<double> want(c.begin(), c.end());
        const float alpha = 0.75f, beta = -1.5f;
        TensorView A = ta ? TensorView::of(a.data(), {k, m}) : TensorView::of(a.data(), {m, k});
        TensorView B = tb ? TensorView::of(b.data(), {n, k}) : TensorView::of(b.data(), {k, n});
        be.gemm(A, ta, B, tb, TensorView::of(c.data(), {m, n}), alpha, beta);
        ref_gemm(ta, tb, m, n, k, alpha, a.data(), ta ? m : k, b.data(), tb ? k : n, beta, want, n, 0);
        for (int64_t i = 0; i < m * n; ++i) REQUIRE(c[i] == Approx(want[i]).margin(1e-4 * std::sqrt(double(k))));
      }
}

TEST_CASE("cpu gemm: exact on small integers, beta = 0 ignores NaN garbage in C", "[unit][backend]") {
  CpuBackend be;
  float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {7, 8, 9, 10, 11, 12};
  float c[4] = {NAN, NAN, NAN, NAN};
  be.gemm(TensorView::of(a, {2, 3}), false, TensorView::of(b, {3, 2}), false, TensorView::of(c, {2, 2}));
  CHECK(c[0] == 58);
  CHECK(c[1] == 64);
  CHECK(c[2] == 139);
  CHECK(c[3] == 154);
}

TEST_CASE("cpu gemm: strided batched, with a broadcast operand and a padded leading dimension", "[unit][backend]") {
  CpuBackend be;
  const int64_t batch = 3, m = 5, n = 6, k = 4, ldc = 9;
  auto a = randn(batch * m * k, 4), b = randn(k * n, 5);  // B shared by every batch
  std::vector<float> c(batch * m * ldc, 7.0f);
  std::vector<double> want(c.begin(), c.end());
  TensorView C(c.data(), DType::F32, {batch, m, n});
  C.strides = {m * ldc, ldc, 1};
  be.gemm(TensorView::of(a.data(), {batch, m, k}), false, TensorView::of(b.data(), {1, k, n}), false, C, 1.0f, 1.0f);
  for (int64_t i = 0; i < batch; ++i)
    ref_gemm(false, false, m, n, k, 1.0, a.data() + i * m * k, k, b.data(), n, 1.0, want, ldc, i * m * ldc);
  for (size_t i = 0; i < c.size(); ++i) REQUIRE(c[i] == Approx(want[i]).margin(1e-5));  // padding stays 7
}

TEST_CASE("cpu gemm: shape mismatches are clear errors", "[unit][backend]") {
  CpuBackend be;
  std::vector<float> x(64);
  REQUIRE_THROWS_WITH(be.gemm(TensorView::of(x.data(), {2, 3}), false, TensorView::of(x.data(), {4, 2}), false,
                              TensorView::of(x.data(), {2, 2})),
                      Catch::Contains("inner dimensions differ"));
  REQUIRE_THROWS_WITH(be.gemm(TensorView::of(x.data(), {2, 3}), false, TensorView::of(x.data(), {3, 2}), false,
                              TensorView::of(x.data(), {3, 2})),
                      Catch::Contains("is not [2,2]"));
}

TEST_CASE("cpu backend: no TF32 math and no known peak; asking for TF32 is a clear error", "[unit][gemm]") {
  CpuBackend be(1);
  CHECK(be.peak_flops() == 0.0);
  be.allow_tf32(false);
  REQUIRE_THROWS_WITH(be.allow_tf32(true), Catch::Contains("parallel.tf32 = true needs the CUDA backend"));
}
