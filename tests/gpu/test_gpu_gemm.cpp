// CudaBackend::gemm (cuBLASLt) against CpuBackend; NcclCommunicator at world size 1, and (tag [.nccl-mpi],
// run by the gpu_nccl_np2 ctest under mpirun when the node has 2 devices) against MpiCommunicator.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <tuple>
#include <vector>

#include "cgrpo/backend/cpu_backend.h"
#include "cgrpo/backend/cuda_backend.h"
#include "cgrpo/comm/mpi_communicator.h"
#include "cgrpo/comm/nccl_communicator.h"
#include "cgrpo/core/philox.h"
#include "gpu_test_util.h"

using namespace cgrpo;
using namespace gpu_test;

TEST_CASE("cuda gemm fp32: four transpose combinations, odd sizes, alpha and beta", "[gpu][gemm]") {
  CpuBackend cpu(1);
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {7, 5, 3}, {33, 17, 65}, {64, 128, 96},
                         {129, 257, 63}})
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        INFO("m " << m << " n " << n << " k " << k << " ta " << ta << " tb " << tb);
        auto a = randn(m * k, 1), b = randn(k * n, 2), c = randn(m * n, 3);
        Dev da(a, DType::F32, ta ? std::initializer_list<int64_t>{k, m} : std::initializer_list<int64_t>{m, k});
        Dev db(b, DType::F32, tb ? std::initializer_list<int64_t>{n, k} : std::initializer_list<int64_t>{k, n});
        Dev dc(c, DType::F32, {m, n});
        const float alpha = 0.75f, beta = -1.5f;
        gpu().gemm(da.view, ta, db.view, tb, dc.view, alpha, beta);
        TensorView A = ta ? TensorView::of(a.data(), {k, m}) : TensorView::of(a.data(), {m, k});
        TensorView B = tb ? TensorView::of(b.data(), {n, k}) : TensorView::of(b.data(), {k, n});
        cpu.gemm(A, ta, B, tb, TensorView::of(c.data(), {m, n}), alpha, beta);
        expect_close(dc.get<float>(m * n), c, 1e-4, k);
      }
}

TEST_CASE("cuda gemm fp32: strided batched, broadcast operand, padded leading dimensions", "[gpu][gemm]") {
  CpuBackend cpu(1);
  const int64_t batch = 4, m = 5, n = 6, k = 7, lda = 9, ldc = 11;
  for (int bcast = 0; bcast < 2; ++bcast) {
    auto a = randn(batch * m * lda, 4), b = randn((bcast ? 1 : batch) * n * k, 5), c = randn(batch * m * ldc, 6);
    Dev da(a, DType::F32, {batch, m, k}, lda);
    Dev db(b, DType::F32, {bcast ? 1 : batch, n, k});  // used transposed
    Dev dc(c, DType::F32, {batch, m, n}, ldc);
    gpu().gemm(da.view, false, db.view, true, dc.view, 1.25f, 0.5f);
    TensorView A(a.data(), DType::F32, {batch, m, k}), B(b.data(), DType::F32, {bcast ? 1 : batch, n, k}),
        C(c.data(), DType::F32, {batch, m, n});
    A.strides = da.view.strides;
    C.strides = dc.view.strides;
    cpu.gemm(A, false, B, true, C, 1.25f, 0.5f);
    expect_close(dc.get<float>(c.size()), c, 1e-4, k);
  }
}

