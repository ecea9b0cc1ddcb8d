// kernel_math (the per-element and per-index logic of the CUDA kernels) against the CPU oracle: core/dtype.h,
// CpuBackend and optim/adamw.cpp. These run on every machine, with or without a GPU.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cgrpo/backend/cpu_backend.h"
#include "cgrpo/backend/kernel_math.h"
#include "cgrpo/core/dtype.h"
#include "cgrpo/core/philox.h"
#include "cgrpo/core/simd_exp.h"

using namespace cgrpo;

namespace {
std::vector<float> randn(size_t n, uint32_t sample, float scale = 1.0f) {
  std::vector<float> v(n);
  RngStream(11, RngPurpose::Test, 0, sample).fill_normal(v.data(), static_cast<int64_t>(n), 0.0f, scale);
  return v;
}
uint32_t bits(float f) { return f32_bits(f); }
}  // namespace

TEST_CASE("kernel math: the casts the kernels run round as IEEE requires at the edges", "[unit][kmath]") {
  // core/dtype.h's conversions are the kernels' (CGRPO_HD); test_dtype checks them exhaustively against F16C
  CHECK(f32_to_f16(65520.0f) == 0x7C00);  // ties up to inf
  CHECK(f32_to_f16(65519.0f) == 0x7BFF);
  CHECK(f32_to_f16(std::ldexp(1.0f, -25)) == 0x0000);  // ties to even = 0
  CHECK(f32_to_bf16(f32_from_bits(0x7F800001u)) == 0x7FC0);  // NaN payload kept, quiet
}

TEST_CASE("kernel math: the row partition covers every row exactly once for awkward sizes", "[unit][kmath]") {
  for (int64_t rows : {0, 1, 2, 7, 31, 32, 33, 100, 129, 1000, 4097, 65537})
    for (int64_t max_blocks : {1, 3, 64, 128})
      for (int64_t min_rows : {1, 32}) {
        INFO("rows " << rows << " max_blocks " << max_blocks << " min_rows " << min_rows);
        const kmath::RowPartition p = kmath::make_row_partition(rows, max_blocks, min_rows);
        REQUIRE(p.blocks <= max_blocks);
        REQUIRE(p.per_block >= min_rows);
        std::vector<int> seen(static_cast<size_t>(rows), 0);
        for (int64_t b = 0; b < p.blocks; ++b) {
          REQUIRE(p.begin(b) < p.end(b));  // no empty block
          if (b > 0) REQUIRE(p.begin(b) == p.end(b - 1));
          for (int64_t n = p.begin(b); n < p.end(b); ++n) seen[size_t(n)]++;
        }
        for (int64_t n = 0; n < rows; ++n) REQUIRE(seen[size_t(n)] == 1);
        if (rows > 0) REQUIRE(p.end(p.blocks - 1) == rows);
        // the same shape always gives the same partition (it is the summation order)
        const kmath::RowPartition q = kmath::make_row_partition(rows, max_blocks, min_rows);
        REQUIRE((q.blocks == p.blocks && q.per_block == p.per_block));
      }
}

TEST_CASE("kernel math: group ownership and grid sizes cover every element once", "[unit][kmath]") {
  for (int64_t n : {0, 1, 3, 4, 5, 37, 256, 1023, 1025, 4099})
    for (int64_t T : {32, 96, 256}) {
      INFO("n " << n << " threads " << T);
      std::vector<int> seen(static_cast<size_t>(n), 0);
      const int64_t groups = kmath::group_count(n);
      REQUIRE(groups * kmath::kGroup >= n);
      REQUIRE((groups == 0 || (groups - 1) * kmath::kGroup < n));
      for (int64_t t = 0; t < T; ++t) {
        int64_t last = -1;
        for (int64_t g = t; g < groups; g += T)
          for (int64_t j = g * kmath::kGroup; j < std::min<int64_t>(g * kmath::kGroup + kmath::kGroup, n); ++j) {
            REQUIRE(j > last);  // increasing order within a thread
            last = j;
            seen[size_t(j)]++;
          }
      }
      for (int64_t j = 0; j < n; ++j) REQUIRE(seen[size_t(j)] == 1);
      const int64_t b = kmath::grid_blocks(n, T, 1 << 30);
      REQUIRE(b >= 1);
      REQUIRE(b * T >= n);
      REQUIRE(kmath::grid_blocks(n, T, 2) <= 2);
    }
  alignas(16) float buf[8] = {};
  CHECK(kmath::vec4_ok(buf, 8));
  CHECK_FALSE(kmath::vec4_ok(buf + 1, 8));
  CHECK_FALSE(kmath::vec4_ok(buf, 6));
  CHECK(kmath::vec4_ok(buf + 4));
  // bf16 (2-byte elements): a group of 4 is 8 bytes, so an 8-byte aligned base is enough
  const uint16_t* h = reinterpret_cast<const uint16_t*>(buf);
  CHECK(kmath::vec4_ok(h + 4, 8, 2));
  CHECK_FALSE(kmath::vec4_ok(h + 2, 8, 2));
  CHECK_FALSE(kmath::vec4_ok(h + 4, 6, 2));
  CHECK_FALSE(kmath::vec4_ok(buf + 2, 8));  // 8-byte aligned is not enough for fp32
  CHECK(kmath::round_up(33, 32) == 64);
  CHECK(kmath::ceil_div(64, 32) == 2);
}

