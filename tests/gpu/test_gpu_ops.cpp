// CudaBackend model and flat-vector ops against CpuBackend, forward and backward: odd shapes (N = 1, 7, 33,
// 129; C not a multiple of 4 or 32), row strides > C (column-block views, unaligned and aligned), += outputs
// starting from non-zero values, determinism (the same bits twice), device-side index errors, the allocator.
//
// Tolerances (why each is what it is):
//   bit-identical: copy, zero, embedding_fwd/bwd, bias_add, axpby, adamw, cast (same fp32 operation sequence),
//     and every padding column (ops must not touch memory outside their views).
//   rmsnorm: y 1e-6 relative, rstd 3e-7 relative (the double statistic rounds to the same fp32 rstd except at a
//     rounding boundary, 1 ulp); dx 1e-6 of the size of its terms |dx0| + r (|dy w| + |xhat mean|); dw, db: the
//     CPU's sequential fp32 sum is the less accurate side, bound (N + 2) 2^-23 (|dw0| + sum_n |term|).
//   rope: 2e-6 (|x1| + |x2|): bit-identical angles, precise sincosf vs glibc (each <= 2 ulp).
//   swiglu: 2e-6 relative (expf vs the CPU's polynomial exp); dg relative to |d u sig| (1 + |g|) because
//     1 + g (1 - sig) cancels near g = -1.28.
//   sumsq: 1e-12 relative (double sums, different order).
//   logsoftmax_gather: the gemm bound rel (|want| + sqrt(k)) with rel 2e-5 (logp, k = H) and 1e-4 (dh: k = V,
//     dW: k = R), as the cuBLASLt gemm tests; logits differ by fp32 summation order.
//
// bf16 activations (backend.h "f32|bf16": rmsnorm y, rope_fwd x, swiglu g/u/out, bias_add y): the rmsnorm, rope
// and swiglu/bias tests run each op again with those arguments bf16 (Rows with DType::BF16) against the oracle
// computed here as the contract defines it, round_bf16(CpuBackend's f32 op on the widened inputs): the f32
// tolerance plus one bf16 ulp at every bf16 output (Rows::act_tol); bias_add stays bit-identical. f32-only
// arguments given bf16 (rope_bwd, swiglu's dout/dg/du) are fatal.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "cgrpo/backend/cpu_backend.h"
#include "cgrpo/backend/cuda_backend.h"
#include "cgrpo/core/dtype.h"
#include "cgrpo/core/philox.h"
#include "gpu_test_util.h"

using namespace cgrpo;
using namespace gpu_test;

namespace {
const int64_t kRows[] = {1, 7, 33, 129};

std::vector<double> rel_tol(const std::vector<float>& want, double rel, double abs_tol = 0.0) {
  std::vector<double> t(want.size());
  for (size_t i = 0; i < want.size(); ++i) t[i] = rel * std::fabs(double(want[i])) + abs_tol;
  return t;
}
}  // namespace

TEST_CASE("cuda copy and zero: row views with strides, 1-D tensors, padding untouched", "[gpu][ops]") {
  CpuBackend cpu(1);
  for (int64_t N : kRows)
    for (int64_t C : {1, 5, 37, 128})
      for (const Layout& ls : layouts())
        for (const Layout& ld : layouts()) {
          INFO("N " << N << " C " << C << " src off " << ls.off << " dst off " << ld.off);
          const auto vals = randn(size_t(N * C), 1);
          Rows src(vals, N, C, ls, 11), dst(randn(size_t(N * C), 2), N, C, ld, 12);
          gpu().copy(src.gpu_view(), dst.gpu_view());
          cpu.copy(src.cpu(), dst.cpu());
          expect_bits(dst.got(), dst.host, "copy");
          gpu().zero(src.gpu_view());
          cpu.zero(src.cpu());
          expect_bits(src.got(), src.host, "zero");
        }
  // 1-D
  auto v = randn(1001, 3), w = randn(1001, 4);
  Dev dv(v, DType::F32, {1001}), dw(w, DType::F32, {1001});
  gpu().copy(dv.view, dw.view);
  expect_bits(dw.get<float>(1001), v, "copy 1-D");
  gpu().zero(dw.view);
  for (float x : dw.get<float>(1001)) REQUIRE(bits(x) == 0u);
  // host tensors are refused
  REQUIRE_THROWS_WITH(gpu().zero(TensorView::of(v.data(), {1001})), Catch::Contains("is in cpu memory"));
}