TEST_CASE("cuda gemm fp32: column-block views (unaligned pointers) and k = 0", "[gpu][gemm]") {
  CpuBackend cpu(1);
  // A is columns [3, 3+k) of a [m, 20] matrix: a 12-byte offset, row stride 20
  const int64_t m = 9, n = 10, k = 13, w = 20;
  auto a = randn(m * w, 7), b = randn(k * n, 8), c = randn(m * n, 9);
  Dev da(a, DType::F32, {m, w});
  TensorView Ablk = da.view;
  Ablk.data = static_cast<float*>(da.buf.data()) + 3;
  Ablk.shape[1] = k;
  Dev db(b, DType::F32, {k, n}), dc(c, DType::F32, {m, n});
  gpu().gemm(Ablk, false, db.view, false, dc.view, 1.0f, 1.0f);
  cpu.gemm(rows_view(a.data() + 3, m, k, w), false, TensorView::of(b.data(), {k, n}), false,
           TensorView::of(c.data(), {m, n}), 1.0f, 1.0f);
  expect_close(dc.get<float>(m * n), c, 1e-4, k);

  // k = 0: C = beta * C, and beta = 0 clears NaN
  std::vector<float> z(4, 0.0f), cc = {1.0f, 2.0f, NAN, 4.0f};
  Dev dz(z, DType::F32, {2, 0}), dz2(z, DType::F32, {0, 2}), dcc(cc, DType::F32, {2, 2});
  gpu().gemm(dz.view, false, dz2.view, false, dcc.view, 1.0f, 0.0f);
  for (float v : dcc.get<float>(4)) CHECK(v == 0.0f);
}

TEST_CASE("cuda gemm bf16 inputs: fp32 accumulate into f32 (alpha, beta) and bf16 (beta = 0) outputs",
          "[gpu][gemm]") {
  CpuBackend cpu(1);
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{7, 5, 3}, {33, 17, 65}, {64, 128, 96}, {1, 9, 300}})
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        INFO("m " << m << " n " << n << " k " << k << " ta " << ta << " tb " << tb);
        // inputs rounded to bf16 on the host: their products are exact in fp32, so the CPU oracle on the rounded
        // values differs from cuBLASLt only by fp32 summation order
        auto a = round_bf16(randn(m * k, 11)), b = round_bf16(randn(k * n, 12)), c = randn(m * n, 13);
        Dev da(to_bf16(a), DType::BF16, ta ? std::initializer_list<int64_t>{k, m} : std::initializer_list<int64_t>{m, k});
        Dev db(to_bf16(b), DType::BF16, tb ? std::initializer_list<int64_t>{n, k} : std::initializer_list<int64_t>{k, n});
        Dev dc(c, DType::F32, {m, n});
        // bf16 C starts as NaN: beta = 0 writes it without reading it
        Dev dcb(std::vector<uint16_t>(size_t(m * n), uint16_t(0x7FC0)), DType::BF16, {m, n});
        gpu().gemm(da.view, ta, db.view, tb, dc.view, 0.5f, 1.0f);
        gpu().gemm(da.view, ta, db.view, tb, dcb.view, 0.5f, 0.0f);
        TensorView A = ta ? TensorView::of(a.data(), {k, m}) : TensorView::of(a.data(), {m, k});
        TensorView B = tb ? TensorView::of(b.data(), {n, k}) : TensorView::of(b.data(), {k, n});
        std::vector<float> cb(size_t(m * n), 0.0f);
        cpu.gemm(A, ta, B, tb, TensorView::of(c.data(), {m, n}), 0.5f, 1.0f);
        cpu.gemm(A, ta, B, tb, TensorView::of(cb.data(), {m, n}), 0.5f, 0.0f);
        expect_close(dc.get<float>(m * n), c, 1e-4, k);
        // bf16 output = round_bf16(the f32 gemm): the f32 bound rel (|want| + sqrt(k)) plus one bf16 ulp
        const std::vector<float> want = round_bf16(cb), got = from_bf16(dcb.get<uint16_t>(m * n));
        std::vector<double> tol(want.size());
        for (size_t i = 0; i < want.size(); ++i)
          tol[i] = 1e-4 * (std::fabs(double(cb[i])) + std::sqrt(double(k))) + bf16_ulp(want[i]);
        expect_within(got, want, tol, "bf16 C");
      }
}

