// Every CpuBackend model op against a float64 reference (forward) and float64 central finite differences
// of that reference (backward). Odd sizes throughout; GQA with 3 query heads on 1 kv head; masked keys and
// fully masked rows; a vocabulary chunk that does not divide V.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <vector>

#include "../common/ref_check.h"
#include "cgrpo/backend/cpu_backend.h"

using namespace cgrpo;
using namespace cgrpo::test;

namespace {

using Vec = std::vector<double>;

// ---------------------------------------------------------------- float64 references (spec §1.3)
Vec ref_rmsnorm(const Vec& x, const Vec& w, int64_t N, int64_t H, double eps) {
  Vec y(N * H);
  for (int64_t n = 0; n < N; ++n) {
    double ss = 0;
    for (int64_t j = 0; j < H; ++j) ss += x[n * H + j] * x[n * H + j];
    const double r = 1.0 / std::sqrt(ss / H + eps);
    for (int64_t j = 0; j < H; ++j) y[n * H + j] = w[j] * x[n * H + j] * r;
  }
  return y;
}

Vec ref_rope(const Vec& x, int64_t N, int64_t C, int64_t hd, const std::vector<int32_t>& pos, double theta) {
  Vec y(x);
  const int64_t half = hd / 2;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t h = 0; h < C / hd; ++h)
      for (int64_t j = 0; j < hd; ++j) {
        const double a = pos[n] * std::pow(theta, -2.0 * double(j % half) / double(hd));
        const double rot = j < half ? -x[n * C + h * hd + j + half] : x[n * C + h * hd + j - half];  // rotate_half
        y[n * C + h * hd + j] = x[n * C + h * hd + j] * std::cos(a) + rot * std::sin(a);
      }
  return y;
}

// q [B*L, nh*hd], k, v [B*L, nkv*hd] dense; mask [B, L] or empty.
Vec ref_attention(const AttnShape& s, const Vec& q, const Vec& k, const Vec& v, const std::vector<uint8_t>& mask) {
  const int64_t L = s.L, hd = s.head_dim, qw = s.n_heads * hd, kw = s.n_kv_heads * hd;
  Vec o(s.B * L * qw, 0.0);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.n_heads; ++h) {
      const int64_t g = h / (s.n_heads / s.n_kv_heads);
      for (int64_t i = 0; i < L; ++i) {
        Vec sc(L);
        double m = -1e300;
        bool any = false;
        for (int64_t j = 0; j < L; ++j) {
          if (!mask.empty() && !mask[b * L + j]) continue;
          double d = 0;
          for (int64_t c = 0; c < hd; ++c) d += q[(b * L + i) * qw + h * hd + c] * k[(b * L + j) * kw + g * hd + c];
          sc[j] = d / std::sqrt(double(hd));
          m = std::max(m, sc[j]);
          any = true;
        }
        if (!any) continue;
        double z = 0;
        for (int64_t j = 0; j < L; ++j)
          if (mask.empty() || mask[b * L + j]) z += std::exp(sc[j] - m);
        for (int64_t j = 0; j < L; ++j) {
          if (!mask.empty() && !mask[b * L + j]) continue;
          const double p = std::exp(sc[j] - m) / z;
          for (int64_t c = 0; c < hd; ++c) o[(b * L + i) * qw + h * hd + c] += p * v[(b * L + j) * kw + g * hd + c];
        }
      }
    }
  return o;
}

Vec ref_swiglu(const Vec& g, const Vec& u) {
  Vec o(g.size());
  for (size_t i = 0; i < g.size(); ++i) o[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
  return o;
}

Vec ref_logp(const Vec& h, const Vec& W, const std::vector<int32_t>& t, int64_t R, int64_t H, int64_t V) {
  Vec lp(R);
  for (int64_t r = 0; r < R; ++r) {
    Vec z(V);
    double m = -1e300;
    for (int64_t v = 0; v < V; ++v) {
      double d = 0;
      for (int64_t c = 0; c < H; ++c) d += h[r * H + c] * W[v * H + c];
      z[v] = d;
      m = std::max(m, d);
    }
    double s = 0;
    for (double zv : z) s += std::exp(zv - m);
    lp[r] = z[t[r]] - m - std::log(s);
  }
  return lp;
}

std::vector<float> copy_cols(const std::vector<float>& src, int64_t N, int64_t ld, int64_t c0, int64_t w) {
  std::vector<float> d(N * w);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < w; ++c) d[n * w + c] = src[n * ld + c0 + c];
  return d;
}

}  // namespace

