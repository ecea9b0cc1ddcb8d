// flash_tile.h (the tile logic the CUDA attention kernels call) on the CPU: its pieces by hand, then a tiled
// forward and backward emulation built from exactly those functions (same grid decomposition, same smem-tile
// contents: pre-scaled Q, zero tail rows, keep flags, lse = -inf / D = 0 for missing query rows) against
// CpuBackend::attention_fwd/bwd. Tile sizes that do and do not divide L, masked keys, an all-masked batch row,
// GQA, L = 1. Runs everywhere; the GPU test (tests/gpu/test_gpu_attention.cpp) runs the kernels themselves.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <vector>

#include "../common/ref_check.h"
#include "cgrpo/backend/cpu_backend.h"
#include "cgrpo/backend/flash_tile.h"

using namespace cgrpo;
using namespace cgrpo::test;
namespace fl = cgrpo::flash;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// A [B*L, width] view inside a host buffer with row stride ld (a column block of a fused projection).
struct Cols {
  const float* p;
  int64_t ld;
};
struct MutCols {
  float* p;
  int64_t ld;
};

// One smem tile as the kernels build it: rows [0, valid) of the view scaled, the rest zero.
template <int ROWS, int HD>
void load_tile(float (&s)[ROWS][HD], const float* g, int64_t ld, int valid, float scale) {
  for (int r = 0; r < ROWS; ++r)
    for (int c = 0; c < HD; ++c) s[r][c] = r < valid ? scale * g[r * ld + c] : 0.0f;
}
template <int HD>
float dot(const float (&a)[HD], const float (&b)[HD]) {
  float t = 0.0f;
  for (int d = 0; d < HD; ++d) t = std::fma(a[d], b[d], t);
  return t;
}

// FA-2 Alg. 1 tiled as attn_fwd_kernel: one "block" per (query tile, head, batch), key tiles in order.
template <int BQ, int BK, int HD>
void emulate_fwd(const AttnShape& s, Cols q, Cols k, Cols v, const uint8_t* mask, MutCols o, float* lse) {
  const float scale = static_cast<float>(1.0 / std::sqrt(double(HD)));
  for (int64_t bz = 0; bz < s.B; ++bz)
    for (int64_t by = 0; by < s.n_heads; ++by)
      for (int64_t bx = 0; bx < fl::tile_count(s.L, BQ); ++bx) {
        const fl::TileCoord t = fl::tile_coord(bx, by, bz, BQ);
        const int64_t g = fl::kv_head_of(t.head, s.n_heads, s.n_kv_heads);
        const int rows = fl::tile_extent(t.row0, BQ, s.L);
        const uint8_t* mask_row = mask ? mask + t.b * s.L : nullptr;
        static float Qs[BQ][HD], Ks[BK][HD], Vs[BK][HD], acc[BQ][HD];
        float m[BQ], l[BQ];
        load_tile(Qs, q.p + fl::row_offset(t.b, s.L, t.row0, q.ld, t.head, HD), q.ld, rows, scale);
        for (int r = 0; r < BQ; ++r) {
          m[r] = -kInf, l[r] = 0.0f;
          for (int n = 0; n < HD; ++n) acc[r][n] = 0.0f;
        }
        for (int64_t k0 = 0; k0 < s.L; k0 += BK) {
          const int keys = fl::tile_extent(k0, BK, s.L);
          load_tile(Ks, k.p + fl::row_offset(t.b, s.L, k0, k.ld, g, HD), k.ld, keys, 1.0f);
          load_tile(Vs, v.p + fl::row_offset(t.b, s.L, k0, v.ld, g, HD), v.ld, keys, 1.0f);
          bool keep[BK];
          for (int c = 0; c < BK; ++c) keep[c] = fl::key_valid(k0 + c, s.L, mask_row);
          for (int r = 0; r < BQ; ++r) {
            float sr[BK];
            for (int c = 0; c < BK; ++c) sr[c] = dot(Qs[r], Ks[c]);
            fl::online_softmax_update(sr, keep, m[r], l[r], acc[r], fl::RowLocal{});
            for (int c = 0; c < BK; ++c)
              for (int n = 0; n < HD; ++n) acc[r][n] = std::fma(sr[c], Vs[c][n], acc[r][n]);
          }
        }
        for (int r = 0; r < BQ; ++r) {
          const float lse_r = fl::finalize_row(m[r], l[r], acc[r]);
          if (r >= rows) continue;
          float* orow = o.p + fl::row_offset(t.b, s.L, t.row0 + r, o.ld, t.head, HD);
          for (int n = 0; n < HD; ++n) orow[n] = acc[r][n];
          lse[(t.b * s.n_heads + t.head) * s.L + t.row0 + r] = lse_r;
        }
      }
}

