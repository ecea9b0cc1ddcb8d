// mma_frag.h (the lane <-> element maps of mma.m16n8k16 and ldmatrix that the tensor-core attention kernels use)
// on the CPU: entries of the PTX ISA fragment figures, each map a bijection, ldmatrix emulated from the address
// maps against the operand fragments, one warp's S = Q K^T and O = P V (P the reused C fragments) emulated lane
// by lane against plain matrix products, the quad row reduction, and the shared-memory layout of flash_tile.h's
// TcTiles (16-byte rows, conflict-free ldmatrix phases, smem within the sm_80 limit); and the four tensor-core
// attention kernels transcribed lane by lane against a double reference with the [tc] GPU tests' tolerances.
#include <catch2/catch.hpp>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <set>
#include <utility>
#include <vector>

#include "cgrpo/backend/flash_tile.h"
#include "cgrpo/backend/mma_frag.h"
#include "cgrpo/core/dtype.h"

using namespace cgrpo;
using mma::RowCol;

namespace {

bool same(RowCol a, RowCol b) { return a.row == b.row && a.col == b.col; }

// Registers of one warp: [lane][register][half] for the bf16 operands, [lane][register] for C.
using AFrag = std::array<std::array<std::array<float, 2>, 4>, 32>;
using BFrag = std::array<std::array<std::array<float, 2>, 2>, 32>;
using CFrag = std::array<std::array<float, 4>, 32>;

// ldmatrix.x4 on a row-major tile (row stride ld) at element (r0, c0): lane 8i + j supplies row j of matrix i at
// (r0, c0) + addr(8i + j); register i half h of every lane receives element ldsm_elem of matrix i.
template <class Addr>
AFrag ldsm(const std::vector<float>& tile, int ld, int r0, int c0, Addr addr, bool trans) {
  AFrag out{};
  for (int lane = 0; lane < 32; ++lane)
    for (int i = 0; i < 4; ++i)
      for (int h = 0; h < 2; ++h) {
        const RowCol e = mma::ldsm_elem(lane, h, trans);
        const RowCol src = addr(8 * i + e.row);
        out[lane][i][h] = tile[(r0 + src.row) * ld + c0 + src.col + e.col];
      }
  return out;
}
// Registers {2 n, 2 n + 1} of an ldmatrix.x4 result as the B operand of n-tile n.
BFrag b_half(const AFrag& x, int n) {
  BFrag b{};
  for (int lane = 0; lane < 32; ++lane)
    for (int r = 0; r < 2; ++r) b[lane][r] = x[lane][2 * n + r];
  return b;
}

// The tensor core: D = A B + C over the matrices the fragment maps say the registers hold.
void mma_emulate(CFrag& c, const AFrag& a, const BFrag& b) {
  float A[16][16], B[16][8];
  for (int lane = 0; lane < 32; ++lane)
    for (int h = 0; h < 2; ++h) {
      for (int r = 0; r < 4; ++r) {
        const RowCol e = mma::a_elem(lane, r, h);
        A[e.row][e.col] = a[lane][r][h];
      }
      for (int r = 0; r < 2; ++r) {
        const RowCol e = mma::b_elem(lane, r, h);
        B[e.row][e.col] = b[lane][r][h];
      }
    }
  for (int lane = 0; lane < 32; ++lane)
    for (int i = 0; i < 4; ++i) {
      const RowCol e = mma::c_elem(lane, i);
      for (int k = 0; k < 16; ++k) c[lane][i] += A[e.row][k] * B[k][e.col];
    }
}

// Small integers: every product and sum below is exact in float, so the emulation must match bit for bit.
std::vector<float> ints(int n, int seed) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) v[i] = static_cast<float>((i * 7 + seed * 13 + (i / 5) * 3) % 7 - 3);
  return v;
}

}  // namespace

TEST_CASE("mma_frag: the maps reproduce entries of the PTX m16n8k16 and ldmatrix figures", "[unit][mma]") {
  // C (f32 16x8): lane 0 c0..c3 = (0,0) (0,1) (8,0) (8,1); lane 5 (group 1, quad index 1) c0 = (1,2), c3 = (9,3)
  CHECK(same(mma::c_elem(0, 0), {0, 0}));
  CHECK(same(mma::c_elem(0, 1), {0, 1}));
  CHECK(same(mma::c_elem(0, 2), {8, 0}));
  CHECK(same(mma::c_elem(0, 3), {8, 1}));
  CHECK(same(mma::c_elem(5, 0), {1, 2}));
  CHECK(same(mma::c_elem(5, 3), {9, 3}));
  CHECK(same(mma::c_elem(31, 3), {15, 7}));
  // A (bf16 16x16): a0 rows 0-7 k 0-7, a1 rows 8-15 k 0-7, a2 rows 0-7 k 8-15, a3 rows 8-15 k 8-15
  CHECK(same(mma::a_elem(0, 0, 0), {0, 0}));
  CHECK(same(mma::a_elem(0, 0, 1), {0, 1}));
  CHECK(same(mma::a_elem(0, 1, 0), {8, 0}));
  CHECK(same(mma::a_elem(0, 2, 0), {0, 8}));
  CHECK(same(mma::a_elem(0, 3, 1), {8, 9}));
  CHECK(same(mma::a_elem(6, 2, 1), {1, 13}));
  CHECK(same(mma::a_elem(31, 3, 1), {15, 15}));
  // B (bf16 16x8, k x n): b0 k 0-7, b1 k 8-15, column n = group
  CHECK(same(mma::b_elem(0, 0, 0), {0, 0}));
  CHECK(same(mma::b_elem(0, 1, 1), {9, 0}));
  CHECK(same(mma::b_elem(6, 0, 1), {5, 1}));
  CHECK(same(mma::b_elem(31, 1, 1), {15, 7}));
  // ldmatrix: lane l holds row l/4, columns 2(l%4), +1; .trans the transpose
  CHECK(same(mma::ldsm_elem(5, 0, false), {1, 2}));
  CHECK(same(mma::ldsm_elem(5, 1, false), {1, 3}));
  CHECK(same(mma::ldsm_elem(5, 1, true), {3, 1}));
  CHECK(same(mma::ldsm_elem(31, 0, true), {6, 7}));
}

