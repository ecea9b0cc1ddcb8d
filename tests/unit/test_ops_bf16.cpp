// bf16 activations on the CPU oracle (backend.h "Activation dtype"): every op's bf16 form equals its f32 form run
// on the widened inputs with each bf16 output rounded once (RNE), bit for bit; the f32 forms are checked against
// float64 in test_ops.cpp. Views are column blocks of wider fused buffers with odd widths, so strides, staging
// slots and the untouched columns between views are exercised; bad dtype mixes are fatal.
#include <catch2/catch.hpp>
#include <cstring>
#include <vector>

#include "../common/ref_check.h"
#include "cgrpo/backend/cpu_backend.h"

using namespace cgrpo;
using namespace cgrpo::test;

namespace {

using Bits = std::vector<uint16_t>;

Bits to_bits(const std::vector<float>& x) {
  Bits b(x.size());
  for (size_t i = 0; i < x.size(); ++i) b[i] = f32_to_bf16(x[i]);
  return b;
}
std::vector<float> widen(const Bits& b) {
  std::vector<float> x(b.size());
  for (size_t i = 0; i < b.size(); ++i) x[i] = bf16_to_f32(b[i]);
  return x;
}
// [rows, cols] views at column c0 of a row-major buffer with row stride ld
TensorView bview(Bits& b, int64_t rows, int64_t cols, int64_t ld, int64_t c0 = 0) {
  TensorView t(b.data() + c0, DType::BF16, {rows, cols});
  t.strides[0] = ld;
  return t;
}
TensorView fview(std::vector<float>& b, int64_t rows, int64_t cols, int64_t ld, int64_t c0 = 0) {
  return rows_view(b.data() + c0, rows, cols, ld);
}

// Every element of got equals round_bf16(want) (the f32 op's result), bit for bit.
void require_rounded(const Bits& got, const std::vector<float>& want, const char* what) {
  REQUIRE(got.size() == want.size());
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i] != f32_to_bf16(want[i]) && bad++ == 0) first = i;
  INFO(what << ": " << bad << " of " << got.size() << " differ; first at " << first << ": got "
            << bf16_to_f32(got[first]) << " want round(" << want[first] << ")");
  REQUIRE(bad == 0);
}
void require_same(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
  INFO(what);
  REQUIRE(got.size() == want.size());
  REQUIRE(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0);
}

}  // namespace

TEST_CASE("ops bf16: gemm with a bf16 C is the fp32-accumulated product rounded once", "[model][ops][bf16]") {
  CpuBackend be;
  const int64_t m = 7, k = 13, n = 5, ldc = 9;
  Bits A = to_bits(randn(m * k, 1)), B = to_bits(randn(n * k, 2));
  for (bool tb : {false, true}) {
    INFO("trans_b " << tb);
    Bits C(m * ldc, 0x7fc1);  // NaN pattern: columns outside the view must stay
    be.gemm(TensorView(A.data(), DType::BF16, {m, k}), false,
            tb ? TensorView(B.data(), DType::BF16, {n, k}) : TensorView(B.data(), DType::BF16, {k, n}), tb,
            bview(C, m, n, ldc, 3), 0.5f);
    std::vector<float> a = widen(A), b = widen(B), c(m * n);
    be.gemm(TensorView::of(a.data(), {m, k}), false,
            tb ? TensorView::of(b.data(), {n, k}) : TensorView::of(b.data(), {k, n}), tb,
            TensorView::of(c.data(), {m, n}), 0.5f);
    Bits got(m * n);
    for (int64_t r = 0; r < m; ++r)
      for (int64_t j = 0; j < ldc; ++j) {
        if (j >= 3 && j < 3 + n) got[r * n + j - 3] = C[r * ldc + j];
        else REQUIRE(C[r * ldc + j] == 0x7fc1);
      }
    require_rounded(got, c, "gemm C");
  }
  Bits C(m * n);
  REQUIRE_THROWS_WITH(be.gemm(TensorView(A.data(), DType::BF16, {m, k}), false, TensorView(B.data(), DType::BF16, {n, k}),
                              true, TensorView(C.data(), DType::BF16, {m, n}), 1.0f, 1.0f),
                      Catch::Contains("beta = 0"));
  std::vector<float> a = widen(A), b = widen(B);
  REQUIRE_THROWS_WITH(be.gemm(TensorView::of(a.data(), {m, k}), false, TensorView::of(b.data(), {n, k}), true,
                              TensorView(C.data(), DType::BF16, {m, n})),
                      Catch::Contains("bf16 x bf16 -> bf16"));
}