TEST_CASE("cuda embedding: forward gathers, backward adds repeated ids in position order bit for bit",
          "[gpu][ops]") {
  CpuBackend cpu(1);
  const int64_t V = 50;
  for (int64_t N : {int64_t(1), int64_t(7), int64_t(33), int64_t(129), int64_t(700)})
    for (int64_t H : {3, 12, 37, 128})
      for (const Layout& lay : layouts()) {
        INFO("N " << N << " H " << H << " off " << lay.off);
        // many repeats: id 13 at every even position (runs longer than 8 and than a block), others spread
        std::vector<int32_t> ids(static_cast<size_t>(N));
        for (int64_t n = 0; n < N; ++n) ids[size_t(n)] = n % 2 == 0 ? 13 : int32_t((n * 7) % V);
        ids[0] = V - 1;
        Dev dids(ids, DType::F32, {N});
        Rows table(randn(size_t(V * H), 5), V, H, lay, 21), out(randn(size_t(N * H), 6), N, H, lay, 22);
        gpu().embedding_fwd(table.gpu_view(), dids.ptr<int32_t>(), out.gpu_view());
        cpu.embedding_fwd(table.cpu(), ids.data(), out.cpu());
        expect_bits(out.got(), out.host, "embedding_fwd");
        // a bf16 table (bf16 parameters): the same rows widened, bit for bit
        Rows table16(randn(size_t(V * H), 5), V, H, lay, 21, DType::BF16);
        gpu().embedding_fwd(table16.gpu_view(), dids.ptr<int32_t>(), out.gpu_view());
        cpu.embedding_fwd(table16.cpu(), ids.data(), out.cpu());  // the widened backing: the oracle's answer
        expect_bits(out.got(), out.host, "embedding_fwd, bf16 table");

        Rows dout(randn(size_t(N * H), 7), N, H, lay, 23), dtable(randn(size_t(V * H), 8), V, H, lay, 24);
        gpu().embedding_bwd(dout.gpu_view(), dids.ptr<int32_t>(), dtable.gpu_view());
        cpu.embedding_bwd(dout.cpu(), ids.data(), dtable.cpu());
        expect_bits(dtable.got(), dtable.host, "embedding_bwd");  // also: the same bits every run
      }
}

TEST_CASE("cuda embedding: an id outside the vocabulary is fatal at the next synchronisation", "[gpu][ops]") {
  const int64_t V = 10, H = 8, N = 4;
  const std::vector<int32_t> bad_fwd = {1, 2, 10, 3}, bad_bwd = {1, 2, 2, -1};
  Dev fwd_ids(bad_fwd, DType::F32, {N}), bwd_ids(bad_bwd, DType::F32, {N});
  Rows table(randn(V * H, 1), V, H, {0, 0}), out(randn(N * H, 2), N, H, {0, 0});
  gpu().embedding_fwd(table.gpu_view(), fwd_ids.ptr<int32_t>(), out.gpu_view());
  REQUIRE_THROWS_WITH(gpu().synchronize(), Catch::Contains("token id 10 at position 2 is outside the vocabulary [0, 10)"));
  gpu().synchronize();  // cleared
  const auto rows = out.logical(out.got());
  for (int64_t j = 0; j < H; ++j) CHECK(rows[size_t(2 * H + j)] == 0.0f);  // the bad row is zeros, nothing read
  gpu().embedding_bwd(out.gpu_view(), bwd_ids.ptr<int32_t>(), table.gpu_view());
  std::vector<float> sink(4);
  REQUIRE_THROWS_WITH(gpu().download(table.dev.ptr<float>(), sink.data(), 16),
                      Catch::Contains("embedding_bwd: token id -1 at position 3"));
  gpu().synchronize();
}

TEST_CASE("cuda rmsnorm: forward (y f32 or bf16), backward (dx +=, dw +=), deterministic, alignment-independent bits",
          "[gpu][ops]") {
  CpuBackend cpu(1);
  const float eps = 1e-6f;
  for (DType yt : {DType::F32, DType::BF16})
  for (int64_t N : kRows)
    for (int64_t H : {5, 37, 128, 1000})
      for (const Layout& lay : layouts()) {
        INFO("N " << N << " H " << H << " off " << lay.off << " y " << dtype_name(yt));
        const auto xv = randn(size_t(N * H), 1, 2.0f), wv = randn(size_t(H), 2);
        Rows x(xv, N, H, lay, 31), y(randn(size_t(N * H), 3), N, H, lay, 32, yt);
        Dev w(wv, DType::F32, {H});
        std::vector<float> rstd_cpu(static_cast<size_t>(N));
        Dev rstd(std::vector<float>(size_t(N), 0.0f), DType::F32, {N});
        gpu().rmsnorm_fwd(x.gpu_view(), w.view, eps, y.gpu_view(), rstd.ptr<float>());
        cpu.rmsnorm_fwd(x.cpu(), TensorView::of(wv.data(), {H}), eps, y.cpu(), rstd_cpu.data());
        y.round_host();
        const auto rg = rstd.get<float>(size_t(N));
        expect_within(rg, rstd_cpu, rel_tol(rstd_cpu, 3e-7), "rstd");
        const auto y_got = y.got();
        expect_within(y_got, y.host, y.act_tol(rel_tol(y.host, 1e-6)), "rmsnorm y");
        // the same logical rows stored contiguously give the same statistic bits and y (vector vs scalar path)
        Rows x0(xv, N, H, {0, 0}, 33);
        Dev rstd0(std::vector<float>(size_t(N), 0.0f), DType::F32, {N});
        Rows y0(randn(size_t(N * H), 3), N, H, {0, 0}, 34, yt);
        gpu().rmsnorm_fwd(x0.gpu_view(), w.view, eps, y0.gpu_view(), rstd0.ptr<float>());
        expect_bits(rstd0.get<float>(size_t(N)), rg, "rstd across layouts");
        expect_bits(y0.logical(y0.got()), y.logical(y_got), "y across layouts");
        if (yt != DType::F32) continue;  // the backward is all fp32: once

        // backward from non-zero dx, dw; the CPU uses its own rstd
        const auto dyv = randn(size_t(N * H), 4), dx0 = randn(size_t(N * H), 5), dw0 = randn(size_t(H), 6);
        Rows dy(dyv, N, H, lay, 35), dx(dx0, N, H, lay, 36);
        Dev rstd_in(rstd_cpu, DType::F32, {N}), dw(dw0, DType::F32, {H});
        std::vector<float> dw_cpu = dw0;
        gpu().rmsnorm_bwd(dy.gpu_view(), x.gpu_view(), w.view, rstd_in.ptr<float>(), dx.gpu_view(), dw.view);
        cpu.rmsnorm_bwd(dy.cpu(), x.cpu(), TensorView::of(wv.data(), {H}), rstd_cpu.data(), dx.cpu(),
                        TensorView::of(dw_cpu.data(), {H}));
        const auto dx_got = dx.got(), dw_got = dw.get<float>(size_t(H));
        std::vector<double> tol_dx(dx.host.size(), 0.0), tol_dw(size_t(H), 0.0);
        for (int64_t n = 0; n < N; ++n) {
          const double r = rstd_cpu[size_t(n)];
          double dot = 0;
          for (int64_t j = 0; j < H; ++j) dot += double(dyv[size_t(n * H + j)]) * wv[size_t(j)] * xv[size_t(n * H + j)] * r;
          const double mean = dot / double(H);
          for (int64_t j = 0; j < H; ++j) {
            const size_t i = size_t(n * H + j);
            const double xhat = double(xv[i]) * r;
            tol_dx[size_t(n * dx.ld + dx.off + j)] =
                1e-6 * (std::fabs(dx0[i]) + r * (std::fabs(double(dyv[i]) * wv[size_t(j)]) + std::fabs(xhat * mean)));
            tol_dw[size_t(j)] += std::fabs(double(dyv[i]) * xhat);
          }
        }
        for (int64_t j = 0; j < H; ++j)
          tol_dw[size_t(j)] = double(N + 2) * std::ldexp(1.0, -23) * (std::fabs(dw0[size_t(j)]) + tol_dw[size_t(j)]);
        expect_within(dx_got, dx.host, tol_dx, "rmsnorm dx");  // padding: tol 0, so bit-identical
        expect_within(dw_got, dw_cpu, tol_dw, "rmsnorm dw");

        // determinism: the same backward again from the same start, the same bits
        Rows dx2(dx0, N, H, lay, 36);
        Dev dw2(dw0, DType::F32, {H});
        gpu().rmsnorm_bwd(dy.gpu_view(), x.gpu_view(), w.view, rstd_in.ptr<float>(), dx2.gpu_view(), dw2.view);
        expect_bits(dx2.got(), dx_got, "rmsnorm dx twice");
        expect_bits(dw2.get<float>(size_t(H)), dw_got, "rmsnorm dw twice");
      }
}

