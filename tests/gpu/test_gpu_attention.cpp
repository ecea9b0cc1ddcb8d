// CudaBackend::attention_fwd/bwd (cuda_ops_attention.cu) against CpuBackend, the oracle.
//
// Grid: head_dim 16/32/64/128 x L 1/7/33/129/300 x (heads, kv heads) (4, 2), (8, 1), (12, 2), with B cycling
// 1..3, the mask cycling none / left padding / random / random with the last batch row all masked, and the
// layout cycling aligned (float4 paths) / misaligned (scalar paths: base 4 bytes off, row strides not a
// multiple of 4). q, k, v are column blocks of a fused [N, q | k | v] buffer (row stride > width), as the model
// passes them; dq, dk, dv are written into a fused buffer prefilled with 99, whose other columns must stay 99.
//
// Tolerances: forward |got - want| <= 1e-4 (1 + |want|) for o and lse; backward 1e-3 (1 + |want|) for dq, dk,
// dv (P (dP - D) cancels, and the GPU backward reads the GPU forward's o and lse). lse must be -inf exactly
// where every key is masked, and that batch row must get o = 0 and zero gradients. Two runs are bit-identical.
//
// bf16 activations (Case::act = BF16): q, k, v, o are bf16 (qkv rounded on the host), the gradients and lse f32.
// The oracle is the contract's: CpuBackend's f32 ops on the widened values, o rounded to bf16 once; the GPU
// backward is given that rounded o (as the bf16 backward would get the bf16 forward output), so dq, dk, dv keep
// the f32 tolerance; o gets one bf16 ulp on top of it.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "cgrpo/backend/cpu_backend.h"
#include "cgrpo/backend/cuda_backend.h"
#include "cgrpo/core/philox.h"
#include "gpu_test_util.h"

using namespace cgrpo;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

CudaBackend& gpu() {
  static CudaBackend be(0);
  return be;
}

std::vector<float> randn(size_t n, uint32_t sample) {
  std::vector<float> v(n);
  RngStream(13, RngPurpose::Test, 0, sample).fill_normal(v.data(), static_cast<int64_t>(n), 0.0f, 1.0f);
  return v;
}

// A device copy of a host vector (and back).
template <class T>
struct Dev {
  Buffer buf;
  size_t n;
  Dev(const std::vector<T>& h, CudaBackend& be) : buf(std::max<size_t>(h.size(), 1) * sizeof(T), Device::CUDA), n(h.size()) {
    if (n) be.upload(h.data(), buf.data(), n * sizeof(T));
  }
  T* ptr() const { return buf.as<T>(); }
  std::vector<T> get(CudaBackend& be) const { return download(buf, n, be); }
  static std::vector<T> download(const Buffer& b, size_t n, CudaBackend& be) {
    std::vector<T> h(n);
    if (n) be.download(b.data(), h.data(), n * sizeof(T));
    return h;
  }
};

// A device copy of fp32 host values as an activation of dtype t (bf16: rounded once), read back widened.
struct ActDev {
  DType t;
  size_t n;
  Buffer buf;
  ActDev(const std::vector<float>& h, DType dt, CudaBackend& be)
      : t(dt), n(h.size()), buf(std::max<size_t>(n, 1) * dtype_size(dt), Device::CUDA) {
    const std::vector<uint16_t> hb = t == DType::BF16 ? gpu_test::to_bf16(h) : std::vector<uint16_t>();
    if (n) be.upload(t == DType::BF16 ? static_cast<const void*>(hb.data()) : h.data(), buf.data(), n * dtype_size(t));
  }
  void* ptr() const { return buf.data(); }
  std::vector<float> get(CudaBackend& be) const {
    if (t != DType::BF16) return Dev<float>::download(buf, n, be);
    return gpu_test::from_bf16(Dev<uint16_t>::download(buf, n, be));
  }
};

// Columns [c0, c0 + w) of the rows of a [N, ld] matrix starting at element `base`.
std::vector<float> cols(const std::vector<float>& src, size_t base, int64_t N, int64_t ld, int64_t c0, int64_t w) {
  std::vector<float> d(N * w);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < w; ++c) d[n * w + c] = src[base + n * ld + c0 + c];
  return d;
}