TEST_CASE("ops: embedding forward gathers rows, backward accumulates (+=) with repeated ids", "[model][ops]") {
  CpuBackend be;
  const int64_t V = 37, H = 12, N = 7;
  auto table = randn(V * H, 1);
  std::vector<int32_t> ids = {3, 36, 0, 3, 17, 3, 36};
  std::vector<float> out(N * H);
  be.embedding_fwd(TensorView::of(table.data(), {V, H}), ids.data(), TensorView::of(out.data(), {N, H}));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < H; ++j) REQUIRE(out[n * H + j] == table[ids[n] * H + j]);
  auto dout = randn(N * H, 2);
  auto dtable = randn(V * H, 3);
  Vec want = to_f64(dtable);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < H; ++j) want[ids[n] * H + j] += dout[n * H + j];
  be.embedding_bwd(TensorView::of(dout.data(), {N, H}), ids.data(), TensorView::of(dtable.data(), {V, H}));
  require_close(dtable, want, 1e-6, 1e-6, "dtable");
  // a bf16 table (bf16 parameters): the rows widened, exactly
  std::vector<uint16_t> table16(table.size());
  for (size_t i = 0; i < table.size(); ++i) table16[i] = f32_to_bf16(table[i]);
  be.embedding_fwd(TensorView(table16.data(), DType::BF16, {V, H}), ids.data(), TensorView::of(out.data(), {N, H}));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < H; ++j) REQUIRE(out[n * H + j] == bf16_to_f32(table16[ids[n] * H + j]));
  ids[4] = 37;
  REQUIRE_THROWS_WITH(be.embedding_fwd(TensorView::of(table.data(), {V, H}), ids.data(),
                                       TensorView::of(out.data(), {N, H})),
                      Catch::Contains("token id 37 at position 4 is outside the vocabulary"));
}

TEST_CASE("ops: rmsnorm forward and backward (dx +=, dw +=) vs float64 finite differences", "[model][ops]") {
  CpuBackend be;
  const int64_t N = 5, H = 12;
  const double eps = 1e-6;
  auto x = randn(N * H, 1, 2.0f), w = randn(H, 2), dy = randn(N * H, 3);
  std::vector<float> y(N * H), rstd(N);
  be.rmsnorm_fwd(TensorView::of(x.data(), {N, H}), TensorView::of(w.data(), {H}), float(eps),
                 TensorView::of(y.data(), {N, H}), rstd.data());
  require_close(y, ref_rmsnorm(to_f64(x), to_f64(w), N, H, eps), 1e-6, 0, "rmsnorm y");

  auto dx = randn(N * H, 4), dw = randn(H, 5);  // pre-filled: the op must add
  const auto dx0 = dx, dw0 = dw;
  be.rmsnorm_bwd(TensorView::of(dy.data(), {N, H}), TensorView::of(x.data(), {N, H}), TensorView::of(w.data(), {H}),
                 rstd.data(), TensorView::of(dx.data(), {N, H}), TensorView::of(dw.data(), {H}));
  const Vec dyd = to_f64(dy), xd = to_f64(x), wd = to_f64(w);
  Vec gx = fd_grad([&](const Vec& xx) { return dot(dyd, ref_rmsnorm(xx, wd, N, H, eps)); }, xd);
  Vec gw = fd_grad([&](const Vec& ww) { return dot(dyd, ref_rmsnorm(xd, ww, N, H, eps)); }, wd);
  for (size_t i = 0; i < gx.size(); ++i) gx[i] += dx0[i];
  for (size_t i = 0; i < gw.size(); ++i) gw[i] += dw0[i];
  require_close(dx, gx, 1e-5, 1e-6, "rmsnorm dx");
  require_close(dw, gw, 1e-5, 1e-6, "rmsnorm dw");
}