// FA-2 Alg. 2 tiled as the three backward kernels: D = rowsum(dO o O); dk, dv per (key tile, kv head, batch)
// over the query tiles of every head of the group; dq per (query tile, head, batch) over key tiles.
template <int BQ, int BK, int HD>
void emulate_bwd(const AttnShape& s, Cols q, Cols k, Cols v, const uint8_t* mask, Cols o, const float* lse, Cols dout,
                 MutCols dq, MutCols dk, MutCols dv) {
  const float scale = static_cast<float>(1.0 / std::sqrt(double(HD)));
  std::vector<float> D(s.B * s.n_heads * s.L);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.n_heads; ++h)
      for (int64_t i = 0; i < s.L; ++i) {
        const float* od = o.p + fl::row_offset(b, s.L, i, o.ld, h, HD);
        const float* dd = dout.p + fl::row_offset(b, s.L, i, dout.ld, h, HD);
        float acc = 0.0f;
        for (int c = 0; c < HD; ++c) acc = std::fma(dd[c], od[c], acc);
        D[(b * s.n_heads + h) * s.L + i] = acc;
      }
  static float Qs[BQ][HD], dOs[BQ][HD], Ks[BK][HD], Vs[BK][HD], dK[BK][HD], dV[BK][HD], dQ[BQ][HD];
  float lse_s[BQ], D_s[BQ];
  bool keep[BK];
  const int64_t group = s.n_heads / s.n_kv_heads;

  // dk, dv: rows = keys, columns = queries
  for (int64_t bz = 0; bz < s.B; ++bz)
    for (int64_t by = 0; by < s.n_kv_heads; ++by)
      for (int64_t bx = 0; bx < fl::tile_count(s.L, BK); ++bx) {
        const fl::TileCoord t = fl::tile_coord(bx, by, bz, BK);
        const int keys = fl::tile_extent(t.row0, BK, s.L);
        const uint8_t* mask_row = mask ? mask + t.b * s.L : nullptr;
        load_tile(Ks, k.p + fl::row_offset(t.b, s.L, t.row0, k.ld, t.head, HD), k.ld, keys, 1.0f);
        load_tile(Vs, v.p + fl::row_offset(t.b, s.L, t.row0, v.ld, t.head, HD), v.ld, keys, 1.0f);
        for (int r = 0; r < BK; ++r) keep[r] = fl::key_valid(t.row0 + r, s.L, mask_row);
        for (int r = 0; r < BK; ++r)
          for (int n = 0; n < HD; ++n) dK[r][n] = dV[r][n] = 0.0f;
        for (int64_t h = t.head * group; h < (t.head + 1) * group; ++h)
          for (int64_t q0 = 0; q0 < s.L; q0 += BQ) {
            const int qrows = fl::tile_extent(q0, BQ, s.L);
            load_tile(Qs, q.p + fl::row_offset(t.b, s.L, q0, q.ld, h, HD), q.ld, qrows, scale);
            load_tile(dOs, dout.p + fl::row_offset(t.b, s.L, q0, dout.ld, h, HD), dout.ld, qrows, 1.0f);
            for (int c = 0; c < BQ; ++c) {
              lse_s[c] = c < qrows ? lse[(t.b * s.n_heads + h) * s.L + q0 + c] : -kInf;
              D_s[c] = c < qrows ? D[(t.b * s.n_heads + h) * s.L + q0 + c] : 0.0f;
            }
            for (int r = 0; r < BK; ++r)
              for (int c = 0; c < BQ; ++c) {
                const float p = fl::recompute_p(dot(Ks[r], Qs[c]), keep[r], lse_s[c]);
                const float ds = fl::grad_score(p, dot(Vs[r], dOs[c]), D_s[c]);
                for (int n = 0; n < HD; ++n) {
                  dV[r][n] = std::fma(p, dOs[c][n], dV[r][n]);
                  dK[r][n] = std::fma(ds, Qs[c][n], dK[r][n]);
                }
              }
          }
        for (int r = 0; r < keys; ++r) {
          float* dkr = dk.p + fl::row_offset(t.b, s.L, t.row0 + r, dk.ld, t.head, HD);
          float* dvr = dv.p + fl::row_offset(t.b, s.L, t.row0 + r, dv.ld, t.head, HD);
          for (int n = 0; n < HD; ++n) dkr[n] = dK[r][n], dvr[n] = dV[r][n];
        }
      }

  // dq: rows = queries, columns = keys
  for (int64_t bz = 0; bz < s.B; ++bz)
    for (int64_t by = 0; by < s.n_heads; ++by)
      for (int64_t bx = 0; bx < fl::tile_count(s.L, BQ); ++bx) {
        const fl::TileCoord t = fl::tile_coord(bx, by, bz, BQ);
        const int64_t g = fl::kv_head_of(t.head, s.n_heads, s.n_kv_heads);
        const int rows = fl::tile_extent(t.row0, BQ, s.L);
        const uint8_t* mask_row = mask ? mask + t.b * s.L : nullptr;
        load_tile(Qs, q.p + fl::row_offset(t.b, s.L, t.row0, q.ld, t.head, HD), q.ld, rows, scale);
        load_tile(dOs, dout.p + fl::row_offset(t.b, s.L, t.row0, dout.ld, t.head, HD), dout.ld, rows, 1.0f);
        for (int r = 0; r < BQ; ++r) {
          lse_s[r] = r < rows ? lse[(t.b * s.n_heads + t.head) * s.L + t.row0 + r] : -kInf;
          D_s[r] = r < rows ? D[(t.b * s.n_heads + t.head) * s.L + t.row0 + r] : 0.0f;
          for (int n = 0; n < HD; ++n) dQ[r][n] = 0.0f;
        }
        for (int64_t k0 = 0; k0 < s.L; k0 += BK) {
          const int keys = fl::tile_extent(k0, BK, s.L);
          load_tile(Ks, k.p + fl::row_offset(t.b, s.L, k0, k.ld, g, HD), k.ld, keys, 1.0f);
          load_tile(Vs, v.p + fl::row_offset(t.b, s.L, k0, v.ld, g, HD), v.ld, keys, 1.0f);
          for (int c = 0; c < BK; ++c) keep[c] = fl::key_valid(k0 + c, s.L, mask_row);
          for (int r = 0; r < BQ; ++r)
            for (int c = 0; c < BK; ++c) {
              const float p = fl::recompute_p(dot(Qs[r], Ks[c]), keep[c], lse_s[r]);
              const float ds = fl::grad_score(p, dot(dOs[r], Vs[c]), D_s[r]);
              for (int n = 0; n < HD; ++n) dQ[r][n] = std::fma(ds, Ks[c][n], dQ[r][n]);
            }
        }
        for (int r = 0; r < rows; ++r) {
          float* dqr = dq.p + fl::row_offset(t.b, s.L, t.row0 + r, dq.ld, t.head, HD);
          for (int n = 0; n < HD; ++n) dqr[n] = scale * dQ[r][n];
        }
      }
}