// |got - want| <= tol (1 + |want|) everywhere, plus one bf16 ulp of want when bf16 (outputs rounded once); an
// infinite want must be matched exactly.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, double tol, const char* what,
                  bool bf16 = false) {
  REQUIRE(got.size() == want.size());
  double worst = 0;
  size_t wi = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double slack = bf16 ? gpu_test::bf16_ulp(want[i]) : 0.0;
    const double d = std::max(0.0, std::fabs(double(got[i]) - want[i]) - slack);
    const double e = std::isinf(want[i]) || std::isinf(got[i]) ? (got[i] == want[i] ? 0.0 : double(kInf))
                                                               : d / (1.0 + std::fabs(double(want[i])));
    if (!(e <= worst)) worst = std::isnan(e) ? double(kInf) : e, wi = i;
  }
  INFO(what << ": worst |got - want| / (1 + |want|) = " << worst << " at " << wi << " (got " << got[wi] << ", want "
            << want[wi] << ")");
  REQUIRE(worst <= tol);
}

enum class MaskKind { None, LeftPad, Random, LastRowMasked };
const char* mask_name(MaskKind m) {
  switch (m) {
    case MaskKind::None: return "none";
    case MaskKind::LeftPad: return "left-pad";
    case MaskKind::Random: return "random";
    case MaskKind::LastRowMasked: return "random + last row all masked";
  }
  return "?";
}

std::vector<uint8_t> make_mask(MaskKind mk, int64_t B, int64_t L, uint32_t seed) {
  if (mk == MaskKind::None) return {};
  std::vector<uint8_t> m(B * L, 1);
  if (mk == MaskKind::LeftPad) {  // batch row b has min(L - 1, b * (L / 3 + 1)) pad keys on the left
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < std::min(L - 1, b * (L / 3 + 1)); ++j) m[b * L + j] = 0;
    return m;
  }
  const std::vector<float> u = randn(B * L, seed);
  for (int64_t i = 0; i < B * L; ++i) m[i] = u[i] > -0.5f;  // ~70% attendable
  if (mk == MaskKind::LastRowMasked)
    for (int64_t j = 0; j < L; ++j) m[(B - 1) * L + j] = 0;
  return m;
}

struct Case {
  AttnShape s;
  MaskKind mask;
  bool aligned;  // false: every view one element off a 4-element group and/or a row stride not a multiple of 4
  DType act = DType::F32;  // q, k, v, o
};

// Layout of every buffer of one case: fused qkv / dqkv [N, ld] at element offset off; o [N, ldo]; dout [N, lddo].
struct Layout {
  int64_t N, qw, kw, ld, ldo, lddo;
  size_t off;
  explicit Layout(const Case& c) {
    N = c.s.B * c.s.L, qw = c.s.n_heads * c.s.head_dim, kw = c.s.n_kv_heads * c.s.head_dim;
    ld = qw + 2 * kw + (c.aligned ? 0 : 3);
    ldo = qw + (c.aligned ? 0 : 1);
    lddo = qw + (c.aligned ? 0 : 2);
    off = c.aligned ? 0 : 1;
  }
  size_t qkv_size() const { return off + N * ld; }
  // Views of dtype t (q, k, v, o: the case's activation dtype; f32 for the gradients, as the defaults).
  TensorView q(const void* base, Device d, DType t = DType::F32) const { return view(base, off, qw, ld, d, t); }
  TensorView k(const void* base, Device d, DType t = DType::F32) const { return view(base, off + qw, kw, ld, d, t); }
  TensorView v(const void* base, Device d, DType t = DType::F32) const {
    return view(base, off + qw + kw, kw, ld, d, t);
  }
  TensorView o(const void* base, Device d, DType t = DType::F32) const { return view(base, 0, qw, ldo, d, t); }
  TensorView dout(const void* base, Device d) const { return view(base, 0, qw, lddo, d, DType::F32); }

 private:
  // [N, w] with row stride ld from element `first` of base
  TensorView view(const void* base, size_t first, int64_t w, int64_t row_stride, Device d, DType t) const {
    TensorView x(const_cast<char*>(static_cast<const char*>(base)) + first * dtype_size(t), t, {N, w}, d);
    x.strides[0] = row_stride;
    return x;
  }
};