TEST_CASE("cuda gemm bf16 C: batched with a padded leading dimension, accumulating into it is fatal", "[gpu][gemm]") {
  CpuBackend cpu(1);
  const int64_t batch = 3, m = 5, n = 12, k = 40, ldc = 20;  // C rows 40 bytes apart: 8-byte aligned only
  const auto a = round_bf16(randn(size_t(batch * m * k), 31)), b = round_bf16(randn(size_t(k * n), 32));
  Dev da(to_bf16(a), DType::BF16, {batch, m, k}), db(to_bf16(b), DType::BF16, {1, k, n});  // B broadcast
  Dev dc(std::vector<uint16_t>(size_t(batch * m * ldc), uint16_t(0x4040)), DType::BF16, {batch, m, n}, ldc);
  gpu().gemm(da.view, false, db.view, false, dc.view, 1.0f, 0.0f);
  std::vector<float> want(size_t(batch * m * n), 0.0f);
  cpu.gemm(TensorView::of(a.data(), {batch, m, k}), false, TensorView::of(b.data(), {1, k, n}), false,
           TensorView::of(want.data(), {batch, m, n}));
  const std::vector<float> got = from_bf16(dc.get<uint16_t>(size_t(batch * m * ldc)));
  for (int64_t i = 0; i < batch * m; ++i)
    for (int64_t j = 0; j < ldc; ++j) {
      const float g = got[size_t(i * ldc + j)];
      if (j >= n) {  // padding untouched (0x4040 = 3.0)
        REQUIRE(g == 3.0f);
        continue;
      }
      const float w = want[size_t(i * n + j)], r = bf16_to_f32(f32_to_bf16(w));
      INFO("row " << i << " col " << j << " got " << g << " want round(" << w << ") = " << r);
      REQUIRE(std::fabs(double(g) - r) <= 1e-4 * (std::fabs(double(w)) + std::sqrt(double(k))) + bf16_ulp(r));
    }
  REQUIRE_THROWS_WITH(gpu().gemm(da.view, false, db.view, false, dc.view, 1.0f, 1.0f),
                      Catch::Contains("never accumulated"));
  Dev fa(a, DType::F32, {batch, m, k}), fb(b, DType::F32, {1, k, n});  // f32 x f32 -> bf16 is not a form
  REQUIRE_THROWS_WITH(gpu().gemm(fa.view, false, fb.view, false, dc.view, 1.0f, 0.0f), Catch::Contains("supports"));
}

TEST_CASE("cuda gemm: plans are cached per shape, wrong devices and dtypes are fatal", "[gpu][gemm]") {
  auto a = randn(6 * 4, 1), b = randn(4 * 3, 2), c = randn(6 * 3, 3);
  Dev da(a, DType::F32, {6, 4}), db(b, DType::F32, {4, 3}), dc(c, DType::F32, {6, 3});
  gpu().gemm(da.view, false, db.view, false, dc.view);
  const size_t plans = gpu().gemm_plans_cached();
  for (int i = 0; i < 3; ++i) gpu().gemm(da.view, false, db.view, false, dc.view);
  CHECK(gpu().gemm_plans_cached() == plans);
  REQUIRE_THROWS_WITH(gpu().gemm(TensorView::of(a.data(), {6, 4}), false, db.view, false, dc.view),
                      Catch::Contains("device memory"));
  TensorView bad = dc.view;
  bad.dtype = DType::F16;
  REQUIRE_THROWS_WITH(gpu().gemm(da.view, false, db.view, false, bad), Catch::Contains("supports"));
  auto be = make_backend("cuda", 0);
  CHECK(std::string(be->name()) == "cuda");
}

TEST_CASE("nccl communicator at world size 1: device copies, identity reductions, byte accounting", "[gpu][nccl]") {
  gpu_test::ensure_mpi();  // finalised at exit, after the communicator below
  NcclCommunicator comm(MPI_COMM_WORLD);
  REQUIRE(comm.world_size() == 1);
  comm.set_compute_stream(gpu().context().stream());
  auto x = randn(37, 21);
  std::vector<float> zeros(37, 0.0f);
  Dev dx(x, DType::F32, {37}), dy(zeros, DType::F32, {37});
  comm.all_gather(dx.view, dy.view);
  CHECK(dy.get<float>(37) == x);
  comm.all_reduce(dy.view, ReduceOp::Avg);
  comm.broadcast(dy.view, 0);
  comm.barrier();
  CHECK(dy.get<float>(37) == x);
  Dev dz(zeros, DType::F32, {37});
  comm.reduce_scatter(dx.view, dz.view);
  CHECK(dz.get<float>(37) == x);
  // bf16 reductions at world size 1: the identity (a device copy for reduce_scatter)
  const std::vector<uint16_t> h = to_bf16(x), hz(37, 0);
  Dev dh(h, DType::BF16, {37}), dhz(hz, DType::BF16, {37});
  comm.all_reduce(dh.view, ReduceOp::Sum);
  comm.reduce_scatter(dh.view, dhz.view, ReduceOp::Avg);
  CHECK(dh.get<uint16_t>(37) == h);
  CHECK(dhz.get<uint16_t>(37) == h);
  CHECK(comm.stats().bytes_sent() == 0);
}