// max over elements of |got - want| / (1 + |want|); -inf must match -inf exactly; NaN anywhere -> +inf.
double worst_rel(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    double e;
    if (std::isinf(want[i]) || std::isinf(got[i]))
      e = got[i] == want[i] ? 0.0 : kInf;
    else
      e = std::fabs(double(got[i]) - want[i]) / (1.0 + std::fabs(double(want[i])));
    if (!(e <= worst)) worst = std::isnan(e) ? kInf : e;
  }
  return worst;
}

std::vector<float> cols(const std::vector<float>& src, int64_t N, int64_t ld, int64_t c0, int64_t w) {
  std::vector<float> d(N * w);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < w; ++c) d[n * w + c] = src[n * ld + c0 + c];
  return d;
}

enum class MaskKind { None, Random, RandomAllMaskedRow };

// Inputs as the model passes them: q, k, v column blocks of a fused [N, q | k | v] buffer.
struct Problem {
  AttnShape s;
  int64_t N, qw, kw, ld;
  std::vector<float> qkv, dout;
  std::vector<uint8_t> mask;  // empty = no mask
  Problem(AttnShape shape, MaskKind mk, uint32_t seed) : s(shape) {
    N = s.B * s.L, qw = s.n_heads * s.head_dim, kw = s.n_kv_heads * s.head_dim, ld = qw + 2 * kw;
    qkv = randn(N * ld, seed, 1.5f);
    dout = randn(N * qw, seed + 1000);
    if (mk != MaskKind::None) {
      const std::vector<float> u = randn(N, seed + 2000);
      mask.resize(N);
      for (int64_t i = 0; i < N; ++i) mask[i] = u[i] > -0.5f;  // ~70% of keys attendable
      if (mk == MaskKind::RandomAllMaskedRow)
        for (int64_t j = 0; j < s.L; ++j) mask[(s.B - 1) * s.L + j] = 0;
    }
  }
  const uint8_t* m() const { return mask.empty() ? nullptr : mask.data(); }
  Cols q() const { return {qkv.data(), ld}; }
  Cols k() const { return {qkv.data() + qw, ld}; }
  Cols v() const { return {qkv.data() + qw + kw, ld}; }
};