void run_case(const Case& c, uint32_t seed) {
  const AttnShape& s = c.s;
  const Layout Y(c);
  const DType act = c.act;
  const bool bf16 = act == DType::BF16;
  INFO("B " << s.B << " L " << s.L << " heads " << s.n_heads << " kv " << s.n_kv_heads << " hd " << s.head_dim
            << " mask " << mask_name(c.mask) << (c.aligned ? " aligned" : " misaligned") << " " << dtype_name(act));
  std::vector<float> qkv = gpu_test::as_act(randn(Y.qkv_size(), seed), act), dout = randn(Y.N * Y.lddo, seed + 1);
  const std::vector<uint8_t> mask = make_mask(c.mask, s.B, s.L, seed + 2);
  const uint8_t* hmask = mask.empty() ? nullptr : mask.data();

  // CPU oracle on the same layouts
  CpuBackend cpu;
  std::vector<float> o_want(Y.N * Y.ldo, 77.0f), lse_want(s.B * s.n_heads * s.L), dqkv_want(Y.qkv_size(), 99.0f);
  cpu.attention_fwd(s, Y.q(qkv.data(), Device::CPU), Y.k(qkv.data(), Device::CPU), Y.v(qkv.data(), Device::CPU),
                    hmask, Y.o(o_want.data(), Device::CPU), lse_want.data());
  o_want = gpu_test::as_act(std::move(o_want), act);  // the bf16 forward's o; the bf16 backward reads it
  cpu.attention_bwd(s, Y.q(qkv.data(), Device::CPU), Y.k(qkv.data(), Device::CPU), Y.v(qkv.data(), Device::CPU),
                    hmask, Y.o(o_want.data(), Device::CPU), lse_want.data(), Y.dout(dout.data(), Device::CPU),
                    Y.q(dqkv_want.data(), Device::CPU), Y.k(dqkv_want.data(), Device::CPU),
                    Y.v(dqkv_want.data(), Device::CPU));

  // GPU, twice (determinism)
  CudaBackend& be = gpu();
  const ActDev dqkv_in(qkv, act, be), o_oracle(o_want, act, be);
  const Dev<float> ddout(dout, be);
  const Dev<uint8_t> dmask(mask, be);
  const uint8_t* gmask = mask.empty() ? nullptr : dmask.ptr();
  const std::vector<float> o_init(Y.N * Y.ldo, 77.0f), lse_init(s.B * s.n_heads * s.L, 5.0f),
      g_init(Y.qkv_size(), 99.0f);
  std::vector<float> o_got[2], lse_got[2], g_got[2];
  for (int run = 0; run < 2; ++run) {
    ActDev o(o_init, act, be);
    Dev<float> lse(lse_init, be), g(g_init, be);
    const void* x = dqkv_in.ptr();
    be.attention_fwd(s, Y.q(x, Device::CUDA, act), Y.k(x, Device::CUDA, act), Y.v(x, Device::CUDA, act), gmask,
                     Y.o(o.ptr(), Device::CUDA, act), lse.ptr());
    const void* o_bwd = bf16 ? o_oracle.ptr() : o.ptr();  // fp32: the backward reads the GPU forward's o
    be.attention_bwd(s, Y.q(x, Device::CUDA, act), Y.k(x, Device::CUDA, act), Y.v(x, Device::CUDA, act), gmask,
                     Y.o(o_bwd, Device::CUDA, act), lse.ptr(), Y.dout(ddout.ptr(), Device::CUDA),
                     Y.q(g.ptr(), Device::CUDA), Y.k(g.ptr(), Device::CUDA), Y.v(g.ptr(), Device::CUDA));
    o_got[run] = o.get(be), lse_got[run] = lse.get(be), g_got[run] = g.get(be);
  }

  expect_close(cols(o_got[0], 0, Y.N, Y.ldo, 0, Y.qw), cols(o_want, 0, Y.N, Y.ldo, 0, Y.qw), 1e-4, "o", bf16);
  expect_close(lse_got[0], lse_want, 1e-4, "lse");
  expect_close(cols(g_got[0], Y.off, Y.N, Y.ld, 0, Y.qw), cols(dqkv_want, Y.off, Y.N, Y.ld, 0, Y.qw), 1e-3, "dq");
  expect_close(cols(g_got[0], Y.off, Y.N, Y.ld, Y.qw, Y.kw), cols(dqkv_want, Y.off, Y.N, Y.ld, Y.qw, Y.kw), 1e-3,
               "dk");
  expect_close(cols(g_got[0], Y.off, Y.N, Y.ld, Y.qw + Y.kw, Y.kw),
               cols(dqkv_want, Y.off, Y.N, Y.ld, Y.qw + Y.kw, Y.kw), 1e-3, "dv");
  // nothing outside the views is written: o's pad column keeps 77, dqkv's offset and pad columns keep 99
  for (int64_t n = 0; n < Y.N; ++n)
    for (int64_t c = Y.qw; c < Y.ldo; ++c) REQUIRE(o_got[0][n * Y.ldo + c] == 77.0f);
  for (size_t i = 0; i < Y.off; ++i) REQUIRE(g_got[0][i] == 99.0f);
  for (int64_t n = 0; n < Y.N; ++n)
    for (int64_t c = Y.qw + 2 * Y.kw; c < Y.ld; ++c) REQUIRE(g_got[0][Y.off + n * Y.ld + c] == 99.0f);

  if (c.mask == MaskKind::LastRowMasked) {  // safe softmax: zeros and -inf, never NaN; no gradient
    const int64_t b = s.B - 1;
    for (int64_t i = b * s.n_heads * s.L; i < s.B * s.n_heads * s.L; ++i) REQUIRE(lse_got[0][i] == -kInf);
    for (int64_t n = b * s.L; n < Y.N; ++n) {
      for (int64_t col = 0; col < Y.qw; ++col) REQUIRE(o_got[0][n * Y.ldo + col] == 0.0f);
      for (int64_t col = 0; col < Y.qw + 2 * Y.kw; ++col) REQUIRE(g_got[0][Y.off + n * Y.ld + col] == 0.0f);
    }
  }

  // bit-identical across runs (no atomics, fixed reduction order)
  REQUIRE(std::memcmp(o_got[0].data(), o_got[1].data(), o_got[0].size() * sizeof(float)) == 0);
  REQUIRE(std::memcmp(lse_got[0].data(), lse_got[1].data(), lse_got[0].size() * sizeof(float)) == 0);
  REQUIRE(std::memcmp(g_got[0].data(), g_got[1].data(), g_got[0].size() * sizeof(float)) == 0);
}

