// mma_frag.h (the lane <-> element maps of mma.m16n8k16 and ldmatrix that the tensor-core attention kernels use)
// on the CPU: entries of the PTX ISA fragment figures, each map a bijection, ldmatrix emulated from the address
// maps against the operand fragments, one warp's S = Q K^T and O = P V (P the reused C fragments) emulated lane
// by lane against plain matrix products, the quad row reduction, and the shared-memory layout of flash_tile.h's
// TcTiles (16-byte rows, conflict-free ldmatrix phases, smem within the sm_80 limit).
#include <catch2/catch.hpp>
#include <algorithm>
#include <array>
#include <set>
#include <utility>
#include <vector>

#include "cgrpo/backend/flash_tile.h"
#include "cgrpo/backend/mma_frag.h"

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