struct Result {
  std::vector<float> o, lse, dqkv;  // dqkv: fused like qkv
};

Result cpu_oracle(const Problem& P) {
  CpuBackend be(1);
  Result r;
  r.o.assign(P.N * P.s.n_heads * P.s.head_dim, 0.0f);
  r.lse.assign(P.s.B * P.s.n_heads * P.s.L, 0.0f);
  r.dqkv.assign(P.N * P.ld, 99.0f);
  const float* p = P.qkv.data();
  float* d = r.dqkv.data();
  const TensorView q = rows_view(p, P.N, P.qw, P.ld), k = rows_view(p + P.qw, P.N, P.kw, P.ld),
                   v = rows_view(p + P.qw + P.kw, P.N, P.kw, P.ld), o = TensorView::of(r.o.data(), {P.N, P.qw});
  be.attention_fwd(P.s, q, k, v, P.m(), o, r.lse.data());
  be.attention_bwd(P.s, q, k, v, P.m(), o, r.lse.data(), TensorView::of(P.dout.data(), {P.N, P.qw}),
                   rows_view(d, P.N, P.qw, P.ld), rows_view(d + P.qw, P.N, P.kw, P.ld),
                   rows_view(d + P.qw + P.kw, P.N, P.kw, P.ld));
  return r;
}

// The emulated forward, and the emulated backward fed the oracle's o and lse (so each is checked on its own).
template <int BQ, int BK, int HD>
Result emulate(const Problem& P, const Result& want) {
  Result r;
  r.o.assign(P.N * P.qw, 0.0f);
  r.lse.assign(P.s.B * P.s.n_heads * P.s.L, 0.0f);
  r.dqkv.assign(P.N * P.ld, 99.0f);
  emulate_fwd<BQ, BK, HD>(P.s, P.q(), P.k(), P.v(), P.m(), {r.o.data(), P.qw}, r.lse.data());
  float* d = r.dqkv.data();
  emulate_bwd<BQ, BK, HD>(P.s, P.q(), P.k(), P.v(), P.m(), {want.o.data(), P.qw}, want.lse.data(),
                          {P.dout.data(), P.qw}, {d, P.ld}, {d + P.qw, P.ld}, {d + P.qw + P.kw, P.ld});
  return r;
}

constexpr double kTol = 1e-5;  // fp32 with different summation orders: observed worst 2e-6 (dq)