TEST_CASE("cuda rmsnorm backward: dx may alias dy (dw is computed first)", "[gpu][ops]") {
  CpuBackend cpu(1);
  const int64_t N = 33, H = 37;
  const auto xv = randn(N * H, 1), wv = randn(H, 2), g = randn(N * H, 3), dw0 = randn(H, 4);
  std::vector<float> rstd(N), y(N * H), g_cpu = g, dw_cpu = dw0;
  cpu.rmsnorm_fwd(TensorView::of(xv.data(), {N, H}), TensorView::of(wv.data(), {H}), 1e-5f,
                  TensorView::of(y.data(), {N, H}), rstd.data());
  cpu.rmsnorm_bwd(TensorView::of(g_cpu.data(), {N, H}), TensorView::of(xv.data(), {N, H}),
                  TensorView::of(wv.data(), {H}), rstd.data(), TensorView::of(g_cpu.data(), {N, H}),
                  TensorView::of(dw_cpu.data(), {H}));
  Dev x(xv, DType::F32, {N, H}), w(wv, DType::F32, {H}), dg(g, DType::F32, {N, H}), r(rstd, DType::F32, {N}),
      dw(dw0, DType::F32, {H});
  gpu().rmsnorm_bwd(dg.view, x.view, w.view, r.ptr<float>(), dg.view, dw.view);
  expect_within(dg.get<float>(N * H), g_cpu, rel_tol(g_cpu, 1e-5, 1e-5), "aliased dx");
  expect_within(dw.get<float>(H), dw_cpu, rel_tol(dw_cpu, 1e-5, 1e-5), "dw with aliased dx");
}