TEST_CASE("mma_frag: every fragment map covers its tile exactly once", "[unit][mma]") {
  std::set<std::pair<int, int>> a, b, c, l, lt;
  for (int lane = 0; lane < 32; ++lane)
    for (int h = 0; h < 2; ++h) {
      for (int r = 0; r < 4; ++r) a.insert({mma::a_elem(lane, r, h).row, mma::a_elem(lane, r, h).col});
      for (int r = 0; r < 2; ++r) b.insert({mma::b_elem(lane, r, h).row, mma::b_elem(lane, r, h).col});
      c.insert({mma::c_elem(lane, 2 * h).row, mma::c_elem(lane, 2 * h).col});
      c.insert({mma::c_elem(lane, 2 * h + 1).row, mma::c_elem(lane, 2 * h + 1).col});
      l.insert({mma::ldsm_elem(lane, h, false).row, mma::ldsm_elem(lane, h, false).col});
      lt.insert({mma::ldsm_elem(lane, h, true).row, mma::ldsm_elem(lane, h, true).col});
    }
  CHECK(a.size() == 256);  // 16 x 16 from 32 lanes x 8 halves
  CHECK(b.size() == 128);  // 16 x 8
  CHECK(c.size() == 128);
  CHECK(l.size() == 64);   // 8 x 8
  CHECK(lt.size() == 64);
  for (const auto& [r, col] : a) CHECK((r < 16 && col < 16));
  for (const auto& [r, col] : b) CHECK((r < 16 && col < 8));
  for (const auto& [r, col] : c) CHECK((r < 16 && col < 8));
}

TEST_CASE("mma_frag: ldmatrix through the address maps yields the A and B fragments", "[unit][mma]") {
  constexpr int ld = 40;  // a padded row-major tile, operand block at (r0, c0)
  const std::vector<float> tile = ints(32 * ld, 1);
  const int r0 = 16, c0 = 8;
  // A: [m][k] tile, plain
  const AFrag a = ldsm(tile, ld, r0, c0, mma::ldsm_a_addr, false);
  for (int lane = 0; lane < 32; ++lane)
    for (int r = 0; r < 4; ++r)
      for (int h = 0; h < 2; ++h) {
        const RowCol e = mma::a_elem(lane, r, h);
        REQUIRE(a[lane][r][h] == tile[(r0 + e.row) * ld + c0 + e.col]);
      }
  // B of two n-tiles from a [n][k] tile, plain: B[k][n] = tile[n][k]
  const AFrag bn = ldsm(tile, ld, r0, c0, mma::ldsm_b_addr, false);
  for (int nt = 0; nt < 2; ++nt) {
    const BFrag b = b_half(bn, nt);
    for (int lane = 0; lane < 32; ++lane)
      for (int r = 0; r < 2; ++r)
        for (int h = 0; h < 2; ++h) {
          const RowCol e = mma::b_elem(lane, r, h);  // (k, n)
          REQUIRE(b[lane][r][h] == tile[(r0 + 8 * nt + e.col) * ld + c0 + e.row]);
        }
  }
  // B of two n-tiles from a [k][n] tile, .trans: B[k][n] = tile[k][n]
  const AFrag bk = ldsm(tile, ld, r0, c0, mma::ldsm_bt_addr, true);
  for (int nt = 0; nt < 2; ++nt) {
    const BFrag b = b_half(bk, nt);
    for (int lane = 0; lane < 32; ++lane)
      for (int r = 0; r < 2; ++r)
        for (int h = 0; h < 2; ++h) {
          const RowCol e = mma::b_elem(lane, r, h);
          REQUIRE(b[lane][r][h] == tile[(r0 + e.row) * ld + c0 + 8 * nt + e.col]);
        }
  }
}

TEST_CASE("mma_frag: C fragments of two n-tiles are the A fragment of their 16 columns", "[unit][mma]") {
  for (int lane = 0; lane < 32; ++lane)
    for (int r = 0; r < 4; ++r)
      for (int h = 0; h < 2; ++h) {
        const mma::CToA x = mma::c_to_a(r, h);
        const RowCol c = mma::c_elem(lane, x.c_index), a = mma::a_elem(lane, r, h);
        REQUIRE(c.row == a.row);
        REQUIRE(8 * x.c_tile + c.col == a.col);
      }
}