template <int BQ, int BK, int HD>
void check_tiles(const Problem& P) {
  INFO("tiles BQ " << BQ << " BK " << BK << " hd " << HD << " | B " << P.s.B << " L " << P.s.L << " heads "
                   << P.s.n_heads << " kv " << P.s.n_kv_heads << " masked " << !P.mask.empty());
  const Result want = cpu_oracle(P);
  const Result got = emulate<BQ, BK, HD>(P, want);
  CHECK(worst_rel(got.o, want.o) <= kTol);
  CHECK(worst_rel(got.lse, want.lse) <= kTol);
  CHECK(worst_rel(cols(got.dqkv, P.N, P.ld, 0, P.qw), cols(want.dqkv, P.N, P.ld, 0, P.qw)) <= kTol);
  CHECK(worst_rel(cols(got.dqkv, P.N, P.ld, P.qw, P.kw), cols(want.dqkv, P.N, P.ld, P.qw, P.kw)) <= kTol);
  CHECK(worst_rel(cols(got.dqkv, P.N, P.ld, P.qw + P.kw, P.kw), cols(want.dqkv, P.N, P.ld, P.qw + P.kw, P.kw)) <=
        kTol);
  bool last_row_masked = !P.mask.empty();
  for (int64_t j = 0; j < P.s.L && last_row_masked; ++j) last_row_masked = !P.mask[(P.s.B - 1) * P.s.L + j];
  if (last_row_masked) {  // the last batch row attends nothing: o = 0, lse = -inf, no gradient (not NaN)
    for (int64_t i = (P.s.B - 1) * P.s.L * P.qw; i < P.N * P.qw; ++i) REQUIRE(got.o[i] == 0.0f);
    for (int64_t i = (P.s.B - 1) * P.s.n_heads * P.s.L; i < P.s.B * P.s.n_heads * P.s.L; ++i)
      REQUIRE(got.lse[i] == -kInf);
    for (int64_t i = (P.s.B - 1) * P.s.L * P.ld; i < P.N * P.ld; ++i) REQUIRE(got.dqkv[i] == 0.0f);
  }
}

template <int HD>
void check_all_tiles(const Problem& P) {
  check_tiles<4, 4, HD>(P);    // divides 32, not 7 or 33
  check_tiles<8, 16, HD>(P);   // BQ != BK
  check_tiles<16, 8, HD>(P);
  check_tiles<64, 32, HD>(P);  // the CUDA hd=128 forward's tile sizes; one tile covers small L
  check_tiles<3, 5, HD>(P);    // odd sizes: every L has a tail
}

}  // namespace

TEST_CASE("flash tile: bookkeeping splits rows into tiles with tails and maps GQA heads", "[flash]") {
  CHECK(fl::tile_count(1, 64) == 1);
  CHECK(fl::tile_count(64, 64) == 1);
  CHECK(fl::tile_count(65, 64) == 2);
  CHECK(fl::tile_count(300, 32) == 10);
  CHECK(fl::tile_extent(0, 64, 1) == 1);
  CHECK(fl::tile_extent(64, 64, 129) == 64);
  CHECK(fl::tile_extent(128, 64, 129) == 1);
  const fl::TileCoord t = fl::tile_coord(3, 5, 2, 32);
  CHECK((t.b == 2 && t.head == 5 && t.row0 == 96));
  for (int64_t h = 0; h < 12; ++h) CHECK(fl::kv_head_of(h, 12, 2) == h / 6);
  for (int64_t h = 0; h < 8; ++h) CHECK(fl::kv_head_of(h, 8, 1) == 0);
  CHECK(fl::row_offset(1, 7, 3, 100, 2, 16) == (7 + 3) * 100 + 32);
  const uint8_t mask[3] = {1, 0, 1};
  CHECK(fl::key_valid(0, 3, mask));
  CHECK_FALSE(fl::key_valid(1, 3, mask));
  CHECK_FALSE(fl::key_valid(3, 3, mask));  // past the end of a tail tile
  CHECK(fl::key_valid(2, 3, nullptr));
  CHECK_FALSE(fl::key_valid(3, 3, nullptr));
  // shared memory of every CUDA kernel fits an sm_80 block (163 KB opt-in), let alone sm_90 (227 KB)
  CHECK(fl::fwd_smem_floats(128, fl::Tiles<128>::kFwdQ, fl::Tiles<128>::kFwdK) * 4 <= 163 * 1024);
  CHECK(fl::dkdv_smem_floats(128, fl::Tiles<128>::kDkvQ, fl::Tiles<128>::kDkvK) * 4 <= 163 * 1024);
  CHECK(fl::dq_smem_floats(128, fl::Tiles<128>::kDqQ, fl::Tiles<128>::kDqK) * 4 <= 163 * 1024);
}