TEST_CASE("cuda rope: forward (x f32 or bf16) and backward in place on strided views, explicit positions",
          "[gpu][ops]") {
  CpuBackend cpu(1);
  const float theta = 1000000.0f;
  for (DType xt : {DType::F32, DType::BF16})
  for (int64_t N : kRows)
    for (int64_t hd : {2, 8, 64, 128})
      for (int64_t heads : {1, 3})
        for (const Layout& lay : layouts()) {
          const int64_t C = heads * hd;
          INFO("N " << N << " head_dim " << hd << " heads " << heads << " off " << lay.off << " x "
                    << dtype_name(xt));
          std::vector<int32_t> pos(static_cast<size_t>(N));
          RngStream rng(3, RngPurpose::Test, 0, 0);
          for (int64_t n = 0; n < N; ++n) pos[size_t(n)] = n == 0 ? 0 : int32_t(rng.uniform(uint64_t(n)) * 32768.0f);
          Dev dpos(pos, DType::F32, {N});
          const auto xv = as_act(randn(size_t(N * C), 1), xt);
          for (int dir = 0; dir < (xt == DType::F32 ? 2 : 1); ++dir) {  // rope_bwd's dx is f32 only
            Rows x(xv, N, C, lay, 41, xt);
            if (dir == 0) {
              gpu().rope_fwd(x.gpu_view(), hd, dpos.ptr<int32_t>(), theta);
              cpu.rope_fwd(x.cpu(), hd, pos.data(), theta);
              x.round_host();
            } else {
              gpu().rope_bwd(x.gpu_view(), hd, dpos.ptr<int32_t>(), theta);
              cpu.rope_bwd(x.cpu(), hd, pos.data(), theta);
            }
            std::vector<double> tol(x.host.size(), 0.0);
            for (int64_t n = 0; n < N; ++n)
              for (int64_t h = 0; h < heads; ++h)
                for (int64_t j = 0; j < hd / 2; ++j) {
                  const size_t a = size_t(n * C + h * hd + j), b = a + size_t(hd / 2);
                  const double t = 2e-6 * (std::fabs(xv[a]) + std::fabs(xv[b]));
                  tol[size_t(n * x.ld + x.off + h * hd + j)] = t;
                  tol[size_t(n * x.ld + x.off + h * hd + j + hd / 2)] = t;
                }
            expect_within(x.got(), x.host, x.act_tol(tol), dir == 0 ? "rope_fwd" : "rope_bwd");
          }
          if (xt != DType::F32) {
            Rows x(xv, N, C, lay, 41, xt);
            REQUIRE_THROWS_WITH(gpu().rope_bwd(x.gpu_view(), hd, dpos.ptr<int32_t>(), theta),
                                Catch::Contains("rope dx must be f32"));
            continue;
          }
          // the backward undoes the forward
          Rows x(xv, N, C, lay, 41);
          gpu().rope_fwd(x.gpu_view(), hd, dpos.ptr<int32_t>(), theta);
          gpu().rope_bwd(x.gpu_view(), hd, dpos.ptr<int32_t>(), theta);
          expect_within(x.logical(x.got()), xv, rel_tol(xv, 1e-5, 1e-6), "rope round trip");
        }
  TensorView odd = Rows(randn(6, 1), 1, 6, {0, 0}).gpu_view();
  REQUIRE_THROWS_WITH(gpu().rope_fwd(odd, 4, nullptr, 10000.0f), Catch::Contains("not a multiple of head_dim 4"));
}

TEST_CASE("cuda swiglu and bias: forward and backward (activations f32 or bf16), aliased gradients, deterministic "
          "column sums", "[gpu][ops]") {
  CpuBackend cpu(1);
  for (DType at : {DType::F32, DType::BF16})  // g, u, out and bias_add's y
  for (int64_t N : kRows)
    for (int64_t I : {3, 37, 128, 130})
      for (const Layout& lay : layouts()) {
        INFO("N " << N << " I " << I << " off " << lay.off << " activations " << dtype_name(at));
        auto gv = randn(size_t(N * I), 1, 4.0f);
        gv[0] = 90.0f;
        if (gv.size() > 1) gv[1] = -90.0f;
        gv = as_act(gv, at);
        const auto uv = as_act(randn(size_t(N * I), 2), at), dv = randn(size_t(N * I), 3);
        Rows g(gv, N, I, lay, 51, at), u(uv, N, I, lay, 52, at), out(randn(size_t(N * I), 4), N, I, lay, 53, at);
        gpu().swiglu_fwd(g.gpu_view(), u.gpu_view(), out.gpu_view());
        cpu.swiglu_fwd(g.cpu(), u.cpu(), out.cpu());
        out.round_host();
        expect_within(out.got(), out.host, out.act_tol(rel_tol(out.host, 2e-6, 1e-30)), "swiglu out");

        Rows d(dv, N, I, lay, 54), dg(randn(size_t(N * I), 5), N, I, lay, 55), du(randn(size_t(N * I), 6), N, I, lay, 56);
        gpu().swiglu_bwd(d.gpu_view(), g.gpu_view(), u.gpu_view(), dg.gpu_view(), du.gpu_view());
        cpu.swiglu_bwd(d.cpu(), g.cpu(), u.cpu(), dg.cpu(), du.cpu());
        std::vector<double> tol_dg(dg.host.size(), 0.0);
        for (int64_t n = 0; n < N; ++n)
          for (int64_t j = 0; j < I; ++j) {
            const size_t i = size_t(n * I + j);
            const double sig = 1.0 / (1.0 + std::exp(-double(gv[i])));
            tol_dg[size_t(n * dg.ld + dg.off + j)] = 2e-6 * std::fabs(dv[i] * uv[i] * sig) * (1.0 + std::fabs(gv[i])) + 1e-30;
          }
        const auto dg_got = dg.got();
        expect_within(dg_got, dg.host, tol_dg, "swiglu dg");
        expect_within(du.got(), du.host, rel_tol(du.host, 2e-6, 1e-30), "swiglu du");
        if (at == DType::F32) {
          // dg, du written over g, u (the model reuses the buffers): the same values
          Rows g2(gv, N, I, lay, 51), u2(uv, N, I, lay, 52);
          gpu().swiglu_bwd(d.gpu_view(), g2.gpu_view(), u2.gpu_view(), g2.gpu_view(), u2.gpu_view());
          expect_bits(g2.logical(g2.got()), dg.logical(dg_got), "swiglu dg aliased");
        } else {  // the gradients stay f32; the activations share one dtype
          REQUIRE_THROWS_WITH(gpu().swiglu_bwd(d.gpu_view(), g.gpu_view(), u.gpu_view(), g.gpu_view(), du.gpu_view()),
                              Catch::Contains("swiglu dg must be f32"));
          REQUIRE_THROWS_WITH(gpu().swiglu_fwd(g.gpu_view(), u.gpu_view(), dg.gpu_view()),
                              Catch::Contains("must share one dtype"));
        }

        // bias: y += b exactly (bf16 y: round_bf16(y + b), the same bits as the oracle); db += column sums
        const auto bv = randn(size_t(I), 7), db0 = randn(size_t(I), 8);
        Dev b(bv, DType::F32, {I}), db(db0, DType::F32, {I});
        Rows y(randn(size_t(N * I), 9), N, I, lay, 57, at);
        gpu().bias_add(y.gpu_view(), b.view);
        cpu.bias_add(y.cpu(), TensorView::of(bv.data(), {I}));
        y.round_host();
        expect_bits(y.got(), y.host, "bias_add");
        if (at != DType::F32) continue;  // bias_bwd is all fp32: once
        std::vector<float> db_cpu = db0;
        gpu().bias_bwd(d.gpu_view(), db.view);
        cpu.bias_bwd(d.cpu(), TensorView::of(db_cpu.data(), {I}));
        std::vector<double> tol(size_t(I), 0.0);
        for (int64_t j = 0; j < I; ++j) {
          double s = std::fabs(db0[size_t(j)]);
          for (int64_t n = 0; n < N; ++n) s += std::fabs(dv[size_t(n * I + j)]);
          tol[size_t(j)] = double(N + 2) * std::ldexp(1.0, -23) * s;
        }
        const auto db_got = db.get<float>(size_t(I));
        expect_within(db_got, db_cpu, tol, "bias_bwd");
        Dev db2(db0, DType::F32, {I});
        gpu().bias_bwd(d.gpu_view(), db2.view);
        expect_bits(db2.get<float>(size_t(I)), db_got, "bias_bwd twice");
      }
}