int64_t cuda_live_bytes() {
  const MemoryStats m = memory_stats();
  int64_t t = 0;
  for (int c = 0; c < kMemCategories; ++c) t += m.live_bytes[static_cast<int>(Device::CUDA)][c];
  return t;
}
int64_t cuda_peak_bytes_bound() {  // sum of per-category peaks >= the true peak
  const MemoryStats m = memory_stats();
  int64_t t = 0;
  for (int c = 0; c < kMemCategories; ++c) t += m.peak_bytes[static_cast<int>(Device::CUDA)][c];
  return t;
}

}  // namespace

TEST_CASE("cuda attention: fwd and bwd match CpuBackend over head_dim L GQA masks and column-block views",
          "[gpu][attention]") {
  uint32_t seed = 100, idx = 0;
  for (int64_t hd : {16, 32, 64, 128})
    for (int64_t L : {1, 7, 33, 129, 300})
      for (auto [H, KV] : {std::pair<int64_t, int64_t>{4, 2}, {8, 1}, {12, 2}}) {
        const Case c{AttnShape{1 + idx % 3, L, H, KV, hd}, static_cast<MaskKind>(idx % 4), (idx / 4) % 2 == 0};
        run_case(c, seed);
        seed += 10, ++idx;
      }
}

TEST_CASE("cuda attention: every mask kind with both layouts at tail-heavy L", "[gpu][attention]") {
  uint32_t seed = 5000;
  for (int64_t hd : {16, 32, 64, 128})
    for (MaskKind mk : {MaskKind::None, MaskKind::LeftPad, MaskKind::Random, MaskKind::LastRowMasked})
      for (bool aligned : {true, false}) {
        run_case(Case{AttnShape{3, 65, 6, 3, hd}, mk, aligned}, seed);
        seed += 10;
      }
}