TEST_CASE("nccl communicator under mpirun: collectives match MpiCommunicator, even and uneven N", "[.nccl-mpi]") {
  gpu_test::ensure_mpi();
  NcclCommunicator nccl(MPI_COMM_WORLD);
  MpiCommunicator mpi(MPI_COMM_WORLD);
  const int W = nccl.world_size(), r = nccl.rank();
  REQUIRE(nccl.cuda_device() == gpu().context().device());
  nccl.set_compute_stream(gpu().context().stream());
  for (int64_t n : {int64_t(40) * W, int64_t(37), int64_t(1)}) {
    INFO("N " << n << " W " << W);
    const ShardRange mine = shard_range(n, W, r);
    // all_gather
    auto part = randn(std::max<int64_t>(mine.count, 1), 100 + r);
    part.resize(mine.count);
    std::vector<float> full(n, 0.0f), want(n, 0.0f);
    Dev dpart(part.empty() ? std::vector<float>{0.0f} : part, DType::F32, {mine.count}), dfull(full, DType::F32, {n});
    nccl.all_gather(dpart.view, dfull.view);
    mpi.all_gather(TensorView::of(part.data(), {mine.count}), TensorView::of(want.data(), {n}));
    CHECK(dfull.get<float>(n) == want);
    // reduce_scatter, each op
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max}) {
      auto src = randn(n, 200 + r);
      std::vector<float> out(std::max<int64_t>(mine.count, 1), 0.0f), ref(std::max<int64_t>(mine.count, 1), 0.0f);
      Dev dsrc(src, DType::F32, {n}), dout(out, DType::F32, {mine.count});
      nccl.reduce_scatter(dsrc.view, dout.view, op);
      mpi.reduce_scatter(TensorView::of(src.data(), {n}), TensorView::of(ref.data(), {mine.count}), op);
      ref.resize(mine.count);
      expect_close(dout.get<float>(mine.count), ref, 1e-6, W);
    }
    // all_reduce and broadcast
    auto buf = randn(n, 300 + r);
    std::vector<float> ref = buf;
    Dev dbuf(buf, DType::F32, {n});
    nccl.all_reduce(dbuf.view, ReduceOp::Sum);
    mpi.all_reduce(TensorView::of(ref.data(), {n}), ReduceOp::Sum);
    expect_close(dbuf.get<float>(n), ref, 1e-6, W);
    // bf16 reductions on inputs whose partial sums are all exact in bf16 (|k| <= 15 times a power of two): NCCL's
    // in-ring rounding then changes nothing and Sum / Max equal the host rule bit for bit; Avg within one bf16 ulp
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max}) {
      std::vector<uint16_t> src(n), out(std::max<int64_t>(mine.count, 1), 0), ref(std::max<int64_t>(mine.count, 1), 0);
      for (int64_t i = 0; i < n; ++i) src[i] = f32_to_bf16(std::ldexp(float((r * 7 + i * 3) % 31 - 15), int(i % 9) - 4));
      std::vector<uint16_t> all = src, all_ref = src;
      Dev dsrc(src, DType::BF16, {n}), dout(out, DType::BF16, {mine.count}), dall(all, DType::BF16, {n});
      nccl.reduce_scatter(dsrc.view, dout.view, op);
      nccl.all_reduce(dall.view, op);
      mpi.reduce_scatter(TensorView(src.data(), DType::BF16, {n}), TensorView(ref.data(), DType::BF16, {mine.count}), op);
      mpi.all_reduce(TensorView(all_ref.data(), DType::BF16, {n}), op);
      ref.resize(mine.count);
      std::vector<uint16_t> got = dout.get<uint16_t>(mine.count), got_all = dall.get<uint16_t>(n);
      if (op != ReduceOp::Avg) {
        CHECK(got == ref);
        CHECK(got_all == all_ref);
      } else {
        auto widen = [](const std::vector<uint16_t>& v) {
          std::vector<float> f(v.size());
          for (size_t i = 0; i < v.size(); ++i) f[i] = bf16_to_f32(v[i]);
          return f;
        };
        expect_close(widen(got), widen(ref), std::ldexp(1.0, -8), 0);
        expect_close(widen(got_all), widen(all_ref), std::ldexp(1.0, -8), 0);
      }
    }
    auto bc = randn(n, 400 + r);
    std::vector<uint16_t> bh = to_bf16(bc), bref = bh;
    Dev dbc(bh, DType::BF16, {n});
    nccl.broadcast(dbc.view, W - 1);
    mpi.broadcast(TensorView(bref.data(), DType::BF16, {n}), W - 1);
    CHECK(dbc.get<uint16_t>(n) == bref);
    nccl.barrier();
  }
  // identical byte accounting (barrier moves no bytes in either)
  for (int o = 0; o < static_cast<int>(CommOp::kCount); ++o) {
    INFO(comm_op_name(static_cast<CommOp>(o)));
    CHECK(nccl.stats().op[o].bytes_sent == mpi.stats().op[o].bytes_sent);
    CHECK(nccl.stats().op[o].bytes_recv == mpi.stats().op[o].bytes_recv);
  }
}