TEST_CASE("cuda column sums: many rows (several row blocks), the same bits twice", "[gpu][ops]") {
  CpuBackend cpu(1);
  const int64_t N = 10007, C = 301;  // 79 rows a block, 127 blocks; C not a multiple of 4 or 32
  const auto dv = randn(size_t(N * C), 1), db0 = randn(size_t(C), 2);
  Dev d(dv, DType::F32, {N, C}), db(db0, DType::F32, {C}), db2(db0, DType::F32, {C});
  std::vector<float> db_cpu = db0;
  gpu().bias_bwd(d.view, db.view);
  gpu().bias_bwd(d.view, db2.view);
  cpu.bias_bwd(TensorView::of(dv.data(), {N, C}), TensorView::of(db_cpu.data(), {C}));
  std::vector<double> exact(size_t(C), 0.0), tol(size_t(C), 0.0);
  for (int64_t j = 0; j < C; ++j) {
    exact[size_t(j)] = db0[size_t(j)];
    double s = std::fabs(db0[size_t(j)]);
    for (int64_t n = 0; n < N; ++n) {
      exact[size_t(j)] += dv[size_t(n * C + j)];
      s += std::fabs(dv[size_t(n * C + j)]);
    }
    tol[size_t(j)] = double(N + 2) * std::ldexp(1.0, -23) * s;
  }
  const auto got = db.get<float>(size_t(C));
  expect_bits(db2.get<float>(size_t(C)), got, "bias_bwd twice");
  expect_within(got, db_cpu, tol, "bias_bwd vs cpu");
  // against the exact sum the GPU is within one fp32 rounding plus double rounding
  for (int64_t j = 0; j < C; ++j) REQUIRE(std::fabs(got[size_t(j)] - exact[size_t(j)]) <= 1e-6 * std::fabs(exact[size_t(j)]) + 1e-9);
}

TEST_CASE("cuda axpby and sumsq: axpby bit for bit, sumsq deterministic and alignment-independent, sumsq_many", "[gpu][ops]") {
  CpuBackend cpu(1);
  for (int64_t n : {1, 7, 33, 129, 1027, 100003})
    for (int64_t off : {0, 1}) {
      INFO("n " << n << " offset " << off);
      const auto x = randn(size_t(n + off), 1), y0 = randn(size_t(n + off), 2);
      for (auto [a, b] : {std::pair<float, float>{1.0f, 1.0f}, {0.3f, -1.7f}, {-2.5f, 0.0f}}) {
        Dev dx(x, DType::F32, {n + off}), dy(y0, DType::F32, {n + off});
        gpu().axpby(n, a, dx.ptr<float>() + off, b, dy.ptr<float>() + off);
        auto y = y0;
        cpu.axpby(n, a, x.data() + off, b, y.data() + off);
        expect_bits(dy.get<float>(size_t(n + off)), y, "axpby");
      }
      Dev dx(x, DType::F32, {n + off});
      const double got = gpu().sumsq(dx.ptr<float>() + off, n), want = cpu.sumsq(x.data() + off, n);
      REQUIRE(std::fabs(got - want) <= 1e-12 * want);
      REQUIRE(gpu().sumsq(dx.ptr<float>() + off, n) == got);
      // the same values at the other alignment: the same bits
      std::vector<float> shifted(size_t(n + 1 - off));
      std::copy(x.begin() + off, x.begin() + off + n, shifted.begin() + (1 - off));
      Dev ds(shifted, DType::F32, {n + 1 - off});
      REQUIRE(gpu().sumsq(ds.ptr<float>() + (1 - off), n) == got);
    }
  CHECK(gpu().sumsq(nullptr, 0) == 0.0);
  {  // sumsq_many (the ZeRO step's gradient norm): every sum with sumsq's own bits, empty ones 0, one wait
    const auto x = randn(200000, 4);
    Dev dx(x, DType::F32, {200000});
    const float* base = dx.ptr<float>();
    const std::vector<const float*> xs = {base, base + 1, base + 7, nullptr, base + 100003, base + 5};
    const std::vector<int64_t> ns = {1, 33, 100003, 0, 99997, 129};
    std::vector<double> many(xs.size(), -1.0);
    gpu().sumsq_many(xs.data(), ns.data(), int64_t(xs.size()), many.data());
    for (size_t k = 0; k < xs.size(); ++k) {
      INFO("vector " << k);
      CHECK(many[k] == gpu().sumsq(xs[k], ns[k]));
    }
    CHECK(many[3] == 0.0);
  }
  const int64_t big = (int64_t(3) << 20) + 5;
  const auto x = randn(size_t(big), 3);
  Dev dx(x, DType::F32, {big});
  const double want = cpu.sumsq(x.data(), big);
  CHECK(std::fabs(gpu().sumsq(dx.ptr<float>(), big) - want) <= 1e-12 * want);
}