TEST_CASE("flash tile: online softmax over key tiles equals one softmax and all-masked rows give zeros", "[flash]") {
  // scores of one row split into tiles of 3: the running (m, l, acc) must equal softmax(s) . v in one go
  const float sc[7] = {0.3f, -1.2f, 2.5f, 0.0f, 4.0f, -3.0f, 1.0f};
  const bool kp[7] = {true, true, false, true, true, true, false};  // keys 2 and 6 masked
  const float v[7] = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f, 7.0f};
  double z = 0, ov = 0, mx = -1e300;
  for (int j = 0; j < 7; ++j)
    if (kp[j]) mx = std::max(mx, double(sc[j]));
  for (int j = 0; j < 7; ++j)
    if (kp[j]) z += std::exp(sc[j] - mx), ov += std::exp(sc[j] - mx) * v[j];
  float m = -kInf, l = 0.0f, acc[1] = {0.0f};
  for (int t0 = 0; t0 < 7; t0 += 3) {
    float s[3];
    bool keep[3];
    for (int j = 0; j < 3; ++j) s[j] = t0 + j < 7 ? sc[t0 + j] : 0.0f, keep[j] = t0 + j < 7 && kp[t0 + j];
    fl::online_softmax_update(s, keep, m, l, acc, fl::RowLocal{});
    for (int j = 0; j < 3; ++j) acc[0] += s[j] * (t0 + j < 7 ? v[t0 + j] : 0.0f);
  }
  const float lse = fl::finalize_row(m, l, acc);
  CHECK(std::fabs(acc[0] - ov / z) <= 1e-6 * ov / z);
  CHECK(std::fabs(lse - (mx + std::log(z))) <= 1e-6);
  CHECK(fl::recompute_p(2.5f, true, lse) == Approx(std::exp(2.5 - mx) / z).epsilon(1e-6));

  // every key excluded in every tile: no NaN, o = 0, lse = -inf; backward: P = 0, dS = 0
  float m2 = -kInf, l2 = 0.0f, acc2[2] = {0.0f, 0.0f};
  for (int t0 = 0; t0 < 2; ++t0) {
    float s[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    const bool keep[4] = {false, false, false, false};
    fl::online_softmax_update(s, keep, m2, l2, acc2, fl::RowLocal{});
    for (float p : s) REQUIRE(p == 0.0f);
  }
  CHECK(fl::finalize_row(m2, l2, acc2) == -kInf);
  CHECK((acc2[0] == 0.0f && acc2[1] == 0.0f));
  CHECK(fl::recompute_p(3.0f, true, -kInf) == 0.0f);
  CHECK(fl::recompute_p(3.0f, false, 0.5f) == 0.0f);
  CHECK(fl::grad_score(0.0f, 5.0f, 2.0f) == 0.0f);
  CHECK(fl::grad_score(0.5f, 3.0f, 1.0f) == 1.0f);
}

TEST_CASE("flash tile: tiled forward and backward emulation matches CpuBackend with GQA masks and tails", "[flash]") {
  // (B, L, heads, kv heads): MHA, GQA 2 and 3, MQA 4; L = 1, 7, 32, 33
  const AttnShape shapes[] = {{2, 7, 4, 2, 16}, {3, 33, 3, 1, 16}, {1, 1, 4, 1, 16}, {2, 32, 2, 2, 16}};
  uint32_t seed = 1;
  for (const AttnShape& s : shapes)
    for (MaskKind mk : {MaskKind::None, MaskKind::Random, MaskKind::RandomAllMaskedRow})
      check_all_tiles<16>(Problem(s, mk, seed++));
  // a second head_dim: the functions are templated on the per-thread widths, not on hd
  check_all_tiles<8>(Problem(AttnShape{2, 9, 6, 2, 8}, MaskKind::RandomAllMaskedRow, 77));
}

TEST_CASE("flash tile: the emulation check fails on a wrong mask or a perturbed output", "[flash]") {
  // the comparison above is able to fail: ignoring the mask, or one element off by 1e-4, is caught
  const Problem P(AttnShape{2, 7, 4, 2, 16}, MaskKind::Random, 5);
  const Result want = cpu_oracle(P);
  Problem unmasked = P;
  unmasked.mask.clear();
  const Result wrong = emulate<4, 4, 16>(unmasked, want);
  CHECK(worst_rel(wrong.o, want.o) > 1e-2);
  Result got = emulate<4, 4, 16>(P, want);
  REQUIRE(worst_rel(got.o, want.o) <= kTol);
  got.o[17] += 1e-4f * (1.0f + std::fabs(got.o[17]));
  CHECK(worst_rel(got.o, want.o) > kTol);
}