TEST_CASE("ops: rope with explicit positions, half-split rotate_half, strided view, backward is the transpose",
          "[model][ops]") {
  CpuBackend be;
  const int64_t N = 7, hd = 4, heads = 3, C = heads * hd, ld = C + 5;
  const double theta = 10000.0;
  const std::vector<int32_t> pos = {0, 5, 1, 1, 3, 100, 2};
  auto buf = randn(N * ld, 1);
  const auto x = copy_cols(buf, N, ld, 2, C);
  be.rope_fwd(rows_view(buf.data() + 2, N, C, ld), hd, pos.data(), float(theta));
  require_close(copy_cols(buf, N, ld, 2, C), ref_rope(to_f64(x), N, C, hd, pos, theta), 1e-5, 0, "rope y");
  // columns outside the view are untouched
  auto again = randn(N * ld, 1);
  for (int64_t n = 0; n < N; ++n) REQUIRE(buf[n * ld] == again[n * ld]);

  auto dy = randn(N * C, 2);
  std::vector<float> dx = dy;
  be.rope_bwd(TensorView::of(dx.data(), {N, C}), hd, pos.data(), float(theta));
  const Vec dyd = to_f64(dy);
  const Vec g = fd_grad([&](const Vec& xx) { return dot(dyd, ref_rope(xx, N, C, hd, pos, theta)); }, to_f64(x));
  require_close(dx, g, 1e-5, 1e-7, "rope dx");
  REQUIRE_THROWS_WITH(be.rope_fwd(TensorView::of(dx.data(), {N, C}), 5, pos.data(), 1e4f),
                      Catch::Contains("must be even"));
}

TEST_CASE("ops: bidirectional GQA attention, masked keys, fully masked rows, vs float64 finite differences",
          "[model][ops]") {
  CpuBackend be;
  for (auto [nh, nkv] : {std::pair<int64_t, int64_t>{3, 1}, {4, 2}}) {
    for (int masked = 0; masked < 2; ++masked) {
      const AttnShape s{3, 7, nh, nkv, 4};
      const int64_t N = s.B * s.L, qw = nh * s.head_dim, kw = nkv * s.head_dim, ld = qw + 2 * kw;
      // batch 0: keys 2 and 5 masked; batch 1: every key masked (fully masked rows); batch 2: only key 6.
      std::vector<uint8_t> mask;
      if (masked) {
        mask.assign(N, 1);
        mask[2] = mask[5] = 0;
        for (int64_t j = 0; j < s.L; ++j) mask[s.L + j] = 0, mask[2 * s.L + j] = j == 6;
      }
      INFO("heads " << nh << " kv_heads " << nkv << " masked " << masked);
      auto qkv = randn(N * ld, 10 + masked, 1.5f);  // fused [N, q | k | v]
      std::vector<float> o(N * qw), lse(s.B * nh * s.L);
      const float* p = qkv.data();
      be.attention_fwd(s, rows_view(p, N, qw, ld), rows_view(p + qw, N, kw, ld), rows_view(p + qw + kw, N, kw, ld),
                       masked ? mask.data() : nullptr, TensorView::of(o.data(), {N, qw}), lse.data());
      const Vec q = to_f64(copy_cols(qkv, N, ld, 0, qw)), k = to_f64(copy_cols(qkv, N, ld, qw, kw)),
                v = to_f64(copy_cols(qkv, N, ld, qw + kw, kw));
      require_close(o, ref_attention(s, q, k, v, mask), 1e-5, 1e-7, "attention o");
      if (masked) {
        for (int64_t i = s.L * qw; i < 2 * s.L * qw; ++i) REQUIRE(o[i] == 0.0f);  // safe softmax: zeros, not NaN
        REQUIRE(lse[nh * s.L] == -std::numeric_limits<float>::infinity());
      }
      auto dout = randn(N * qw, 20);
      std::vector<float> dqkv(N * ld, 99.0f);  // garbage: dq, dk, dv are written (=)
      float* d = dqkv.data();
      be.attention_bwd(s, rows_view(p, N, qw, ld), rows_view(p + qw, N, kw, ld), rows_view(p + qw + kw, N, kw, ld),
                       masked ? mask.data() : nullptr, TensorView::of(o.data(), {N, qw}), lse.data(),
                       TensorView::of(dout.data(), {N, qw}), rows_view(d, N, qw, ld), rows_view(d + qw, N, kw, ld),
                       rows_view(d + qw + kw, N, kw, ld));
      const Vec dd = to_f64(dout);
      const Vec gq = fd_grad([&](const Vec& x) { return dot(dd, ref_attention(s, x, k, v, mask)); }, q);
      const Vec gk = fd_grad([&](const Vec& x) { return dot(dd, ref_attention(s, q, x, v, mask)); }, k);
      const Vec gv = fd_grad([&](const Vec& x) { return dot(dd, ref_attention(s, q, k, x, mask)); }, v);
      require_close(copy_cols(dqkv, N, ld, 0, qw), gq, 1e-5, 1e-6, "attention dq");
      require_close(copy_cols(dqkv, N, ld, qw, kw), gk, 1e-5, 1e-6, "attention dk");
      require_close(copy_cols(dqkv, N, ld, qw + kw, kw), gv, 1e-5, 1e-6, "attention dv");
      if (masked)  // batch 1 attends nothing: no gradient anywhere in it
        for (int64_t i = s.L * ld; i < 2 * s.L * ld; ++i) REQUIRE(dqkv[i] == 0.0f);
    }
  }
}