TEST_CASE("mma_frag: one warp's S = Q K^T and O = P V emulated lane by lane equal the matrix products",
          "[unit][mma]") {
  // The kernels' loops (cuda_ops_attention_tc.cu warp_abt, to_a_frags, warp_pb) on a 16-row warp tile:
  // Q [16][HD], K [BK][HD] (both [row][k], plain ldmatrix), V [BK][HD] ([k][n], .trans), row stride tc_ld(HD).
  constexpr int HD = 32, BK = 32, LD = flash::tc_ld(HD), NT = BK / 8, NO = HD / 8;
  const std::vector<float> Q = ints(16 * LD, 2), K = ints(BK * LD, 3), V = ints(BK * LD, 4);

  std::vector<CFrag> s(NT, CFrag{});
  for (int kk = 0; kk < HD; kk += 16) {
    const AFrag a = ldsm(Q, LD, 0, kk, mma::ldsm_a_addr, false);
    for (int n = 0; n < NT; n += 2) {
      const AFrag b = ldsm(K, LD, n * 8, kk, mma::ldsm_b_addr, false);
      mma_emulate(s[n], a, b_half(b, 0));
      mma_emulate(s[n + 1], a, b_half(b, 1));
    }
  }
  float S[16][BK] = {};
  for (int n = 0; n < NT; ++n)
    for (int lane = 0; lane < 32; ++lane)
      for (int i = 0; i < 4; ++i) {
        const RowCol e = mma::c_elem(lane, i);
        S[e.row][n * 8 + e.col] = s[n][lane][i];
      }
  for (int r = 0; r < 16; ++r)
    for (int j = 0; j < BK; ++j) {
      float want = 0;
      for (int d = 0; d < HD; ++d) want += Q[r * LD + d] * K[j * LD + d];
      REQUIRE(S[r][j] == want);
    }

  // P = S (the C fragments reused as A fragments, k = key), O = P V
  std::vector<CFrag> o(NO, CFrag{});
  for (int j = 0; j < NT / 2; ++j) {
    AFrag p{};
    for (int lane = 0; lane < 32; ++lane)
      for (int r = 0; r < 4; ++r)
        for (int h = 0; h < 2; ++h) {
          const mma::CToA x = mma::c_to_a(r, h);
          p[lane][r][h] = s[2 * j + x.c_tile][lane][x.c_index];
        }
    for (int n = 0; n < NO; n += 2) {
      const AFrag b = ldsm(V, LD, j * 16, n * 8, mma::ldsm_bt_addr, true);
      mma_emulate(o[n], p, b_half(b, 0));
      mma_emulate(o[n + 1], p, b_half(b, 1));
    }
  }
  for (int n = 0; n < NO; ++n)
    for (int lane = 0; lane < 32; ++lane)
      for (int i = 0; i < 4; ++i) {
        const RowCol e = mma::c_elem(lane, i);
        float want = 0;
        for (int j = 0; j < BK; ++j) want += S[e.row][j] * V[j * LD + n * 8 + e.col];
        REQUIRE(o[n][lane][i] == want);
      }
}

TEST_CASE("mma_frag: the quad butterfly gives every lane the max and sum of its C rows", "[unit][mma]") {
  // one 16x8 C tile with distinct values; each lane first reduces its own two columns of row half r
  float C[16][8];
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 8; ++c) C[r][c] = static_cast<float>((r * 37 + c * 11) % 101);
  for (int half = 0; half < 2; ++half) {
    std::array<float, 32> mx{}, sm{};
    for (int lane = 0; lane < 32; ++lane) {
      const RowCol e0 = mma::c_elem(lane, 2 * half), e1 = mma::c_elem(lane, 2 * half + 1);
      REQUIRE(e0.row == e1.row);
      mx[lane] = std::max(C[e0.row][e0.col], C[e1.row][e1.col]);
      sm[lane] = C[e0.row][e0.col] + C[e1.row][e1.col];
    }
    for (int step = 0; step < mma::kQuadSteps; ++step) {  // __shfl_xor_sync(v, quad_xor(step)), all lanes at once
      const std::array<float, 32> m0 = mx, s0 = sm;
      for (int lane = 0; lane < 32; ++lane) {
        mx[lane] = std::max(m0[lane], m0[lane ^ mma::quad_xor(step)]);
        sm[lane] = s0[lane] + s0[lane ^ mma::quad_xor(step)];
      }
    }
    for (int lane = 0; lane < 32; ++lane) {
      const int row = mma::c_elem(lane, 2 * half).row;
      float want_max = C[row][0], want_sum = 0;
      for (int c = 0; c < 8; ++c) want_max = std::max(want_max, C[row][c]), want_sum += C[row][c];
      REQUIRE(mx[lane] == want_max);
      REQUIRE(sm[lane] == want_sum);
    }
  }
}