TEST_CASE("kernel math: online logsumexp merge over random chunkings equals a double logsumexp", "[unit][kmath]") {
  RngStream rng(5, RngPurpose::Test, 0, 0);
  uint64_t ctr = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const int64_t n = 1 + int64_t(rng.uniform(ctr++) * 300);
    const float scale = trial % 3 == 0 ? 1.0f : (trial % 3 == 1 ? 30.0f : 1000.0f);
    std::vector<float> z = randn(size_t(n), 100 + uint32_t(trial), scale);
    if (trial % 5 == 0)  // some -inf logits (masked vocabulary), never all of them
      for (int64_t j = 0; j + 1 < n; j += 3) z[size_t(j)] = -std::numeric_limits<float>::infinity();
    double mx = -INFINITY;
    for (float v : z) mx = std::max(mx, double(v));
    double acc = 0;
    for (float v : z) acc += std::exp(double(v) - mx);
    const double want = mx + std::log(acc);

    // (a) the kernel's fold: chunk after chunk, the chunk summed against the new running max
    // (b) independent chunk states merged in a shuffled tree order
    kmath::LseState run = kmath::lse_empty();
    std::vector<kmath::LseState> parts;
    for (int64_t c0 = 0; c0 < n;) {
      const int64_t cn = std::min<int64_t>(n - c0, 1 + int64_t(rng.uniform(ctr++) * 40));
      float cmax = -INFINITY;
      for (int64_t j = c0; j < c0 + cn; ++j) cmax = std::max(cmax, z[size_t(j)]);
      const float m = std::max(run.m, cmax);
      double s = 0, s_own = 0;
      for (int64_t j = c0; j < c0 + cn; ++j) {
        s += double(kmath::exp_shifted(z[size_t(j)], m));
        s_own += double(kmath::exp_shifted(z[size_t(j)], cmax));
      }
      run = kmath::lse_merge(run, {m, s});
      parts.push_back({cmax, s_own});
      c0 += cn;
    }
    while (parts.size() > 1) {
      const size_t i = size_t(rng.uniform(ctr++) * float(parts.size() - 1));
      parts[i] = kmath::lse_merge(parts[i + 1], parts[i]);
      parts.erase(parts.begin() + long(i) + 1);
    }
    INFO("trial " << trial << " n " << n << " scale " << scale);
    // expf is within 2 ulp, the sum is double, the result is rounded once to fp32
    const double tol = 1e-6 * (1.0 + std::fabs(want));
    REQUIRE(std::fabs(double(kmath::lse_value(run)) - want) <= tol);
    REQUIRE(std::fabs(double(kmath::lse_value(parts[0])) - want) <= tol);
  }
  // edge cases: the empty state is neutral, a single logit is exact, all -inf stays -inf without NaN
  const kmath::LseState e = kmath::lse_empty();
  const kmath::LseState one = kmath::lse_merge(e, {3.5f, 1.0});
  CHECK(kmath::lse_value(one) == 3.5f);
  CHECK(kmath::lse_value(kmath::lse_merge(e, e)) == -INFINITY);
  CHECK(std::isinf(kmath::lse_value(kmath::lse_merge(e, {-INFINITY, 0.0}))));
  CHECK(kmath::exp_shifted(-INFINITY, -INFINITY) == 0.0f);
}