TEST_CASE("cuda attention bf16 q k v o: round_bf16 of the f32 oracle over head_dim, L, GQA, masks and layouts",
          "[gpu][attention]") {
  uint32_t seed = 7000, idx = 0;
  for (int64_t hd : {16, 32, 64, 128})
    for (int64_t L : {7, 65, 300})
      for (auto [H, KV] : {std::pair<int64_t, int64_t>{4, 2}, {8, 1}, {6, 6}})
        for (bool aligned : {true, false}) {  // 8-byte vector loads of 4 bf16 / scalar loads
          const Case c{AttnShape{1 + idx % 3, L, H, KV, hd}, static_cast<MaskKind>(idx % 4), aligned, DType::BF16};
          run_case(c, seed);
          seed += 10, ++idx;
        }
}

TEST_CASE("cuda attention: L = 2048 matches the CPU and needs no L x L workspace", "[gpu][attention]") {
  CudaBackend be(0);  // a fresh backend: its attention workspace starts empty
  REQUIRE(be.attention_workspace_bytes() == 0);
  const AttnShape s{1, 2048, 4, 2, 128};
  const Case c{s, MaskKind::Random, true};
  const Layout Y(c);
  const std::vector<float> qkv = randn(Y.qkv_size(), 9001), dout = randn(Y.N * Y.lddo, 9002);
  const std::vector<uint8_t> mask = make_mask(c.mask, s.B, s.L, 9003);
  const Dev<float> dx(qkv, be), ddout(dout, be);
  const Dev<uint8_t> dmask(mask, be);
  Dev<float> o(std::vector<float>(Y.N * Y.ldo, 0.0f), be), lse(std::vector<float>(s.B * s.n_heads * s.L), be),
      g(std::vector<float>(Y.qkv_size(), 0.0f), be);
  be.synchronize();
  const int64_t live_before = cuda_live_bytes();
  reset_peak_memory();
  float* x = dx.ptr();
  be.attention_fwd(s, Y.q(x, Device::CUDA), Y.k(x, Device::CUDA), Y.v(x, Device::CUDA), dmask.ptr(),
                   Y.o(o.ptr(), Device::CUDA), lse.ptr());
  be.attention_bwd(s, Y.q(x, Device::CUDA), Y.k(x, Device::CUDA), Y.v(x, Device::CUDA), dmask.ptr(),
                   Y.o(o.ptr(), Device::CUDA), lse.ptr(), Y.dout(ddout.ptr(), Device::CUDA), Y.q(g.ptr(), Device::CUDA),
                   Y.k(g.ptr(), Device::CUDA), Y.v(g.ptr(), Device::CUDA));
  be.synchronize();
  // the only scratch is D [B, heads, L] fp32 (32 KiB here; an L x L fp32 matrix would be 16 MiB)
  const int64_t d_bytes = s.B * s.n_heads * s.L * int64_t(sizeof(float));
  CHECK(be.attention_workspace_bytes() == static_cast<size_t>(d_bytes));
  CHECK(cuda_peak_bytes_bound() - live_before <= d_bytes);
  // a second backward reuses the workspace
  be.attention_bwd(s, Y.q(x, Device::CUDA), Y.k(x, Device::CUDA), Y.v(x, Device::CUDA), dmask.ptr(),
                   Y.o(o.ptr(), Device::CUDA), lse.ptr(), Y.dout(ddout.ptr(), Device::CUDA), Y.q(g.ptr(), Device::CUDA),
                   Y.k(g.ptr(), Device::CUDA), Y.v(g.ptr(), Device::CUDA));
  CHECK(be.attention_workspace_bytes() == static_cast<size_t>(d_bytes));

  CpuBackend cpu;
  std::vector<float> hq = qkv, o_want(Y.N * Y.ldo), lse_want(s.B * s.n_heads * s.L), g_want(Y.qkv_size(), 0.0f);
  cpu.attention_fwd(s, Y.q(hq.data(), Device::CPU), Y.k(hq.data(), Device::CPU), Y.v(hq.data(), Device::CPU),
                    mask.data(), Y.o(o_want.data(), Device::CPU), lse_want.data());
  cpu.attention_bwd(s, Y.q(hq.data(), Device::CPU), Y.k(hq.data(), Device::CPU), Y.v(hq.data(), Device::CPU),
                    mask.data(), Y.o(o_want.data(), Device::CPU), lse_want.data(), Y.dout(dout.data(), Device::CPU),
                    Y.q(g_want.data(), Device::CPU), Y.k(g_want.data(), Device::CPU), Y.v(g_want.data(), Device::CPU));
  expect_close(o.get(be), o_want, 1e-4, "o");
  expect_close(lse.get(be), lse_want, 1e-4, "lse");
  expect_close(g.get(be), g_want, 1e-3, "dq, dk, dv");
}