TEST_CASE("ops: attention is bidirectional (a later key changes an earlier query's output)", "[model][ops]") {
  CpuBackend be;
  const AttnShape s{1, 5, 2, 1, 4};
  const int64_t N = 5, qw = 8, kw = 4;
  auto q = randn(N * qw, 1), k = randn(N * kw, 2), v = randn(N * kw, 3);
  std::vector<float> o1(N * qw), o2(N * qw), lse(2 * N);
  be.attention_fwd(s, TensorView::of(q.data(), {N, qw}), TensorView::of(k.data(), {N, kw}),
                   TensorView::of(v.data(), {N, kw}), nullptr, TensorView::of(o1.data(), {N, qw}), lse.data());
  v[4 * kw] += 1.0f;  // last position's value
  be.attention_fwd(s, TensorView::of(q.data(), {N, qw}), TensorView::of(k.data(), {N, kw}),
                   TensorView::of(v.data(), {N, kw}), nullptr, TensorView::of(o2.data(), {N, qw}), lse.data());
  REQUIRE(o1[0] != o2[0]);  // query 0 sees key 4
}

TEST_CASE("ops: swiglu and bias forward/backward vs float64", "[model][ops]") {
  CpuBackend be;
  const int64_t N = 5, I = 9;
  auto gu = randn(N * 2 * I, 1, 2.0f);  // fused [N, gate | up]
  std::vector<float> out(N * I);
  be.swiglu_fwd(rows_view(gu.data(), N, I, 2 * I), rows_view(gu.data() + I, N, I, 2 * I),
                TensorView::of(out.data(), {N, I}));
  const Vec g = to_f64(copy_cols(gu, N, 2 * I, 0, I)), u = to_f64(copy_cols(gu, N, 2 * I, I, I));
  require_close(out, ref_swiglu(g, u), 1e-6, 0, "swiglu out");
  auto dout = randn(N * I, 2);
  std::vector<float> dgu(N * 2 * I, 99.0f);
  be.swiglu_bwd(TensorView::of(dout.data(), {N, I}), rows_view(gu.data(), N, I, 2 * I),
                rows_view(gu.data() + I, N, I, 2 * I), rows_view(dgu.data(), N, I, 2 * I),
                rows_view(dgu.data() + I, N, I, 2 * I));
  const Vec dd = to_f64(dout);
  require_close(copy_cols(dgu, N, 2 * I, 0, I), fd_grad([&](const Vec& x) { return dot(dd, ref_swiglu(x, u)); }, g),
                1e-5, 1e-7, "swiglu dg");
  require_close(copy_cols(dgu, N, 2 * I, I, I), fd_grad([&](const Vec& x) { return dot(dd, ref_swiglu(g, x)); }, u),
                1e-5, 1e-7, "swiglu du");

  auto y = randn(N * I, 3), b = randn(I, 4), db = randn(I, 5);
  Vec wy = to_f64(y), wdb = to_f64(db);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < I; ++j) wy[n * I + j] += b[j], wdb[j] += dout[n * I + j];
  be.bias_add(TensorView::of(y.data(), {N, I}), TensorView::of(b.data(), {I}));
  be.bias_bwd(TensorView::of(dout.data(), {N, I}), TensorView::of(db.data(), {I}));
  require_close(y, wy, 1e-6, 1e-6, "bias_add");
  require_close(db, wdb, 1e-6, 1e-6, "bias_bwd");
}