TEST_CASE("cuda adamw: bit for bit with the CPU over steps, decay segments, more segments than one launch",
          "[gpu][ops]") {
  CpuBackend cpu(1);
  const AdamWParams hp{0.9, 0.99, 1e-8, 0.1};
  for (int many = 0; many < 2; ++many) {
    std::vector<DecaySegment> seg;
    int64_t n = 0;
    if (!many) {
      seg = {{0, 300, true}, {300, 0, false}, {300, 211, false}, {511, 520, true}};
      n = 1031;
    } else {  // 500 segments of 0..20 elements, alternating decay: three launches
      RngStream rng(9, RngPurpose::Test, 0, 0);
      for (int s = 0; s < 500; ++s) {
        const int64_t c = int64_t(rng.uniform(uint64_t(s)) * 21.0f);
        seg.push_back({n, c, s % 2 == 0});
        n += c;
      }
    }
    INFO("n " << n << " segments " << seg.size());
    auto p = randn(size_t(n), 1);
    std::vector<float> m(size_t(n), 0.0f), v(size_t(n), 0.0f);
    Dev dp(p, DType::F32, {n}), dm(m, DType::F32, {n}), dv(v, DType::F32, {n});
    for (int64_t t = 1; t <= 5; ++t) {
      auto g = randn(size_t(n), 10 + uint32_t(t), 0.05f);
      if (n > 3) g[3] = 0.0f;
      const float scale = t == 3 ? 0.5f : 1.0f;
      const double lr = 1e-3 * double(t);
      Dev dg(g, DType::F32, {n});
      gpu().adamw(dp.ptr<float>(), dg.ptr<float>(), dm.ptr<float>(), dv.ptr<float>(), n, seg, lr, t, hp, scale);
      cpu.adamw(p.data(), g.data(), m.data(), v.data(), n, seg, lr, t, hp, scale);
      expect_bits(dp.get<float>(size_t(n)), p, "adamw p");
      expect_bits(dm.get<float>(size_t(n)), m, "adamw m");
      expect_bits(dv.get<float>(size_t(n)), v, "adamw v");
    }
  }
  std::vector<float> z(19, 0.0f);
  Dev dz(z, DType::F32, {19});
  REQUIRE_THROWS_WITH(gpu().adamw(dz.ptr<float>(), dz.ptr<float>(), dz.ptr<float>(), dz.ptr<float>(), 19,
                                  {{0, 5, true}}, 0.1, 1, hp, 1.0f),
                      Catch::Contains("cover 5 of 19"));
}

TEST_CASE("cuda cast: every f32 bf16 f16 pair bit for bit with core dtype, NaN payloads included", "[gpu][ops]") {
  CpuBackend cpu(1);
  // fp32 inputs: random bit patterns, every bf16 and f16 rounding boundary, specials
  std::vector<uint32_t> f32in;
  RngStream rng(4, RngPurpose::Test, 0, 0);
  for (uint64_t i = 0; i < 200000; ++i) f32in.push_back(rng.u32(i));
  for (uint32_t h = 0; h < 65536; h += 3)
    for (uint32_t low : {0x7FFFu, 0x8000u, 0x8001u}) f32in.push_back((h << 16) | low);
  for (uint32_t e = 100; e < 145; ++e)
    for (uint32_t low : {0x0FFFu, 0x1000u, 0x1001u, 0x3000u}) f32in.push_back((e << 23) | (5u << 13) | low);
  for (uint32_t s : {0x0u, 0x7F800000u, 0xFF800000u, 0x7FC00000u, 0x7F800001u, 0xFFBFFFFFu, 0x477FF000u, 0x33000000u,
                     0x00000001u, 0x80000000u})
    f32in.push_back(s);
  std::vector<uint16_t> h16(65536);
  for (uint32_t h = 0; h < 65536; ++h) h16[h] = uint16_t(h);

  for (DType from : {DType::F32, DType::BF16, DType::F16})
    for (DType to : {DType::F32, DType::BF16, DType::F16}) {
      INFO(dtype_name(from) << " -> " << dtype_name(to));
      const int64_t n = from == DType::F32 ? int64_t(f32in.size()) : 65536;
      const void* src = from == DType::F32 ? static_cast<const void*>(f32in.data()) : h16.data();
      const size_t sbytes = size_t(n) * dtype_size(from), dbytes = size_t(n) * dtype_size(to);
      Buffer ds(sbytes, Device::CUDA), dd(dbytes, Device::CUDA);
      gpu().upload(src, ds.data(), sbytes);
      gpu().cast(TensorView(ds.data(), from, {n}, Device::CUDA), TensorView(dd.data(), to, {n}, Device::CUDA));
      std::vector<uint8_t> want(dbytes), got(dbytes);
      cpu.cast(TensorView(const_cast<void*>(src), from, {n}), TensorView(want.data(), to, {n}));
      gpu().download(dd.data(), got.data(), dbytes);
      size_t first_bad = dbytes;
      for (size_t i = 0; i < dbytes && first_bad == dbytes; ++i)
        if (got[i] != want[i]) first_bad = i;
      INFO("first differing byte " << first_bad << " (element " << first_bad / dtype_size(to) << ")");
      REQUIRE(first_bad == dbytes);
    }
}