namespace {
// The 8 row addresses of each ldmatrix matrix (lanes 8i..8i+7) for an operand block at (r0, c0) of a bf16 tile
// with row stride ld: 16-byte aligned, and their 16-byte rows on 8 distinct 4-bank groups (one wavefront).
template <class Addr>
void check_ldsm_phases(int ld, int r0, int c0, Addr addr) {
  for (int i = 0; i < 4; ++i) {
    std::set<int> groups;
    for (int j = 0; j < 8; ++j) {
      const RowCol p = addr(8 * i + j);
      const int byte = ((r0 + p.row) * ld + c0 + p.col) * 2;
      REQUIRE(byte % 16 == 0);
      groups.insert((byte / 16) % 8);  // 32 banks of 4 bytes = 8 groups of 16 bytes
    }
    REQUIRE(groups.size() == 8);
  }
}
template <int HD>
void check_tiles() {
  using T = flash::TcTiles<HD>;
  const int ld = flash::tc_ld(HD);
  for (int r0 : {0, 16, 48})
    for (int c0 = 0; c0 < HD; c0 += 16) {
      check_ldsm_phases(ld, r0, c0, mma::ldsm_a_addr);
      check_ldsm_phases(ld, r0, c0, mma::ldsm_b_addr);
      check_ldsm_phases(ld, r0, c0, mma::ldsm_bt_addr);
    }
  // the streamed tiles are whole k16 steps and n-tile pairs; smem fits sm_80's 163 KB opt-in limit
  CHECK(T::kFwdK % 16 == 0);
  CHECK(T::kDkvQ % 16 == 0);
  CHECK(T::kDqK % 16 == 0);
  CHECK(flash::tc_fwd_smem_bytes(HD, T::kFwdK) <= 163 * 1024);
  CHECK(flash::tc_dkdv_smem_bytes(HD, T::kDkvQ) <= 163 * 1024);
  CHECK(flash::tc_dq_smem_bytes(HD, T::kDqK) <= 163 * 1024);
  // fwd Q + 2 stages of K and V at hd 128: (64 + 4 * 64) rows of 136 bf16 + 2 * 64 keep flags
  if (HD == 128) CHECK(flash::tc_fwd_smem_bytes(HD, T::kFwdK) == (64 + 256) * 136 * 2 + 512);
}
}  // namespace

TEST_CASE("mma_frag: TcTiles shared layouts give aligned, conflict-free ldmatrix phases", "[unit][mma]") {
  check_tiles<32>();
  check_tiles<64>();
  check_tiles<128>();
}