TEST_CASE("ops: fused chunked log-softmax gather vs float64, dh/dW accumulate, bounded workspace",
          "[model][ops]") {
  const int64_t R = 5, H = 12, V = 37;
  const std::vector<int32_t> t = {0, 36, 8, 9, 17};  // chunk boundaries for chunk 8: 8 starts a chunk
  for (int64_t chunk : {8, 37, 100}) {
    INFO("chunk " << chunk);
    CpuBackend be;
    auto h = randn(R * H, 1), W = randn(V * H, 2);
    std::vector<float> logp(R), lse(R);
    be.logsoftmax_gather_fwd(TensorView::of(h.data(), {R, H}), TensorView::of(W.data(), {V, H}), t.data(), chunk,
                             logp.data(), lse.data());
    const Vec hd = to_f64(h), Wd = to_f64(W);
    require_close(logp, ref_logp(hd, Wd, t, R, H, V), 1e-5, 1e-6, "logp");
    const size_t ws = be.logsoftmax_gather_workspace_bytes(R, V, chunk);
    REQUIRE(be.workspace_capacity_bytes() <= ws);
    if (chunk < V) REQUIRE(ws < size_t(R * V) * sizeof(float));  // never [R, V]

    auto dlogp = randn(R, 3), dh = randn(R * H, 4), dW = randn(V * H, 5);
    const auto dh0 = dh, dW0 = dW;
    be.logsoftmax_gather_bwd(TensorView::of(h.data(), {R, H}), TensorView::of(W.data(), {V, H}), t.data(), chunk,
                             lse.data(), dlogp.data(), TensorView::of(dh.data(), {R, H}),
                             TensorView::of(dW.data(), {V, H}));
    REQUIRE(be.workspace_capacity_bytes() <= ws);
    const Vec dl = to_f64(dlogp);
    Vec gh = fd_grad([&](const Vec& x) { return dot(dl, ref_logp(x, Wd, t, R, H, V)); }, hd);
    Vec gW = fd_grad([&](const Vec& x) { return dot(dl, ref_logp(hd, x, t, R, H, V)); }, Wd);
    for (size_t i = 0; i < gh.size(); ++i) gh[i] += dh0[i];
    for (size_t i = 0; i < gW.size(); ++i) gW[i] += dW0[i];
    require_close(dh, gh, 1e-5, 1e-6, "dh");
    require_close(dW, gW, 1e-5, 1e-6, "dW");
  }
}