TEST_CASE("kernel math: the log-softmax gradient element sums to zero over a row", "[unit][kmath]") {
  const int64_t V = 53;
  const auto z = randn(V, 3, 4.0f);
  double mx = -INFINITY, acc = 0;
  for (float v : z) mx = std::max(mx, double(v));
  for (float v : z) acc += std::exp(double(v) - mx);
  const float lse = static_cast<float>(mx + std::log(acc));
  const float dlogp = -0.75f;
  const int64_t t = 17;
  double sum = 0;
  for (int64_t j = 0; j < V; ++j) {
    const float dz = kmath::lsg_dz(z[size_t(j)], lse, dlogp, j == t);
    const double want = double(dlogp) * ((j == t ? 1.0 : 0.0) - std::exp(double(z[size_t(j)]) - double(lse)));
    REQUIRE(std::fabs(dz - want) <= 1e-6 * std::fabs(dlogp));
    sum += dz;
  }
  CHECK(std::fabs(sum) <= 1e-5);
}

namespace {
// The AdamW loop of src/optim/adamw.cpp before it called kmath, verbatim: compiled here with the same flags, it
// shows that moving the CPU oracle onto kmath::adamw_element changed no bits.
void adamw_original(float* p, const float* g, float* m, float* v, const std::vector<DecaySegment>& segments, double lr,
                    int64_t step, const AdamWParams& hp, float grad_scale) {
  const float b1 = static_cast<float>(hp.beta1), b2 = static_cast<float>(hp.beta2);
  const float bc1 = static_cast<float>(1.0 - std::pow(hp.beta1, double(step)));
  const float bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(hp.beta2, double(step))));
  const float step_size = static_cast<float>(lr) / bc1;
  const float eps = static_cast<float>(hp.eps);
  for (const DecaySegment& s : segments) {
    const float keep = s.decay ? static_cast<float>(1.0 - lr * hp.weight_decay) : 1.0f;
    for (int64_t i = s.offset; i < s.offset + s.count; ++i) {
      const float gi = g[i] * grad_scale;
      m[i] = b1 * m[i] + (1.0f - b1) * gi;
      v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
      const float denom = std::sqrt(v[i]) / bc2_sqrt + eps;
      p[i] = p[i] * keep - step_size * m[i] / denom;
    }
  }
}
}  // namespace

TEST_CASE("kernel math: the AdamW element reproduces adamw_step bit for bit", "[unit][kmath]") {
  const int64_t n = 1031;
  const AdamWParams hp{0.9, 0.99, 1e-8, 0.1};
  const std::vector<DecaySegment> seg = {{0, 300, true}, {300, 0, false}, {300, 211, false}, {511, 520, true}};
  auto p = randn(n, 1), g = randn(n, 2, 0.01f);
  std::vector<float> m(n, 0.0f), v(n, 0.0f);
  for (int64_t i = 0; i < 7; ++i) g[size_t(i)] = 0.0f;  // zero gradients, as in ZeRO padding
  g[7] = 1e30f;                                         // gi^2 overflows v to inf: p moves by 0
  auto p2 = p, m2 = m, v2 = v, p3 = p, m3 = m, v3 = v;
  for (int64_t t = 1; t <= 6; ++t) {
    const double lr = 1e-3 * double(t);
    const float scale = t == 4 ? 0.25f : 1.0f;
    auto gt = randn(n, 10 + uint32_t(t), 0.05f);
    gt[7] = g[7];
    adamw_step(p.data(), gt.data(), m.data(), v.data(), n, seg, lr, t, hp, scale);
    const kmath::AdamWConsts k = kmath::adamw_consts(lr, t, hp);
    for (const DecaySegment& s : seg)
      for (int64_t i = s.offset; i < s.offset + s.count; ++i) {
        const kmath::AdamWElem e = kmath::adamw_element(p2[size_t(i)], gt[size_t(i)], m2[size_t(i)], v2[size_t(i)],
                                                        s.decay ? k.keep_decay : 1.0f, scale, k);
        p2[size_t(i)] = e.p;
        m2[size_t(i)] = e.m;
        v2[size_t(i)] = e.v;
      }
    adamw_original(p3.data(), gt.data(), m3.data(), v3.data(), seg, lr, t, hp, scale);
    for (int64_t i = 0; i < n; ++i) {
      INFO("step " << t << " element " << i);
      REQUIRE(bits(p2[size_t(i)]) == bits(p[size_t(i)]));
      REQUIRE(bits(m2[size_t(i)]) == bits(m[size_t(i)]));
      REQUIRE(bits(v2[size_t(i)]) == bits(v[size_t(i)]));
#if defined(__FMA__) && defined(__GNUC__) && !defined(__clang__)
      // GCC with FMA fuses the original loop exactly where kmath writes its fmas
      REQUIRE(bits(p3[size_t(i)]) == bits(p[size_t(i)]));
      REQUIRE(bits(m3[size_t(i)]) == bits(m[size_t(i)]));
      REQUIRE(bits(v3[size_t(i)]) == bits(v[size_t(i)]));
#else
      REQUIRE(p3[size_t(i)] == Approx(p[size_t(i)]).epsilon(1e-6).margin(1e-12));
#endif
    }
  }
  // the fused forms are genuinely different from the unfused ones somewhere: the test can tell them apart
  int differs = 0;
  const kmath::AdamWConsts k = kmath::adamw_consts(1e-3, 1, hp);
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[size_t(i)], m0 = 0.1f * p[size_t(i)];
    const float fused = kmath::fma_f32(k.b1, m0, k.one_minus_b1 * gi);
    volatile float prod = k.b1 * m0;  // volatile: rounded before the add
    const float unfused = prod + k.one_minus_b1 * gi;
    differs += bits(fused) != bits(unfused);
  }
  CHECK(differs > 0);
}