TEST_CASE("cuda gemm tf32: tensor-core math within TF32 rounding, separate cached plans, a known peak", "[gpu][gemm]") {
  CpuBackend cpu(1);
  const int64_t m = 129, n = 257, k = 300;
  const auto a = randn(size_t(m * k), 41), b = randn(size_t(k * n), 42);
  std::vector<float> want(size_t(m * n));
  cpu.gemm(TensorView::of(a.data(), {m, k}), false, TensorView::of(b.data(), {k, n}), false,
           TensorView::of(want.data(), {m, n}));
  Dev A(a, DType::F32, {m, k}), B(b, DType::F32, {k, n}), C(std::vector<float>(size_t(m * n)), DType::F32, {m, n});
  gpu().gemm(A.view, false, B.view, false, C.view);
  const std::vector<float> fp32 = C.get<float>(size_t(m * n));
  const double fp32_peak = gpu().peak_flops();
  const size_t plans = gpu().gemm_plans_cached();
  gpu().allow_tf32(true);
  gpu().gemm(A.view, false, B.view, false, C.view);
  const double tf32_peak = gpu().peak_flops();
  gpu().allow_tf32(false);
  CHECK(gpu().gemm_plans_cached() >= plans + 1);
  // TF32 keeps 10 mantissa bits: each product is off by up to ~2^-10 relative
  const std::vector<float> got = C.get<float>(size_t(m * n));
  double worst = 0, vs_fp32 = 0, scale = std::sqrt(double(k));
  for (size_t i = 0; i < got.size(); ++i) {
    worst = std::max(worst, std::abs(double(got[i]) - want[i]) / scale);
    vs_fp32 = std::max(vs_fp32, std::abs(double(got[i]) - fp32[i]) / scale);
  }
  INFO("worst |tf32 - cpu| / sqrt(k) = " << worst << ", |tf32 - fp32 gpu| / sqrt(k) = " << vs_fp32);
  CHECK(worst < 4e-3);
  CHECK(vs_fp32 > 2e-5);  // TF32 actually ran: fp32 results differ from each other by ~1e-6 only
  const CudaDeviceInfo info = cuda_device_info();
  if ((info.sm_major == 8 && info.sm_minor == 0) || info.sm_major == 9) {
    CHECK(fp32_peak > 1e12);
    CHECK(tf32_peak > 4 * fp32_peak);
    CHECK(gpu().peak_flops(DType::BF16) == Approx(2 * tf32_peak));
  }
}