TEST_CASE("ops: log-softmax gather on bf16 h and W: bf16 x bf16 -> fp32 logits, dz rounded to bf16 (float64 oracle)",
          "[model][ops]") {
  const int64_t R = 5, H = 12, V = 37;
  const std::vector<int32_t> t = {0, 36, 8, 9, 17};
  auto round16 = [](const std::vector<float>& x, std::vector<uint16_t>& bits) {
    bits.resize(x.size());
    Vec wide(x.size());
    for (size_t i = 0; i < x.size(); ++i) wide[i] = bf16_to_f32(bits[i] = f32_to_bf16(x[i]));
    return wide;
  };
  std::vector<uint16_t> h16, W16;
  const Vec hd = round16(randn(R * H, 1), h16), Wd = round16(randn(V * H, 2), W16);
  const auto dlogp = randn(R, 3), dh0 = randn(R * H, 4), dW0 = randn(V * H, 5);
  // oracle: dz = dlogp (onehot - softmax(z)) in float64, rounded to bf16 (through fp32) or not
  Vec dz(R * V), dz16(R * V);
  for (int64_t r = 0; r < R; ++r) {
    Vec z(V);
    double m = -1e300, sum = 0;
    for (int64_t v = 0; v < V; ++v) {
      for (int64_t c = 0; c < H; ++c) z[v] += hd[r * H + c] * Wd[v * H + c];
      m = std::max(m, z[v]);
    }
    for (double zv : z) sum += std::exp(zv - m);
    for (int64_t v = 0; v < V; ++v) {
      dz[r * V + v] = dlogp[r] * ((v == t[r] ? 1.0 : 0.0) - std::exp(z[v] - m) / sum);
      dz16[r * V + v] = bf16_to_f32(f32_to_bf16(float(dz[r * V + v])));
    }
  }
  auto grads = [&](const Vec& d, Vec& gh, Vec& gW) {  // gh = dh0 + d W, gW = dW0 + d^T h
    gh = to_f64(dh0), gW = to_f64(dW0);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t v = 0; v < V; ++v)
        for (int64_t c = 0; c < H; ++c) {
          gh[r * H + c] += d[r * V + v] * Wd[v * H + c];
          gW[v * H + c] += d[r * V + v] * hd[r * H + c];
        }
  };
  Vec gh, gW, gh_unrounded, gW_unrounded;
  grads(dz16, gh, gW);
  grads(dz, gh_unrounded, gW_unrounded);
  double apart = 0;  // how far the unrounded-dz answer is: the tolerance below must tell the two apart
  for (size_t i = 0; i < gh.size(); ++i) apart = std::max(apart, std::fabs(gh[i] - gh_unrounded[i]));
  REQUIRE(apart > 1e-4);
  for (int64_t chunk : {8, 37}) {
    INFO("chunk " << chunk);
    CpuBackend be;
    const TensorView hv(h16.data(), DType::BF16, {R, H}), Wv(W16.data(), DType::BF16, {V, H});
    std::vector<float> logp(R), lse(R);
    be.logsoftmax_gather_fwd(hv, Wv, t.data(), chunk, logp.data(), lse.data());
    require_close(logp, ref_logp(hd, Wd, t, R, H, V), 1e-5, 1e-6, "logp");
    auto dh = dh0, dW = dW0;
    be.logsoftmax_gather_bwd(hv, Wv, t.data(), chunk, lse.data(), dlogp.data(), TensorView::of(dh.data(), {R, H}),
                             TensorView::of(dW.data(), {V, H}));
    require_close(dh, gh, 1e-5, 1e-6, "dh");
    require_close(dW, gW, 1e-5, 1e-6, "dW");
  }
  CpuBackend be;
  auto h32 = randn(R * H, 1);
  std::vector<float> logp(R), lse(R);
  REQUIRE_THROWS_WITH(be.logsoftmax_gather_fwd(TensorView::of(h32.data(), {R, H}),
                                               TensorView(W16.data(), DType::BF16, {V, H}), t.data(), 8, logp.data(),
                                               lse.data()),
                      Catch::Contains("h and W must be both f32 or both bf16"));
}

TEST_CASE("ops: log-softmax gather is stable for huge logits and rejects bad targets", "[model][ops]") {
  CpuBackend be;
  const int64_t R = 3, H = 12, V = 37;
  auto h = randn(R * H, 1, 40.0f), W = randn(V * H, 2, 10.0f);  // logits in the thousands
  const std::vector<int32_t> t = {1, 2, 30};
  std::vector<float> logp(R), lse(R);
  be.logsoftmax_gather_fwd(TensorView::of(h.data(), {R, H}), TensorView::of(W.data(), {V, H}), t.data(), 8,
                           logp.data(), lse.data());
  const Vec want = ref_logp(to_f64(h), to_f64(W), t, R, H, V);
  for (int64_t r = 0; r < R; ++r) {
    REQUIRE(std::isfinite(logp[r]));
    REQUIRE(logp[r] <= 0.0f);
    REQUIRE(logp[r] == Approx(want[r]).epsilon(1e-5).margin(1e-2));
  }
  const std::vector<int32_t> bad = {1, 37, 2};
  REQUIRE_THROWS_WITH(be.logsoftmax_gather_fwd(TensorView::of(h.data(), {R, H}), TensorView::of(W.data(), {V, H}),
                                               bad.data(), 8, logp.data(), lse.data()),
                      Catch::Contains("target 37 of row 1 is outside the vocabulary"));
}