TEST_CASE("kernel math: axpby and sumsq elements reproduce CpuBackend", "[unit][kmath]") {
  CpuBackend cpu(1);
  const int64_t n = 777;
  const auto x = randn(n, 1), y0 = randn(n, 2);
  for (auto [a, b] : {std::pair<float, float>{1.0f, 1.0f}, {0.3f, -1.7f}, {-2.5f, 0.0f}}) {
    auto y = y0, y2 = y0;
    cpu.axpby(n, a, x.data(), b, y.data());
    for (int64_t i = 0; i < n; ++i) {
      y2[size_t(i)] = kmath::axpby_f32(a, x[size_t(i)], b, y0[size_t(i)]);
      INFO("a " << a << " b " << b << " element " << i);
      REQUIRE(bits(y2[size_t(i)]) == bits(y[size_t(i)]));
    }
  }
  double acc = 0;
  for (float v : x) acc = kmath::sumsq_term(acc, v);
  CHECK(acc == cpu.sumsq(x.data(), n));  // the same sequential order: the same double
}

TEST_CASE("kernel math: rope angle and rotation reproduce CpuBackend rope", "[unit][kmath]") {
  CpuBackend cpu(1);
  const int64_t N = 9, heads = 3, hd = 16, C = heads * hd, half = hd / 2;
  const float theta = 10000.0f;
  const std::vector<int32_t> pos = {0, 1, 2, 7, 100, 511, 4095, 30000, 5};
  for (float sign : {1.0f, -1.0f}) {
    auto x = randn(N * C, 4), want = x;
    if (sign > 0)
      cpu.rope_fwd(TensorView::of(want.data(), {N, C}), hd, pos.data(), theta);
    else
      cpu.rope_bwd(TensorView::of(want.data(), {N, C}), hd, pos.data(), theta);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t j = 0; j < half; ++j) {
        const float a = kmath::rope_angle(pos[size_t(n)], kmath::rope_inv_freq(theta, j, hd));
        const float c = std::cos(a), s = sign * std::sin(a);
        for (int64_t h = 0; h < heads; ++h) {
          float* xr = x.data() + n * C + h * hd;
          const kmath::Pair r = kmath::rope_rotate(xr[j], xr[j + half], c, s);
          xr[j] = r.a;
          xr[j + half] = r.b;
        }
      }
    for (int64_t i = 0; i < N * C; ++i) {
      INFO("sign " << sign << " element " << i);
#if defined(__FMA__)
      REQUIRE(bits(x[size_t(i)]) == bits(want[size_t(i)]));
#else
      REQUIRE(x[size_t(i)] == Approx(want[size_t(i)]).epsilon(1e-6).margin(1e-7));
#endif
    }
  }
}