// h and W f32, or bf16 (the head under bf16 activations): the CPU oracle then runs its bf16 op on the same bf16
// values (its dz rounded to bf16 too), and the gradients may differ where the two fp32 dz round to neighbouring bf16
// values, each such term by 2^-8 of it: hence the looser bf16 bound.
TEST_CASE("cuda logsoftmax gather: forward and backward vs CPU, chunks not dividing V, += gradients, determinism",
          "[gpu][ops]") {
  CpuBackend cpu(1);
  for (DType ot : {DType::F32, DType::BF16})
  for (int64_t R : {1, 7, 33})
    for (int64_t H : {12, 64})
      for (int64_t V : {37, 129})
        for (int64_t chunk : {int64_t(8), int64_t(10), V, int64_t(1000)}) {
          const Layout lay = layouts()[size_t((R + H + chunk) % 3)];
          INFO(dtype_name(ot) << " R " << R << " H " << H << " V " << V << " chunk " << chunk << " off " << lay.off);
          std::vector<int32_t> t(static_cast<size_t>(R));
          for (int64_t r = 0; r < R; ++r) t[size_t(r)] = int32_t((r * 17 + (r == 1 ? V - 1 : 8)) % V);
          t[0] = 0;
          Dev dt(t, DType::F32, {R});
          const auto hv = randn(size_t(R * H), 1), Wv = randn(size_t(V * H), 2);
          Rows h(hv, R, H, lay, 61, ot), W(Wv, V, H, lay, 62, ot);
          std::vector<uint16_t> h16 = to_bf16(h.host), W16 = to_bf16(W.host);  // the CPU's bf16 operands
          auto oracle_view = [&](Rows& x, std::vector<uint16_t>& b16) {
            if (ot == DType::F32) return x.cpu();
            TensorView v(b16.data() + x.off, DType::BF16, {x.N, x.C});
            v.strides[0] = x.ld;
            return v;
          };
          const TensorView hc = oracle_view(h, h16), Wc = oracle_view(W, W16);
          Dev logp(std::vector<float>(size_t(R), 0.0f), DType::F32, {R}), lse(std::vector<float>(size_t(R), 0.0f),
                                                                              DType::F32, {R});
          std::vector<float> logp_cpu(static_cast<size_t>(R)), lse_cpu(static_cast<size_t>(R));
          gpu().logsoftmax_gather_fwd(h.gpu_view(), W.gpu_view(), dt.ptr<int32_t>(), chunk, logp.ptr<float>(),
                                      lse.ptr<float>());
          cpu.logsoftmax_gather_fwd(hc, Wc, t.data(), chunk, logp_cpu.data(), lse_cpu.data());
          const auto lg = logp.get<float>(size_t(R)), lsg = lse.get<float>(size_t(R));
          expect_close(lg, logp_cpu, 2e-5, H);
          expect_close(lsg, lse_cpu, 2e-5, H);
          for (float v : lg) REQUIRE(v <= 0.0f);
          gpu().logsoftmax_gather_fwd(h.gpu_view(), W.gpu_view(), dt.ptr<int32_t>(), chunk, logp.ptr<float>(),
                                      lse.ptr<float>());
          expect_bits(logp.get<float>(size_t(R)), lg, "logp twice");
          expect_bits(lse.get<float>(size_t(R)), lsg, "lse twice");

          // backward from the CPU's lse, into non-zero dh and dW
          const auto dlogp = randn(size_t(R), 3), dh0 = randn(size_t(R * H), 4), dW0 = randn(size_t(V * H), 5);
          Rows dh(dh0, R, H, lay, 63), dW(dW0, V, H, lay, 64);
          Dev dl(dlogp, DType::F32, {R}), lse_in(lse_cpu, DType::F32, {R});
          gpu().logsoftmax_gather_bwd(h.gpu_view(), W.gpu_view(), dt.ptr<int32_t>(), chunk, lse_in.ptr<float>(),
                                      dl.ptr<float>(), dh.gpu_view(), dW.gpu_view());
          cpu.logsoftmax_gather_bwd(hc, Wc, t.data(), chunk, lse_cpu.data(), dlogp.data(), dh.cpu(), dW.cpu());
          const auto dh_got = dh.got(), dW_got = dW.got();
          const double grad_rel = ot == DType::F32 ? 1e-4 : 1e-3;
          expect_close(dh_got, dh.host, grad_rel, V);
          expect_close(dW_got, dW.host, grad_rel, R);
          Rows dh2(dh0, R, H, lay, 63), dW2(dW0, V, H, lay, 64);
          gpu().logsoftmax_gather_bwd(h.gpu_view(), W.gpu_view(), dt.ptr<int32_t>(), chunk, lse_in.ptr<float>(),
                                      dl.ptr<float>(), dh2.gpu_view(), dW2.gpu_view());
          expect_bits(dh2.got(), dh_got, "dh twice");
          expect_bits(dW2.got(), dW_got, "dW twice");

          const size_t ws = gpu().logsoftmax_gather_workspace_bytes(R, V, chunk, ot);
          REQUIRE(gpu().workspace_capacity_bytes() >= ws);
          if (chunk < V && R > 1) REQUIRE(ws < size_t(R * V) * sizeof(float));  // never [R, V]
        }
}