TEST_CASE("ops bf16: rmsnorm into bf16, rope in place, swiglu and bias on bf16 column blocks", "[model][ops][bf16]") {
  CpuBackend be;
  const int64_t N = 11, H = 19, ld = 23;
  SECTION("rmsnorm: y bf16, rstd and the backward unchanged") {
    auto x = randn(N * H, 3, 2.0f), w = randn(H, 4);
    Bits y(N * ld, 0);
    std::vector<float> rstd(N), y32(N * H), rstd32(N);
    be.rmsnorm_fwd(TensorView::of(x.data(), {N, H}), TensorView::of(w.data(), {H}), 1e-6f, bview(y, N, H, ld, 2),
                   rstd.data());
    be.rmsnorm_fwd(TensorView::of(x.data(), {N, H}), TensorView::of(w.data(), {H}), 1e-6f,
                   TensorView::of(y32.data(), {N, H}), rstd32.data());
    Bits got(N * H);
    for (int64_t r = 0; r < N; ++r)
      for (int64_t j = 0; j < H; ++j) got[r * H + j] = y[r * ld + 2 + j];
    require_rounded(got, y32, "rmsnorm y");
    require_same(rstd, rstd32, "rmsnorm rstd");
  }
  SECTION("rope: bf16 in place; the backward stays f32") {
    const int64_t hd = 8, C = 3 * hd, ldq = C + 5;
    std::vector<int32_t> pos(N);
    for (int64_t i = 0; i < N; ++i) pos[i] = int32_t(7 * i % 13);
    Bits x = to_bits(randn(N * ldq, 5, 3.0f));
    std::vector<float> x32 = widen(x);
    be.rope_fwd(bview(x, N, C, ldq, 1), hd, pos.data(), 1e4f);
    be.rope_fwd(fview(x32, N, C, ldq, 1), hd, pos.data(), 1e4f);
    require_rounded(x, x32, "rope x (columns outside the view unchanged)");
    REQUIRE_THROWS_WITH(be.rope_bwd(bview(x, N, C, ldq, 1), hd, pos.data(), 1e4f), Catch::Contains("must be f32"));
  }
  SECTION("swiglu forward into bf16, backward reads bf16 g, u; bias_add on bf16") {
    const int64_t I = 13;
    Bits gu = to_bits(randn(N * 2 * I, 6, 2.0f));  // fused [N, gate | up]
    Bits out(N * I);
    be.swiglu_fwd(bview(gu, N, I, 2 * I), bview(gu, N, I, 2 * I, I), bview(out, N, I, I));
    std::vector<float> gu32 = widen(gu), out32(N * I);
    be.swiglu_fwd(fview(gu32, N, I, 2 * I), fview(gu32, N, I, 2 * I, I), TensorView::of(out32.data(), {N, I}));
    require_rounded(out, out32, "swiglu out");

    auto dout = randn(N * I, 7);
    std::vector<float> dgu(N * 2 * I, 99.0f), dgu32(N * 2 * I, 99.0f);
    be.swiglu_bwd(TensorView::of(dout.data(), {N, I}), bview(gu, N, I, 2 * I), bview(gu, N, I, 2 * I, I),
                  fview(dgu, N, I, 2 * I), fview(dgu, N, I, 2 * I, I));
    be.swiglu_bwd(TensorView::of(dout.data(), {N, I}), fview(gu32, N, I, 2 * I), fview(gu32, N, I, 2 * I, I),
                  fview(dgu32, N, I, 2 * I), fview(dgu32, N, I, 2 * I, I));
    require_same(dgu, dgu32, "swiglu dg, du");
    REQUIRE_THROWS_WITH(be.swiglu_fwd(bview(gu, N, I, 2 * I), fview(gu32, N, I, 2 * I, I), bview(out, N, I, I)),
                        Catch::Contains("share one dtype"));

    auto b = randn(I, 8);
    be.bias_add(bview(gu, N, I, 2 * I, I), TensorView::of(b.data(), {I}));
    be.bias_add(fview(gu32, N, I, 2 * I, I), TensorView::of(b.data(), {I}));
    require_rounded(gu, gu32, "bias_add y (gate columns unchanged)");
  }
}

