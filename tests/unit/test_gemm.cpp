#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <tuple>
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

TEST_CASE("cpu backend: no TF32 math and no known peak, asking for TF32 is a clear error", "[unit][gemm]") {
  CpuBackend be(1);
  CHECK(be.peak_flops() == 0.0);
  be.allow_tf32(false);
  REQUIRE_THROWS_WITH(be.allow_tf32(true), Catch::Contains("parallel.tf32 = true needs the CUDA backend"));
}

namespace {
std::vector<uint16_t> bf16_of(const std::vector<float>& v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = f32_to_bf16(v[i]);
  return h;
}
std::vector<float> f32_of(const std::vector<uint16_t>& h) {
  std::vector<float> v(h.size());
  for (size_t i = 0; i < h.size(); ++i) v[i] = bf16_to_f32(h[i]);
  return v;
}
TensorView bf16_view(std::vector<uint16_t>& h, std::initializer_list<int64_t> dims, int64_t ld = 0) {
  TensorView t(h.data(), DType::BF16, dims);
  if (ld > 0) t.strides[t.ndim - 2] = ld;
  return t;
}
}  // namespace

// bf16 x bf16 -> fp32 with fp32 accumulation: the products of bf16 values are exact in double, so the
// double-loop oracle on the bf16-rounded inputs differs only by fp32 accumulation rounding (~k * 2^-24 * sum|ab|).
TEST_CASE("cpu gemm: bf16 x bf16 -> fp32 vs a double loop on the bf16 values, transposes and column blocks",
          "[unit][backend]") {
  CpuBackend be;
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {7, 5, 3}, {33, 17, 65}})
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        INFO("m " << m << " n " << n << " k " << k << " ta " << ta << " tb " << tb);
        // A and B are column blocks (offset 2, row stride cols + 3) of wider bf16 matrices
        const int64_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
        const int64_t lda = ac + 3, ldb = bc + 3;
        auto ha = bf16_of(randn(size_t(ar * lda), 11)), hb = bf16_of(randn(size_t(br * ldb), 12));
        const auto fa = f32_of(ha), fb = f32_of(hb);
        auto c = randn(size_t(m * n), 13);
        std::vector<double> want(c.begin(), c.end());
        TensorView A(ha.data() + 2, DType::BF16, {ar, ac}), B(hb.data() + 2, DType::BF16, {br, bc});
        A.strides[0] = lda;
        B.strides[0] = ldb;
        const float alpha = 1.25f, beta = 0.5f;
        be.gemm(A, ta, B, tb, TensorView::of(c.data(), {m, n}), alpha, beta);
        ref_gemm(ta, tb, m, n, k, alpha, fa.data() + 2, lda, fb.data() + 2, ldb, beta, want, n, 0);
        for (int64_t i = 0; i < m * n; ++i) REQUIRE(c[i] == Approx(want[i]).margin(1e-5 * double(k)));
      }
  // the bf16 path runs exactly the fp32 sgemm on the widened values: bit-identical results
  const int64_t m = 9, n = 6, k = 10;
  auto ha = bf16_of(randn(size_t(m * k), 14)), hb = bf16_of(randn(size_t(n * k), 15));
  auto fa = f32_of(ha), fb = f32_of(hb);
  std::vector<float> c1(size_t(m * n)), c2(size_t(m * n));
  be.gemm(bf16_view(ha, {m, k}), false, bf16_view(hb, {n, k}), true, TensorView::of(c1.data(), {m, n}));
  be.gemm(TensorView::of(fa.data(), {m, k}), false, TensorView::of(fb.data(), {n, k}), true,
          TensorView::of(c2.data(), {m, n}));
  REQUIRE(std::memcmp(c1.data(), c2.data(), c1.size() * 4) == 0);
  // the log-softmax ops hold workspace() across their gemm calls: a bf16 gemm must not move it
  float* ws = be.workspace(4);
  be.gemm(bf16_view(ha, {m, k}), false, bf16_view(hb, {n, k}), true, TensorView::of(c1.data(), {m, n}));
  REQUIRE(be.workspace(4) == ws);
}

TEST_CASE("cpu gemm: bf16 strided batched with a broadcast operand, padded C, unsupported dtypes are clear errors",
          "[unit][backend]") {
  CpuBackend be;
  const int64_t batch = 3, m = 5, n = 6, k = 4, ldc = 9;
  auto ha = bf16_of(randn(size_t(batch * m * k), 16)), hb = bf16_of(randn(size_t(k * n), 17));  // B broadcast
  const auto fa = f32_of(ha), fb = f32_of(hb);
  std::vector<float> c(size_t(batch * m * ldc), 7.0f);
  std::vector<double> want(c.begin(), c.end());
  TensorView C(c.data(), DType::F32, {batch, m, n});
  C.strides = {m * ldc, ldc, 1};
  TensorView B = bf16_view(hb, {batch, k, n});
  B.strides[0] = 0;  // stride-0 broadcast
  be.gemm(bf16_view(ha, {batch, m, k}), false, B, false, C, 1.0f, 1.0f);
  for (int64_t i = 0; i < batch; ++i)
    ref_gemm(false, false, m, n, k, 1.0, fa.data() + i * m * k, k, fb.data(), n, 1.0, want, ldc, i * m * ldc);
  for (size_t i = 0; i < c.size(); ++i) REQUIRE(c[i] == Approx(want[i]).margin(1e-5));  // padding stays 7
  // a batch-1 bf16 operand broadcasts too
  std::fill(c.begin(), c.end(), 7.0f);
  be.gemm(bf16_view(ha, {batch, m, k}), false, bf16_view(hb, {1, k, n}), false, C, 1.0f, 1.0f);
  for (size_t i = 0; i < c.size(); ++i) REQUIRE(c[i] == Approx(want[i]).margin(1e-5));

  std::vector<float> f(64);
  std::vector<uint16_t> h(64);
  REQUIRE_THROWS_WITH(be.gemm(bf16_view(h, {2, 3}), false, TensorView::of(f.data(), {3, 2}), false,
                              TensorView::of(f.data(), {2, 2})),
                      Catch::Contains("differ in dtype"));
  // a bf16 C is written (beta = 0, test_ops_bf16.cpp), never accumulated into
  REQUIRE_THROWS_WITH(be.gemm(bf16_view(h, {2, 3}), false, bf16_view(h, {3, 2}), false, bf16_view(h, {2, 2}), 1.0f, 1.0f),
                      Catch::Contains("bf16 x bf16 -> bf16 (beta = 0)"));
}