TEST_CASE("cuda attention: unsupported head_dim or host memory or bad shapes are fatal with the CPU messages",
          "[gpu][attention]") {
  const AttnShape s{1, 4, 2, 1, 8};
  const int64_t N = 4, qw = 16, kw = 8;
  Dev<float> q(std::vector<float>(N * qw, 0.0f), gpu()), k(std::vector<float>(N * kw, 0.0f), gpu()),
      v(std::vector<float>(N * kw, 0.0f), gpu()), o(std::vector<float>(N * qw, 0.0f), gpu()),
      lse(std::vector<float>(8, 0.0f), gpu());
  auto dv = [](const Dev<float>& d, int64_t w) { return rows_view(d.ptr(), 4, w, w, Device::CUDA); };
  REQUIRE_THROWS_WITH(gpu().attention_fwd(s, dv(q, qw), dv(k, kw), dv(v, kw), nullptr, dv(o, qw), lse.ptr()),
                      Catch::Contains("head_dim 8 is not supported"));
  std::vector<float> hq(N * qw);
  const AttnShape s16{1, 2, 1, 1, 16};  // q [2, 16]: the same buffers, other shapes
  REQUIRE_THROWS_WITH(gpu().attention_fwd(s16, rows_view(hq.data(), 2, 16, 16), rows_view(k.ptr(), 2, 16, 16, Device::CUDA),
                                          rows_view(v.ptr(), 2, 16, 16, Device::CUDA), nullptr,
                                          rows_view(o.ptr(), 2, 16, 16, Device::CUDA), lse.ptr()),
                      Catch::Contains("needs device memory"));
  REQUIRE_THROWS_WITH(gpu().attention_fwd(s16, rows_view(q.ptr(), 2, 15, 16, Device::CUDA),
                                          rows_view(k.ptr(), 2, 16, 16, Device::CUDA),
                                          rows_view(v.ptr(), 2, 16, 16, Device::CUDA), nullptr,
                                          rows_view(o.ptr(), 2, 16, 16, Device::CUDA), lse.ptr()),
                      Catch::Contains("attention q"));
  REQUIRE_THROWS_WITH(gpu().attention_fwd(AttnShape{1, 2, 3, 2, 16}, dv(q, qw), dv(k, kw), dv(v, kw), nullptr,
                                          dv(o, qw), lse.ptr()),
                      Catch::Contains("multiple of num_key_value_heads"));
  // bf16 activations: q, k, v, o share one dtype; the backward's gradients stay f32
  auto bf = [](TensorView t) {
    t.dtype = DType::BF16;
    return t;
  };
  const AttnShape s4{1, 4, 1, 1, 16};  // q, k, v, o [4, 16]: bf16 views fit in the f32 buffers
  auto v16 = [](const Dev<float>& d) { return rows_view(d.ptr(), 4, 16, 16, Device::CUDA); };
  REQUIRE_THROWS_WITH(gpu().attention_fwd(s4, bf(v16(q)), v16(k), bf(v16(v)), nullptr, bf(v16(o)), lse.ptr()),
                      Catch::Contains("must share one dtype"));
  REQUIRE_THROWS_WITH(gpu().attention_bwd(s4, bf(v16(q)), bf(v16(k)), bf(v16(v)), nullptr, bf(v16(o)), lse.ptr(),
                                          bf(v16(q)), bf(v16(k)), bf(v16(v)), bf(v16(o))),
                      Catch::Contains("dq, dk, dv and dout must be f32"));
}