TEST_CASE("ops bf16: GQA attention with bf16 q, k, v, o, masks, the backward matches the f32 op on the same values",
          "[model][ops][bf16]") {
  CpuBackend be;
  for (auto [nh, nkv] : {std::pair<int64_t, int64_t>{3, 1}, {4, 2}}) {
    for (int masked = 0; masked < 2; ++masked) {
      INFO("heads " << nh << " kv_heads " << nkv << " masked " << masked);
      const AttnShape s{2, 9, nh, nkv, 8};
      const int64_t N = s.B * s.L, qw = nh * s.head_dim, kw = nkv * s.head_dim, ld = qw + 2 * kw;
      std::vector<uint8_t> mask(N, 1);
      mask[3] = mask[4] = 0;
      for (int64_t j = 0; j < s.L; ++j) mask[s.L + j] = j % 3 == 1;
      const uint8_t* km = masked ? mask.data() : nullptr;
      Bits qkv = to_bits(randn(N * ld, 9 + masked, 1.5f));  // fused [N, q | k | v]
      std::vector<float> qkv32 = widen(qkv);
      Bits o(N * qw);
      std::vector<float> o32(N * qw), lse(s.B * nh * s.L), lse32(lse.size());
      be.attention_fwd(s, bview(qkv, N, qw, ld), bview(qkv, N, kw, ld, qw), bview(qkv, N, kw, ld, qw + kw), km,
                       bview(o, N, qw, qw), lse.data());
      be.attention_fwd(s, fview(qkv32, N, qw, ld), fview(qkv32, N, kw, ld, qw), fview(qkv32, N, kw, ld, qw + kw), km,
                       TensorView::of(o32.data(), {N, qw}), lse32.data());
      require_rounded(o, o32, "attention o");
      require_same(lse, lse32, "attention lse");

      // backward: the f32 op on the widened bf16 o the forward saved
      auto dout = randn(N * qw, 11);
      std::vector<float> ow = widen(o), d(N * ld, 99.0f), d32(N * ld, 99.0f);
      be.attention_bwd(s, bview(qkv, N, qw, ld), bview(qkv, N, kw, ld, qw), bview(qkv, N, kw, ld, qw + kw), km,
                       bview(o, N, qw, qw), lse.data(), TensorView::of(dout.data(), {N, qw}), fview(d, N, qw, ld),
                       fview(d, N, kw, ld, qw), fview(d, N, kw, ld, qw + kw));
      be.attention_bwd(s, fview(qkv32, N, qw, ld), fview(qkv32, N, kw, ld, qw), fview(qkv32, N, kw, ld, qw + kw), km,
                       TensorView::of(ow.data(), {N, qw}), lse.data(), TensorView::of(dout.data(), {N, qw}),
                       fview(d32, N, qw, ld), fview(d32, N, kw, ld, qw), fview(d32, N, kw, ld, qw + kw));
      require_same(d, d32, "attention dq, dk, dv");
    }
  }
  const AttnShape s{1, 4, 2, 1, 4};
  Bits q(4 * 8), kv(4 * 4);
  std::vector<float> o(4 * 8), lse(8), g(4 * 8);
  REQUIRE_THROWS_WITH(be.attention_fwd(s, bview(q, 4, 8, 8), bview(kv, 4, 4, 4), bview(kv, 4, 4, 4), nullptr,
                                       TensorView::of(o.data(), {4, 8}), lse.data()),
                      Catch::Contains("must share one dtype"));
  Bits ob(4 * 8);
  REQUIRE_THROWS_WITH(be.attention_bwd(s, bview(q, 4, 8, 8), bview(kv, 4, 4, 4), bview(kv, 4, 4, 4), nullptr,
                                       bview(ob, 4, 8, 8), lse.data(), bview(ob, 4, 8, 8), bview(q, 4, 8, 8),
                                       bview(kv, 4, 4, 4), bview(kv, 4, 4, 4)),
                      Catch::Contains("must be f32"));
}