// ------------------------------------------------------------------------------------------ kernels emulated
// fwd_kernel, prep_kernel, dkdv_kernel and dq_kernel of cuda_ops_attention_tc.cu transcribed lane by lane (one warp
// at a time, the shared tiles as padded row-major float arrays of bf16 values, ldmatrix and mma through the maps
// above, P and dS rounded to bf16 as A operands, dO rounded in prep, the softmax in the log2 domain), against a
// double reference, with the metric of the [tc] GPU cases (tests/gpu/test_gpu_attention.cpp run_tc_case: per
// (row, head) scale = max |want|; o: 2^-7 scale + 1 bf16 ulp; dq, dk, dv: 2^-7 scale + 1e-4 on a dout of bf16
// values). The transcription is not the kernels' code, so this pins the numerics of their design (which tolerance
// a correct kernel meets), not the kernels themselves: at L = 1 dq and dk are pure fp32 noise (dS = P (dP - D) = 0
// exactly), which only the absolute 1e-4 admits.
namespace {

float rb(float x) { return bf16_to_f32(f32_to_bf16(x)); }

struct EmuProblem {
  int64_t B, L, H, KV;
  std::vector<float> q, k, v, dout;  // bf16 values; q [B*L, H*hd], k, v [B*L, KV*hd], dout [B*L, H*hd]
  std::vector<uint8_t> mask;         // [B, L] or empty
};
struct EmuResult {
  std::vector<float> o, lse, dq, dk, dv;
};

// rows [0, valid) of g (row r at g0 + r * ld) into the first `rows` rows of a [rows][LD] tile, zeros past valid
void emu_tile(std::vector<float>& s, int rows, int hd, int LD, const std::vector<float>& g, int64_t g0, int64_t ld,
              int valid) {
  s.assign(static_cast<size_t>(rows) * LD, 0.0f);
  for (int r = 0; r < valid; ++r)
    for (int c = 0; c < hd; ++c) s[r * LD + c] = g[g0 + r * ld + c];
}
// warp_abt: acc[n] += A B^T, A rows [a0, a0 + 16) of a [m][KD] tile, B^T from a [n][KD] tile
template <int NT, int KD, int LD>
void emu_abt(std::vector<CFrag>& acc, const std::vector<float>& A, int a0, const std::vector<float>& Bn) {
  for (int kk = 0; kk < KD; kk += 16) {
    const AFrag a = ldsm(A, LD, a0, kk, mma::ldsm_a_addr, false);
    for (int n = 0; n < NT; n += 2) {
      const AFrag b = ldsm(Bn, LD, n * 8, kk, mma::ldsm_b_addr, false);
      mma_emulate(acc[n], a, b_half(b, 0));
      mma_emulate(acc[n + 1], a, b_half(b, 1));
    }
  }
}
// to_a_frags + warp_pb: acc[n] += bf16(C) B, B a [KP][n] tile (.trans)
template <int NO, int KP, int LD>
void emu_pb(std::vector<CFrag>& acc, const std::vector<CFrag>& c, const std::vector<float>& Bk) {
  for (int j = 0; j < KP / 16; ++j) {
    AFrag p{};
    for (int lane = 0; lane < 32; ++lane)
      for (int r = 0; r < 4; ++r)
        for (int h = 0; h < 2; ++h) {
          const mma::CToA x = mma::c_to_a(r, h);
          p[lane][r][h] = rb(c[2 * j + x.c_tile][lane][x.c_index]);
        }
    for (int n = 0; n < NO; n += 2) {
      const AFrag b = ldsm(Bk, LD, j * 16, n * 8, mma::ldsm_bt_addr, true);
      mma_emulate(acc[n], p, b_half(b, 0));
      mma_emulate(acc[n + 1], p, b_half(b, 1));
    }
  }
}
// the quad butterfly (quad_max / quad_sum) over one value per lane
template <class F>
std::array<float, 32> emu_quad(std::array<float, 32> v, F f) {
  for (int step = 0; step < mma::kQuadSteps; ++step) {
    const std::array<float, 32> u = v;
    for (int lane = 0; lane < 32; ++lane) v[lane] = f(u[lane], u[lane ^ mma::quad_xor(step)]);
  }
  return v;
}

constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

template <int HD>
EmuResult emulate_tc(const EmuProblem& P) {
  constexpr int LD = flash::tc_ld(HD), NO = HD / 8, R = flash::kTcRows;
  const float scale = static_cast<float>(1.0 / std::sqrt(double(HD))), sl2 = scale * kLog2e;
  const int64_t L = P.L, H = P.H, KV = P.KV, group = H / KV, ldq = H * HD, ldk = KV * HD;
  auto mask_row = [&](int64_t b) { return P.mask.empty() ? nullptr : P.mask.data() + b * L; };
  EmuResult out;
  out.o.assign(P.B * L * ldq, 77.0f), out.lse.assign(P.B * H * L, 5.0f);
  out.dq.assign(P.B * L * ldq, 99.0f), out.dk.assign(P.B * L * ldk, 99.0f), out.dv.assign(P.B * L * ldk, 99.0f);
  std::vector<float> Qs, Ks, Vs, dOs;
  // fwd_kernel
  constexpr int BK = flash::TcTiles<HD>::kFwdK, NTF = BK / 8;
  for (int64_t b = 0; b < P.B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t row0 = 0; row0 < L; row0 += R) {
        const int64_t g = flash::kv_head_of(h, H, KV);
        const int rows = flash::tile_extent(row0, R, L);
        emu_tile(Qs, R, HD, LD, P.q, flash::row_offset(b, L, row0, ldq, h, HD), ldq, rows);
        for (int warp = 0; warp < 4; ++warp) {
          std::vector<CFrag> o(NO, CFrag{});
          std::array<std::array<float, 2>, 32> m, l;
          for (int x = 0; x < 32; ++x) m[x] = {-INFINITY, -INFINITY}, l[x] = {0.0f, 0.0f};
          for (int64_t k0 = 0; k0 < L; k0 += BK) {
            const int keys = flash::tile_extent(k0, BK, L);
            emu_tile(Ks, BK, HD, LD, P.k, flash::row_offset(b, L, k0, ldk, g, HD), ldk, keys);
            emu_tile(Vs, BK, HD, LD, P.v, flash::row_offset(b, L, k0, ldk, g, HD), ldk, keys);
            std::vector<CFrag> s(NTF, CFrag{});
            emu_abt<NTF, HD, LD>(s, Qs, warp * 16, Ks);
            std::array<float, 32> mt[2];
            for (int x = 0; x < 32; ++x) {
              mt[0][x] = mt[1][x] = -INFINITY;
              for (int n = 0; n < NTF; ++n)
                for (int i = 0; i < 4; ++i) {
                  float& e = s[n][x][i];
                  e = flash::key_valid(k0 + n * 8 + mma::c_elem(x, i).col, L, mask_row(b)) ? e * sl2 : -INFINITY;
                  mt[i >> 1][x] = std::max(mt[i >> 1][x], e);
                }
            }
            float alpha[32][2];
            for (int r = 0; r < 2; ++r) {
              const std::array<float, 32> qm = emu_quad(mt[r], [](float a, float c) { return std::max(a, c); });
              for (int x = 0; x < 32; ++x) {
                const float m_new = std::max(m[x][r], qm[x]);
                alpha[x][r] = m_new == -INFINITY ? 1.0f : std::exp2(m[x][r] - m_new);
                m[x][r] = m_new;
                l[x][r] *= alpha[x][r];
              }
            }
            for (int x = 0; x < 32; ++x) {
              for (int n = 0; n < NTF; ++n)
                for (int i = 0; i < 4; ++i) {
                  float& e = s[n][x][i];
                  e = m[x][i >> 1] == -INFINITY ? 0.0f : std::exp2(e - m[x][i >> 1]);
                  l[x][i >> 1] += e;
                }
              for (int n = 0; n < NO; ++n)
                for (int i = 0; i < 4; ++i) o[n][x][i] *= alpha[x][i >> 1];
            }
            emu_pb<NO, BK, LD>(o, s, Vs);
          }
          for (int r = 0; r < 2; ++r) {
            std::array<float, 32> lr;
            for (int x = 0; x < 32; ++x) lr[x] = l[x][r];
            const std::array<float, 32> lsum = emu_quad(lr, [](float a, float c) { return a + c; });
            for (int x = 0; x < 32; ++x) {
              const RowCol e = mma::c_elem(x, 2 * r);
              const int row = warp * 16 + e.row;
              const bool none = m[x][r] == -INFINITY;
              const float inv = none ? 0.0f : 1.0f / lsum[x];
              if (row >= rows) continue;
              const int64_t orow = flash::row_offset(b, L, row0 + row, ldq, h, HD);
              for (int n = 0; n < NO; ++n)
                for (int c = 0; c < 2; ++c) out.o[orow + n * 8 + e.col + c] = rb(o[n][x][2 * r + c] * inv);
              out.lse[(b * H + h) * L + row0 + row] = none ? -INFINITY : m[x][r] * kLn2 + std::log(lsum[x]);
            }
          }
        }
      }
  // prep_kernel: dob = bf16(dO), D = sum dob o (lane-strided fma, xor butterfly)
  std::vector<float> D(P.B * H * L), dob(P.dout.size());
  for (int64_t b = 0; b < P.B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < L; ++i) {
        const int64_t r0 = flash::row_offset(b, L, i, ldq, h, HD);
        std::array<float, 32> acc{};
        for (int lane = 0; lane < 32; ++lane)
          for (int j = 0; j < HD / 32; ++j) {
            const int64_t d = r0 + lane + 32 * j;
            dob[d] = rb(P.dout[d]);
            acc[lane] = std::fma(dob[d], out.o[d], acc[lane]);
          }
        for (int off = 16; off > 0; off >>= 1) {
          const std::array<float, 32> u = acc;
          for (int lane = 0; lane < 32; ++lane) acc[lane] = u[lane] + u[lane ^ off];
        }
        D[(b * H + h) * L + i] = acc[0];
      }
  // dkdv_kernel
  constexpr int BQ = flash::TcTiles<HD>::kDkvQ, NTK = BQ / 8;
  for (int64_t b = 0; b < P.B; ++b)
    for (int64_t g = 0; g < KV; ++g)
      for (int64_t row0 = 0; row0 < L; row0 += R) {
        const int keys = flash::tile_extent(row0, R, L);
        std::vector<float> Kf, Vf;
        emu_tile(Kf, R, HD, LD, P.k, flash::row_offset(b, L, row0, ldk, g, HD), ldk, keys);
        emu_tile(Vf, R, HD, LD, P.v, flash::row_offset(b, L, row0, ldk, g, HD), ldk, keys);
        for (int warp = 0; warp < 4; ++warp) {
          std::vector<CFrag> dk(NO, CFrag{}), dv(NO, CFrag{});
          for (int64_t h = g * group; h < (g + 1) * group; ++h)
            for (int64_t q0 = 0; q0 < L; q0 += BQ) {
              const int qrows = flash::tile_extent(q0, BQ, L);
              emu_tile(Qs, BQ, HD, LD, P.q, flash::row_offset(b, L, q0, ldq, h, HD), ldq, qrows);
              emu_tile(dOs, BQ, HD, LD, dob, flash::row_offset(b, L, q0, ldq, h, HD), ldq, qrows);
              std::vector<CFrag> s(NTK, CFrag{}), dp(NTK, CFrag{});
              emu_abt<NTK, HD, LD>(s, Kf, warp * 16, Qs);
              emu_abt<NTK, HD, LD>(dp, Vf, warp * 16, dOs);
              for (int x = 0; x < 32; ++x)
                for (int n = 0; n < NTK; ++n)
                  for (int i = 0; i < 4; ++i) {
                    const int c = n * 8 + mma::c_elem(x, i).col;
                    const bool keep = flash::key_valid(row0 + warp * 16 + mma::c_elem(x, i).row, L, mask_row(b));
                    const float lse2 = c < qrows ? out.lse[(b * H + h) * L + q0 + c] * kLog2e : -INFINITY;
                    const float Dc = c < qrows ? D[(b * H + h) * L + q0 + c] : 0.0f;
                    s[n][x][i] = keep && lse2 != -INFINITY ? std::exp2(s[n][x][i] * sl2 - lse2) : 0.0f;
                    dp[n][x][i] = flash::grad_score(s[n][x][i], dp[n][x][i], Dc);
                  }
              emu_pb<NO, BQ, LD>(dv, s, dOs);
              emu_pb<NO, BQ, LD>(dk, dp, Qs);
            }
          for (int x = 0; x < 32; ++x)
            for (int r = 0; r < 2; ++r) {
              const RowCol e = mma::c_elem(x, 2 * r);
              const int row = warp * 16 + e.row;
              if (row >= keys) continue;
              const int64_t off = flash::row_offset(b, L, row0 + row, ldk, g, HD);
              for (int n = 0; n < NO; ++n)
                for (int c = 0; c < 2; ++c) {
                  out.dk[off + n * 8 + e.col + c] = dk[n][x][2 * r + c] * scale;
                  out.dv[off + n * 8 + e.col + c] = dv[n][x][2 * r + c];
                }
            }
        }
      }
  // dq_kernel
  constexpr int BKQ = flash::TcTiles<HD>::kDqK, NTQ = BKQ / 8;
  for (int64_t b = 0; b < P.B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t row0 = 0; row0 < L; row0 += R) {
        const int64_t g = flash::kv_head_of(h, H, KV);
        const int rows = flash::tile_extent(row0, R, L);
        emu_tile(Qs, R, HD, LD, P.q, flash::row_offset(b, L, row0, ldq, h, HD), ldq, rows);
        emu_tile(dOs, R, HD, LD, dob, flash::row_offset(b, L, row0, ldq, h, HD), ldq, rows);
        for (int warp = 0; warp < 4; ++warp) {
          std::vector<CFrag> dq(NO, CFrag{});
          for (int64_t k0 = 0; k0 < L; k0 += BKQ) {
            const int keys = flash::tile_extent(k0, BKQ, L);
            emu_tile(Ks, BKQ, HD, LD, P.k, flash::row_offset(b, L, k0, ldk, g, HD), ldk, keys);
            emu_tile(Vs, BKQ, HD, LD, P.v, flash::row_offset(b, L, k0, ldk, g, HD), ldk, keys);
            std::vector<CFrag> s(NTQ, CFrag{}), dp(NTQ, CFrag{});
            emu_abt<NTQ, HD, LD>(s, Qs, warp * 16, Ks);
            emu_abt<NTQ, HD, LD>(dp, dOs, warp * 16, Vs);
            for (int x = 0; x < 32; ++x)
              for (int n = 0; n < NTQ; ++n)
                for (int i = 0; i < 4; ++i) {
                  const RowCol e = mma::c_elem(x, i);
                  const int row = warp * 16 + e.row;
                  const bool keep = flash::key_valid(k0 + n * 8 + e.col, L, mask_row(b));
                  const float lse2 = row < rows ? out.lse[(b * H + h) * L + row0 + row] * kLog2e : -INFINITY;
                  const float Dr = row < rows ? D[(b * H + h) * L + row0 + row] : 0.0f;
                  const float p = keep && lse2 != -INFINITY ? std::exp2(s[n][x][i] * sl2 - lse2) : 0.0f;
                  dp[n][x][i] = flash::grad_score(p, dp[n][x][i], Dr);
                }
            emu_pb<NO, BKQ, LD>(dq, dp, Ks);
          }
          for (int x = 0; x < 32; ++x)
            for (int r = 0; r < 2; ++r) {
              const RowCol e = mma::c_elem(x, 2 * r);
              const int row = warp * 16 + e.row;
              if (row >= rows) continue;
              const int64_t off = flash::row_offset(b, L, row0 + row, ldq, h, HD);
              for (int n = 0; n < NO; ++n)
                for (int c = 0; c < 2; ++c) out.dq[off + n * 8 + e.col + c] = dq[n][x][2 * r + c] * scale;
            }
        }
      }
  return out;
}

// The exact attention in double on the same bf16 inputs; the backward on the emulated (bf16) o, as the GPU test's
// oracle runs on the rounded o. o is returned rounded to bf16 (the oracle's bf16 output).
EmuResult reference_attention(const EmuProblem& P, int64_t hd, const std::vector<float>& o_bf16) {
  const int64_t L = P.L, H = P.H, KV = P.KV, ldq = H * hd, ldk = KV * hd;
  const double scale = 1.0 / std::sqrt(double(hd));
  std::vector<double> dk(P.B * L * ldk, 0.0), dv(P.B * L * ldk, 0.0);
  EmuResult w{std::vector<float>(P.B * L * ldq), std::vector<float>(P.B * H * L), std::vector<float>(P.B * L * ldq),
              {}, {}};
  for (int64_t b = 0; b < P.B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < L; ++i) {
        const int64_t g = h / (H / KV), qi = (b * L + i) * ldq + h * hd;
        std::vector<double> p(L, 0.0);
        double m = -INFINITY, l = 0.0;
        for (int64_t j = 0; j < L; ++j) {
          if (!P.mask.empty() && !P.mask[b * L + j]) continue;
          double s = 0;
          for (int64_t c = 0; c < hd; ++c) s += double(P.q[qi + c]) * P.k[(b * L + j) * ldk + g * hd + c];
          p[j] = s * scale, m = std::max(m, p[j]);
        }
        for (int64_t j = 0; j < L; ++j)
          p[j] = m == -INFINITY || (!P.mask.empty() && !P.mask[b * L + j]) ? 0.0 : std::exp(p[j] - m), l += p[j];
        w.lse[(b * H + h) * L + i] = static_cast<float>(m == -INFINITY ? -INFINITY : m + std::log(l));
        double Di = 0;
        for (int64_t c = 0; c < hd; ++c) {
          double oc = 0;
          for (int64_t j = 0; j < L; ++j) oc += l > 0 ? p[j] / l * P.v[(b * L + j) * ldk + g * hd + c] : 0.0;
          w.o[qi + c] = rb(static_cast<float>(oc));
          Di += double(P.dout[qi + c]) * o_bf16[qi + c];
        }
        for (int64_t c = 0; c < hd; ++c) w.dq[qi + c] = 0.0f;
        std::vector<double> dqi(hd, 0.0);
        for (int64_t j = 0; j < L; ++j) {
          if (p[j] == 0) continue;
          const double pj = p[j] / l;
          double dpj = 0;
          for (int64_t c = 0; c < hd; ++c) dpj += double(P.dout[qi + c]) * P.v[(b * L + j) * ldk + g * hd + c];
          const double ds = pj * (dpj - Di);
          for (int64_t c = 0; c < hd; ++c) {
            const int64_t kj = (b * L + j) * ldk + g * hd + c;
            dqi[c] += ds * P.k[kj] * scale;
            dk[kj] += ds * P.q[qi + c] * scale;
            dv[kj] += pj * P.dout[qi + c];
          }
        }
        for (int64_t c = 0; c < hd; ++c) w.dq[qi + c] = static_cast<float>(dqi[c]);
      }
  w.dk.assign(dk.begin(), dk.end());
  w.dv.assign(dv.begin(), dv.end());
  return w;
}

// The [tc] GPU metric: max over elements of (|got - want| - ulps bf16 ulp(want) - abs) / (row scale), per (row, head)
// of hd columns; a zero row scale with an excess counts as infinite.
double worst_rows(const std::vector<float>& got, const std::vector<float>& want, int64_t hd, double ulps, double abs) {
  double worst = 0;
  for (size_t r0 = 0; r0 < want.size(); r0 += static_cast<size_t>(hd)) {
    double scale = 0;
    for (int64_t c = 0; c < hd; ++c) scale = std::max(scale, std::fabs(double(want[r0 + c])));
    for (int64_t c = 0; c < hd; ++c) {
      const float w = want[r0 + c];
      const double ulp = w == 0.0f ? 0.0 : std::ldexp(1.0, std::ilogb(w) - 7);
      const double d = std::fabs(double(got[r0 + c]) - w) - ulps * ulp - abs;
      if (!std::isfinite(got[r0 + c])) return INFINITY;
      if (d > 0) worst = std::max(worst, scale > 0 ? d / scale : double(INFINITY));
    }
  }
  return worst;
}

// Unit-normal bf16 values from a fixed xorshift + Box-Muller stream.
std::vector<float> emu_normal(size_t n, uint64_t seed) {
  std::vector<float> v(n);
  uint64_t x = 0x9E3779B97F4A7C15ull * (seed + 1);
  auto u01 = [&] {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return (static_cast<double>(x >> 11) + 0.5) / 9007199254740992.0;
  };
  for (size_t i = 0; i < n; ++i)
    v[i] = rb(static_cast<float>(std::sqrt(-2.0 * std::log(u01())) * std::cos(6.283185307179586 * u01())));
  return v;
}

// Returns the o metric (worst_rows) for callers that pin it.
template <int HD>
double check_emulated_tc(int64_t B, int64_t L, int64_t H, int64_t KV, int mask_kind, uint64_t seed) {
  INFO("hd " << HD << " B " << B << " L " << L << " heads " << H << " kv " << KV << " mask " << mask_kind);
  EmuProblem P{B, L, H, KV, emu_normal(B * L * H * HD, seed), emu_normal(B * L * KV * HD, seed + 1),
               emu_normal(B * L * KV * HD, seed + 2), emu_normal(B * L * H * HD, seed + 3), {}};
  if (mask_kind > 0) {  // ~70% attendable; kind 2: the last batch row all masked
    const std::vector<float> u = emu_normal(B * L, seed + 4);
    for (float x : u) P.mask.push_back(x > -0.5f);
    if (mask_kind == 2) std::fill(P.mask.end() - L, P.mask.end(), uint8_t{0});
  }
  const EmuResult got = emulate_tc<HD>(P);
  const EmuResult want = reference_attention(P, HD, got.o);
  CHECK(worst_rows(got.o, want.o, HD, 1, 0) <= 1.0 / 128);
  for (size_t i = 0; i < want.lse.size(); ++i) {
    if (std::isinf(want.lse[i])) {
      REQUIRE(got.lse[i] == want.lse[i]);
    } else {
      REQUIRE(std::fabs(got.lse[i] - want.lse[i]) <= 1e-4 * (1 + std::fabs(want.lse[i])));
    }
  }
  CHECK(worst_rows(got.dq, want.dq, HD, 0, 1e-4) <= 1.0 / 128);
  CHECK(worst_rows(got.dk, want.dk, HD, 0, 1e-4) <= 1.0 / 128);
  CHECK(worst_rows(got.dv, want.dv, HD, 0, 1e-4) <= 1.0 / 128);
  if (mask_kind == 2) {  // the all-masked batch row: o = 0, lse = -inf, zero gradients
    for (int64_t n = (B - 1) * L * H * HD; n < B * L * H * HD; ++n) REQUIRE((got.o[n] == 0.0f && got.dq[n] == 0.0f));
    for (int64_t n = (B - 1) * L * KV * HD; n < B * L * KV * HD; ++n) REQUIRE((got.dk[n] == 0.0f && got.dv[n] == 0.0f));
  }
  if (L == 1) {  // one key: dq, dk vanish exactly (want 0), the emulation's are rounding noise: only 1e-4 admits it
    CHECK(worst_rows(got.dq, want.dq, HD, 0, 0) > 1.0 / 128);
    CHECK(worst_rows(got.dk, want.dk, HD, 0, 0) > 1.0 / 128);
  }
  return worst_rows(got.o, want.o, HD, 1, 0);
}

}  // namespace

TEST_CASE("mma_frag: the tensor-core attention emulated lane by lane meets the [tc] GPU tolerances", "[unit][mma]") {
  check_emulated_tc<64>(2, 1, 4, 2, 0, 10);     // L = 1: dq, dk are fp32 noise
  check_emulated_tc<32>(2, 7, 4, 2, 1, 20);     // tails, few attendable keys
  check_emulated_tc<32>(2, 65, 4, 2, 2, 30);    // a tail key tile, an all-masked batch row
  check_emulated_tc<64>(1, 130, 4, 1, 1, 40);   // GQA group 4
  check_emulated_tc<128>(2, 97, 6, 2, 2, 50);   // hd 128 (32-wide streamed tiles), GQA group 3
  // hd 32, L = 1024, 8 heads, B 2 (a [tc] GPU shape's size): the bf16 P rounding alone takes o past 2^-8 of a row's
  // scale (0.00425 here), which is why the o tolerance is 2^-7
  CHECK(check_emulated_tc<32>(2, 1024, 8, 2, 0, 1000) > 1.0 / 256);
}