TEST_CASE("kernel math: rmsnorm statistics and dx element reproduce CpuBackend", "[unit][kmath]") {
  CpuBackend cpu(1);
  const int64_t N = 5, H = 37;
  const float eps = 1e-6f;
  const auto x = randn(N * H, 1, 3.0f), w = randn(H, 2), dy = randn(N * H, 3), dx0 = randn(N * H, 4);
  std::vector<float> y(N * H), rstd(N), dx = dx0, dw(H, 0.0f);
  cpu.rmsnorm_fwd(TensorView::of(x.data(), {N, H}), TensorView::of(w.data(), {H}), eps, TensorView::of(y.data(), {N, H}),
                  rstd.data());
  cpu.rmsnorm_bwd(TensorView::of(dy.data(), {N, H}), TensorView::of(x.data(), {N, H}), TensorView::of(w.data(), {H}),
                  rstd.data(), TensorView::of(dx.data(), {N, H}), TensorView::of(dw.data(), {H}));
  for (int64_t n = 0; n < N; ++n) {
    const float* xr = x.data() + n * H;
    // with the CPU's own double sum the statistic is bit-identical; kmath's sequential sum may differ in the
    // last double bits only
    REQUIRE(bits(kmath::rmsnorm_rstd(simd::dot_f64(xr, xr, H), H, eps)) == bits(rstd[size_t(n)]));
    double ss = 0, dot = 0;
    for (int64_t j = 0; j < H; ++j) ss = kmath::sumsq_term(ss, xr[j]);
    REQUIRE(kmath::rmsnorm_rstd(ss, H, eps) == Approx(rstd[size_t(n)]).epsilon(2e-7));
    const float r = rstd[size_t(n)];
    for (int64_t j = 0; j < H; ++j) {
      REQUIRE(bits(w[size_t(j)] * (xr[j] * r)) == bits(y[size_t(n * H + j)]));
      dot = kmath::rmsnorm_dot_term(dot, dy[size_t(n * H + j)], w[size_t(j)], xr[j], r);
    }
    const float mean = static_cast<float>(dot / double(H));
    for (int64_t j = 0; j < H; ++j) {
      const size_t i = size_t(n * H + j);
      const float got = kmath::rmsnorm_dx(dx0[i], dy[i], w[size_t(j)], xr[j], r, mean);
      INFO("row " << n << " column " << j);
      const double scale = std::fabs(dx0[i]) + r * (std::fabs(dy[i] * w[size_t(j)]) + std::fabs(xr[j] * r * mean));
      REQUIRE(std::fabs(double(got) - dx[i]) <= 4e-7 * scale);
    }
  }
}

TEST_CASE("kernel math: swiglu elements agree with CpuBackend within the exp difference", "[unit][kmath]") {
  CpuBackend cpu(1);
  const int64_t N = 3, I = 41;
  auto g = randn(N * I, 1, 4.0f), u = randn(N * I, 2), d = randn(N * I, 3);
  g[0] = 90.0f;
  g[1] = -90.0f;  // saturated sigmoid both ways
  g[2] = 0.0f;
  std::vector<float> out(N * I), dg(N * I), du(N * I);
  cpu.swiglu_fwd(TensorView::of(g.data(), {N, I}), TensorView::of(u.data(), {N, I}), TensorView::of(out.data(), {N, I}));
  cpu.swiglu_bwd(TensorView::of(d.data(), {N, I}), TensorView::of(g.data(), {N, I}), TensorView::of(u.data(), {N, I}),
                 TensorView::of(dg.data(), {N, I}), TensorView::of(du.data(), {N, I}));
  for (size_t i = 0; i < g.size(); ++i) {
    INFO("element " << i << " g " << g[i]);
    const float sig = kmath::sigmoid_f32(g[i]);
    REQUIRE(std::fabs(kmath::swiglu_out(g[i], u[i]) - out[i]) <= 2e-6 * std::fabs(out[i]) + 1e-30);
    const kmath::Pair p = kmath::swiglu_grads(d[i], g[i], u[i]);
    // 1 + g (1 - sig) cancels near g = -1.28: bound by the size of its terms
    const double scale = std::fabs(d[i] * u[i] * sig) * (1.0 + std::fabs(g[i]));
    REQUIRE(std::fabs(p.a - dg[i]) <= 2e-6 * scale + 1e-30);
    REQUIRE(std::fabs(p.b - du[i]) <= 2e-6 * std::fabs(du[i]) + 1e-30);
  }
}