TEST_CASE("cuda logsoftmax gather: stable for huge logits, bad targets are fatal", "[gpu][ops]") {
  CpuBackend cpu(1);
  const int64_t R = 3, H = 12, V = 37;
  const auto hv = randn(R * H, 1, 40.0f), Wv = randn(V * H, 2, 10.0f);  // logits in the thousands
  const std::vector<int32_t> t = {1, 2, 30};
  Dev h(hv, DType::F32, {R, H}), W(Wv, DType::F32, {V, H}), dt(t, DType::F32, {R});
  Dev logp(std::vector<float>(R, 0.0f), DType::F32, {R}), lse(std::vector<float>(R, 0.0f), DType::F32, {R});
  std::vector<float> logp_cpu(R), lse_cpu(R);
  gpu().logsoftmax_gather_fwd(h.view, W.view, dt.ptr<int32_t>(), 8, logp.ptr<float>(), lse.ptr<float>());
  cpu.logsoftmax_gather_fwd(TensorView::of(hv.data(), {R, H}), TensorView::of(Wv.data(), {V, H}), t.data(), 8,
                            logp_cpu.data(), lse_cpu.data());
  const auto got = logp.get<float>(R);
  for (int64_t r = 0; r < R; ++r) {
    REQUIRE(std::isfinite(got[size_t(r)]));
    REQUIRE(got[size_t(r)] <= 0.0f);
    REQUIRE(got[size_t(r)] == Approx(logp_cpu[size_t(r)]).epsilon(1e-5).margin(1e-2));
  }
  const std::vector<int32_t> bad = {1, 37, 2};
  Dev dbad(bad, DType::F32, {R});
  gpu().logsoftmax_gather_fwd(h.view, W.view, dbad.ptr<int32_t>(), 8, logp.ptr<float>(), lse.ptr<float>());
  REQUIRE_THROWS_WITH(gpu().synchronize(), Catch::Contains("target 37 of row 1 is outside the vocabulary [0, 37)"));
  gpu().synchronize();
}

TEST_CASE("cuda allocator: stream-ordered pool keeps memory, no growth in steady state, second backend", "[gpu][alloc]") {
  CudaBackend::PoolStats s0 = gpu().pool_stats();
  CHECK(s0.release_threshold == std::numeric_limits<uint64_t>::max());
  const std::vector<size_t> sizes = {size_t(1) << 20, size_t(3) << 20, 12345, size_t(1) << 24, 64};
  auto step = [&] {  // what a training step does: buffers made, used by kernels, dropped
    std::vector<Buffer> bufs;
    for (size_t b : sizes) {
      bufs.emplace_back(b, Device::CUDA, MemCategory::Activations);
      gpu().zero(TensorView(bufs.back().data(), DType::F32, {int64_t(b / 4)}, Device::CUDA));
    }
  };
  step();
  gpu().synchronize();
  const CudaBackend::PoolStats s1 = gpu().pool_stats();
  for (int i = 0; i < 5; ++i) step();
  gpu().synchronize();
  const CudaBackend::PoolStats s2 = gpu().pool_stats();
  CHECK(s2.reserved_bytes == s1.reserved_bytes);  // the pool served everything again: no cudaMalloc
  CHECK(s2.used_bytes <= s1.used_bytes);
  // a Buffer is usable by the backend's ops as soon as it exists
  Buffer b(4096, Device::CUDA, MemCategory::Other);
  gpu().zero(TensorView(b.data(), DType::F32, {1024}, Device::CUDA));
  std::vector<float> h(1024, 1.0f);
  gpu().download(b.data(), h.data(), 4096);
  for (float v : h) REQUIRE(v == 0.0f);
  // a second backend takes the allocator over while it lives; afterwards allocations work for the first again
  {
    CudaBackend other(gpu().context().device(), 1u << 20);
    Buffer ob(1 << 16, Device::CUDA);
    other.zero(TensorView(ob.data(), DType::F32, {1 << 14}, Device::CUDA));
    other.synchronize();
  }
  Buffer after(1 << 16, Device::CUDA);
  gpu().zero(TensorView(after.data(), DType::F32, {1 << 14}, Device::CUDA));
  std::vector<float> ha(1 << 14, 1.0f);
  gpu().download(after.data(), ha.data(), ha.size() * 4);
  for (float v : ha) REQUIRE(v == 0.0f);
}
