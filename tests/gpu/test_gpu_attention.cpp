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
// bf16 activations (Case::act = BF16) on the SIMT kernels (AttnImpl::Simt): q, k, v, o are bf16 (qkv rounded on
// the host), the gradients and lse f32. The oracle is the contract's: CpuBackend's f32 ops on the widened values,
// o rounded to bf16 once; the GPU backward is given that rounded o (as the bf16 backward would get the bf16
// forward output), so dq, dk, dv keep the f32 tolerance; o gets one bf16 ulp on top of it.
//
// The tensor-core kernels (bf16, head_dim 32/64/128, 16-byte aligned views; AttnImpl::TensorCore) round P and dS
// to bf16 for their products (backend.h), so they are held to each row's output scale instead: for every (row,
// head), scale = max |want| over the head's head_dim columns, and |got - want| <= 2^-7 scale + 1 bf16 ulp of want
// for o, <= 2^-7 scale + 1e-4 for dq, dk, dv (P or dS rounded; dout holds bf16 values, so the kernels' rounding of
// dO is exact, and 1e-4 covers rows whose gradient vanishes by cancellation); lse keeps 1e-4 (1 + |want|) (its
// sum is over fp32 P). Grid: head_dim 32/64/128 x L 1/7/64/65/300/1024 x GQA groups 1/2/4, masks none / random /
// last batch row all masked, q, k, v column blocks of a fused qkv with and without 8 padding columns, plus every
// mask kind at L = 129 with the 1b preset's GQA group of 6 (12 heads, 2 kv heads); also against
// the forced SIMT kernels on the same inputs, bit-identical reruns, and the dispatch (Auto takes the tensor cores
// exactly where they apply, TensorCore elsewhere is fatal).
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
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
  int64_t pad = 0;         // aligned only: extra columns on every row stride (8 keeps 16-byte rows)
  bool dout_bf16 = false;  // dout holds bf16 values (the tensor-core cases, run_tc_case: the kernels round dO)
};

// Layout of every buffer of one case: fused qkv / dqkv [N, ld] at element offset off; o [N, ldo]; dout [N, lddo].
struct Layout {
  int64_t N, qw, kw, ld, ldo, lddo;
  size_t off;
  explicit Layout(const Case& c) {
    N = c.s.B * c.s.L, qw = c.s.n_heads * c.s.head_dim, kw = c.s.n_kv_heads * c.s.head_dim;
    ld = qw + 2 * kw + (c.aligned ? c.pad : 3);
    ldo = qw + (c.aligned ? c.pad : 1);
    lddo = qw + (c.aligned ? c.pad : 2);
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

// One case's inputs: fused qkv (the case's activation dtype; bf16: rounded on the host), dout, the key mask, on
// the host and on the device.
struct Inputs {
  const Case& c;
  Layout Y;
  std::vector<float> qkv, dout;
  std::vector<uint8_t> mask;
  ActDev x;
  Dev<float> dout_dev;
  Dev<uint8_t> mask_dev;
  Inputs(const Case& cs, uint32_t seed)
      : c(cs), Y(cs), qkv(gpu_test::as_act(randn(Y.qkv_size(), seed), cs.act)),
        dout(gpu_test::as_act(randn(Y.N * Y.lddo, seed + 1), cs.dout_bf16 ? DType::BF16 : DType::F32)),
        mask(make_mask(cs.mask, cs.s.B, cs.s.L, seed + 2)), x(qkv, cs.act, gpu()), dout_dev(dout, gpu()),
        mask_dev(mask, gpu()) {}
  const uint8_t* hmask() const { return mask.empty() ? nullptr : mask.data(); }
  const uint8_t* gmask() const { return mask.empty() ? nullptr : mask_dev.ptr(); }
};

// Outputs of one run, read back: o [N, ldo] (widened), lse [B, heads, L], the fused gradient buffer.
struct Outputs {
  std::vector<float> o, lse, g;
};

// CpuBackend on the case's layouts (o written into a buffer prefilled with 77, dqkv with 99). The backward reads
// o_bwd (the forward's o rounded to the activation dtype, as a bf16 forward would hand it on) and the oracle's lse.
Outputs run_cpu(const Inputs& in) {
  const AttnShape& s = in.c.s;
  const Layout& Y = in.Y;
  CpuBackend cpu;
  const float* x = in.qkv.data();
  Outputs w{std::vector<float>(Y.N * Y.ldo, 77.0f), std::vector<float>(s.B * s.n_heads * s.L),
            std::vector<float>(Y.qkv_size(), 99.0f)};
  cpu.attention_fwd(s, Y.q(x, Device::CPU), Y.k(x, Device::CPU), Y.v(x, Device::CPU), in.hmask(),
                    Y.o(w.o.data(), Device::CPU), w.lse.data());
  const std::vector<float> o_bwd = gpu_test::as_act(w.o, in.c.act);
  cpu.attention_bwd(s, Y.q(x, Device::CPU), Y.k(x, Device::CPU), Y.v(x, Device::CPU), in.hmask(),
                    Y.o(o_bwd.data(), Device::CPU), w.lse.data(), Y.dout(in.dout.data(), Device::CPU),
                    Y.q(w.g.data(), Device::CPU), Y.k(w.g.data(), Device::CPU), Y.v(w.g.data(), Device::CPU));
  return w;
}

// The process CudaBackend with its current AttnImpl: forward, then backward on o_bwd and lse_bwd when given (device
// copies of the oracle's), else on this run's own o and lse. Outputs start as 77 (o), 5 (lse), 99 (gradients).
Outputs run_gpu(const Inputs& in, const ActDev* o_bwd = nullptr, const Dev<float>* lse_bwd = nullptr) {
  const AttnShape& s = in.c.s;
  const Layout& Y = in.Y;
  const DType act = in.c.act;
  CudaBackend& be = gpu();
  ActDev o(std::vector<float>(Y.N * Y.ldo, 77.0f), act, be);
  Dev<float> lse(std::vector<float>(s.B * s.n_heads * s.L, 5.0f), be), g(std::vector<float>(Y.qkv_size(), 99.0f), be);
  const void* x = in.x.ptr();
  be.attention_fwd(s, Y.q(x, Device::CUDA, act), Y.k(x, Device::CUDA, act), Y.v(x, Device::CUDA, act), in.gmask(),
                   Y.o(o.ptr(), Device::CUDA, act), lse.ptr());
  be.attention_bwd(s, Y.q(x, Device::CUDA, act), Y.k(x, Device::CUDA, act), Y.v(x, Device::CUDA, act), in.gmask(),
                   Y.o(o_bwd ? o_bwd->ptr() : o.ptr(), Device::CUDA, act), lse_bwd ? lse_bwd->ptr() : lse.ptr(),
                   Y.dout(in.dout_dev.ptr(), Device::CUDA), Y.q(g.ptr(), Device::CUDA), Y.k(g.ptr(), Device::CUDA),
                   Y.v(g.ptr(), Device::CUDA));
  return {o.get(be), lse.get(be), g.get(be)};
}

// The [N, w] blocks a run is compared on.
std::vector<float> o_of(const Layout& Y, const Outputs& r) { return cols(r.o, 0, Y.N, Y.ldo, 0, Y.qw); }
std::vector<float> dq_of(const Layout& Y, const Outputs& r) { return cols(r.g, Y.off, Y.N, Y.ld, 0, Y.qw); }
std::vector<float> dk_of(const Layout& Y, const Outputs& r) { return cols(r.g, Y.off, Y.N, Y.ld, Y.qw, Y.kw); }
std::vector<float> dv_of(const Layout& Y, const Outputs& r) { return cols(r.g, Y.off, Y.N, Y.ld, Y.qw + Y.kw, Y.kw); }

// Nothing outside the views is written (o's pad columns keep 77; dqkv's offset and pad columns keep 99), and a
// batch row whose keys are all masked gets lse = -inf, o = 0 and zero gradients (safe softmax, never NaN).
void check_views_and_masked_rows(const Inputs& in, const Outputs& r) {
  const AttnShape& s = in.c.s;
  const Layout& Y = in.Y;
  for (int64_t n = 0; n < Y.N; ++n)
    for (int64_t c = Y.qw; c < Y.ldo; ++c) REQUIRE(r.o[n * Y.ldo + c] == 77.0f);
  for (size_t i = 0; i < Y.off; ++i) REQUIRE(r.g[i] == 99.0f);
  for (int64_t n = 0; n < Y.N; ++n)
    for (int64_t c = Y.qw + 2 * Y.kw; c < Y.ld; ++c) REQUIRE(r.g[Y.off + n * Y.ld + c] == 99.0f);
  if (in.c.mask != MaskKind::LastRowMasked) return;
  const int64_t b = s.B - 1;
  for (int64_t i = b * s.n_heads * s.L; i < s.B * s.n_heads * s.L; ++i) REQUIRE(r.lse[i] == -kInf);
  for (int64_t n = b * s.L; n < Y.N; ++n) {
    for (int64_t col = 0; col < Y.qw; ++col) REQUIRE(r.o[n * Y.ldo + col] == 0.0f);
    for (int64_t col = 0; col < Y.qw + 2 * Y.kw; ++col) REQUIRE(r.g[Y.off + n * Y.ld + col] == 0.0f);
  }
}

// Two runs bit-identical (no atomics, fixed reduction order).
void check_identical(const Outputs& a, const Outputs& b) {
  REQUIRE(std::memcmp(a.o.data(), b.o.data(), a.o.size() * sizeof(float)) == 0);
  REQUIRE(std::memcmp(a.lse.data(), b.lse.data(), a.lse.size() * sizeof(float)) == 0);
  REQUIRE(std::memcmp(a.g.data(), b.g.data(), a.g.size() * sizeof(float)) == 0);
}

std::string case_name(const Case& c) {
  const AttnShape& s = c.s;
  std::ostringstream os;
  os << "B " << s.B << " L " << s.L << " heads " << s.n_heads << " kv " << s.n_kv_heads << " hd " << s.head_dim
     << " mask " << mask_name(c.mask) << (c.aligned ? " aligned" : " misaligned") << " pad " << c.pad << " "
     << dtype_name(c.act);
  return os.str();
}

// The f32 kernels, or bf16 on the SIMT kernels: the f32 oracle's tolerances (bf16 o: plus one ulp).
void run_case(const Case& c, uint32_t seed) {
  INFO(case_name(c));
  const Inputs in(c, seed);
  const Layout& Y = in.Y;
  const bool bf16 = c.act == DType::BF16;
  const Outputs want = run_cpu(in);
  // fp32: the backward reads the GPU forward's o and lse; bf16: the oracle's rounded o (the contract's input)
  const ActDev o_oracle(gpu_test::as_act(want.o, c.act), c.act, gpu());
  const Outputs got[2] = {run_gpu(in, bf16 ? &o_oracle : nullptr), run_gpu(in, bf16 ? &o_oracle : nullptr)};

  expect_close(o_of(Y, got[0]), gpu_test::as_act(o_of(Y, want), c.act), 1e-4, "o", bf16);
  expect_close(got[0].lse, want.lse, 1e-4, "lse");
  expect_close(dq_of(Y, got[0]), dq_of(Y, want), 1e-3, "dq");
  expect_close(dk_of(Y, got[0]), dk_of(Y, want), 1e-3, "dk");
  expect_close(dv_of(Y, got[0]), dv_of(Y, want), 1e-3, "dv");
  check_views_and_masked_rows(in, got[0]);
  check_identical(got[0], got[1]);
}

// |got - want| <= tol * scale + ulps * bf16_ulp(want) + abs over an [N, w] block of heads of hd columns, scale =
// max |want| over the head_dim columns of the element's (row, head): the row's output scale. A zero scale needs
// |got - want| <= abs; a non-finite got fails.
void expect_close_rows(const std::vector<float>& got, const std::vector<float>& want, int64_t N, int64_t w,
                       int64_t hd, double tol, double ulps, double abs, const char* what) {
  REQUIRE(got.size() == static_cast<size_t>(N * w));
  REQUIRE(want.size() == got.size());
  double worst = 0;
  size_t wi = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t h0 = 0; h0 < w; h0 += hd) {
      double scale = 0;
      for (int64_t c = h0; c < h0 + hd; ++c) scale = std::max(scale, std::fabs(double(want[n * w + c])));
      for (int64_t c = h0; c < h0 + hd; ++c) {
        const size_t i = static_cast<size_t>(n * w + c);
        const double d = std::fabs(double(got[i]) - want[i]) - ulps * gpu_test::bf16_ulp(want[i]) - abs;
        const double e = !std::isfinite(got[i]) ? double(kInf) : d <= 0 ? 0.0 : scale > 0 ? d / scale : double(kInf);
        if (e > worst) worst = e, wi = i;
      }
    }
  INFO(what << ": worst (|got - want| - slack) / row scale = " << worst << " at " << wi << " (got " << got[wi]
            << ", want " << want[wi] << "), tolerance " << tol);
  REQUIRE(worst <= tol);
}

// Sets the process backend's attention kernels for one scope.
struct ImplScope {
  CudaBackend::AttnImpl prev;
  explicit ImplScope(CudaBackend::AttnImpl impl) : prev(gpu().attention_impl()) { gpu().set_attention_impl(impl); }
  ~ImplScope() { gpu().set_attention_impl(prev); }
};

// The tensor-core tolerances (backend.h): o 2^-7 of the row scale plus one bf16 ulp (the error of bf16 P is ~2^-9 /
// sqrt(3) of the elements' scale, ~2^-10 of a typical row max, and its tail over the 10^5 .. 10^6 elements of a
// case at head_dim 32 passes 2^-8: a CPU emulation of the kernels gives up to 0.0042 at L = 1024, 8 heads, B 2),
// dq, dk, dv 2^-7 of it plus kTcAbsGrad: a gradient row that vanishes by cancellation (a query with one attendable
// key, e.g. L = 1: dS = P (dP - D) = 0 exactly) is the fp32 rounding noise of dP - D in the oracle and in the
// kernels (sums of head_dim unit-scale products, ~1e-6 here), which no fraction of its own (noise) scale bounds.
constexpr double kTcTolO = 1.0 / 128, kTcTolGrad = 1.0 / 128, kTcAbsGrad = 1e-4;

// bf16 on the tensor-core kernels (forced): against the oracle (backward on the oracle's rounded o and its lse),
// against the forced SIMT kernels on the same inputs (each within the oracle tolerance, so within it of each
// other up to the SIMT path's 1e-4), twice bit-identical. dout holds bf16 values: the kernels round dO to bf16
// (backend.h), an input rounding the row-scale bound cannot absorb (it moves dq_i by ~2^-9 |dO_i| times the norm
// of the map dO_i -> dq_i, and a row whose dq cancels is far smaller than that: in a CPU emulation of the kernels
// 0.17 of its scale at L = 2, 0.018 at L = 129, 0.008 at L = 1024; on bf16 dO at most 0.006 over 270 shapes), so
// every run sees the same dO and the bound covers the rounding of P and dS.
void run_tc_case(const Case& tc_c, uint32_t seed) {
  Case c = tc_c;
  c.dout_bf16 = true;
  INFO(case_name(c));
  REQUIRE(c.act == DType::BF16);
  const Inputs in(c, seed);
  const Layout& Y = in.Y;
  const int64_t hd = c.s.head_dim;
  const Outputs want = run_cpu(in);
  const ActDev o_oracle(gpu_test::round_bf16(want.o), DType::BF16, gpu());
  const Dev<float> lse_oracle(want.lse, gpu());
  Outputs tc[2], simt;
  {
    const ImplScope force(CudaBackend::AttnImpl::TensorCore);
    tc[0] = run_gpu(in, &o_oracle, &lse_oracle);
    tc[1] = run_gpu(in, &o_oracle, &lse_oracle);
  }
  {
    const ImplScope force(CudaBackend::AttnImpl::Simt);
    simt = run_gpu(in, &o_oracle, &lse_oracle);
  }

  expect_close_rows(o_of(Y, tc[0]), o_of(Y, want), Y.N, Y.qw, hd, kTcTolO, 1, 0, "o");
  expect_close(tc[0].lse, want.lse, 1e-4, "lse");
  expect_close_rows(dq_of(Y, tc[0]), dq_of(Y, want), Y.N, Y.qw, hd, kTcTolGrad, 0, kTcAbsGrad, "dq");
  expect_close_rows(dk_of(Y, tc[0]), dk_of(Y, want), Y.N, Y.kw, hd, kTcTolGrad, 0, kTcAbsGrad, "dk");
  expect_close_rows(dv_of(Y, tc[0]), dv_of(Y, want), Y.N, Y.kw, hd, kTcTolGrad, 0, kTcAbsGrad, "dv");

  // both bf16 o are rounded: two ulps of slack
  expect_close_rows(o_of(Y, tc[0]), o_of(Y, simt), Y.N, Y.qw, hd, kTcTolO, 2, 0, "o vs SIMT");
  expect_close(tc[0].lse, simt.lse, 1e-4, "lse vs SIMT");
  expect_close_rows(dq_of(Y, tc[0]), dq_of(Y, simt), Y.N, Y.qw, hd, kTcTolGrad, 0, kTcAbsGrad, "dq vs SIMT");
  expect_close_rows(dk_of(Y, tc[0]), dk_of(Y, simt), Y.N, Y.kw, hd, kTcTolGrad, 0, kTcAbsGrad, "dk vs SIMT");
  expect_close_rows(dv_of(Y, tc[0]), dv_of(Y, simt), Y.N, Y.kw, hd, kTcTolGrad, 0, kTcAbsGrad, "dv vs SIMT");

  check_views_and_masked_rows(in, tc[0]);
  check_identical(tc[0], tc[1]);
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

TEST_CASE("cuda attention bf16 q k v o (SIMT kernels): round_bf16 of the f32 oracle over head_dim, L, GQA, masks "
          "and layouts", "[gpu][attention]") {
  const ImplScope simt(CudaBackend::AttnImpl::Simt);
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

TEST_CASE("cuda attention tensor cores (bf16): the oracle to the row-scale tolerance over head_dim, L, GQA, masks "
          "and strided qkv views", "[gpu][attention][tc]") {
  uint32_t seed = 11000, idx = 0;
  const MaskKind masks[] = {MaskKind::None, MaskKind::Random, MaskKind::LastRowMasked};
  for (int64_t hd : {32, 64, 128})
    for (int64_t L : {1, 7, 64, 65, 300, 1024})
      for (auto [H, KV] : {std::pair<int64_t, int64_t>{4, 4}, {4, 2}, {8, 2}}) {  // GQA groups 1, 2, 4
        const int64_t B = L >= 1024 && hd == 128 ? 1 : 1 + idx % 2;  // B 1 where the CPU oracle costs most
        const Case c{AttnShape{B, L, H, KV, hd}, masks[idx % 3], true, DType::BF16, (idx / 3) % 2 ? 8 : 0};
        run_tc_case(c, seed);
        seed += 10, ++idx;
      }
}

TEST_CASE("cuda attention tensor cores: every mask kind at a tail-heavy L, B 2, the 1b preset's GQA group of 6",
          "[gpu][attention][tc]") {
  uint32_t seed = 13000;
  for (int64_t hd : {32, 64, 128})
    for (MaskKind mk : {MaskKind::None, MaskKind::LeftPad, MaskKind::Random, MaskKind::LastRowMasked}) {
      run_tc_case(Case{AttnShape{2, 129, 12, 2, hd}, mk, true, DType::BF16, 8}, seed);
      seed += 10;
    }
}

TEST_CASE("cuda attention dispatch: Auto runs the tensor cores exactly where they apply", "[gpu][attention][tc]") {
  auto run = [](CudaBackend::AttnImpl impl, const Inputs& in) {
    const ImplScope force(impl);
    return run_gpu(in);
  };
  using I = CudaBackend::AttnImpl;
  // bf16, head_dim 64, 16-byte aligned views: Auto is the tensor-core result bit for bit, and differs from SIMT
  // (P rounded to bf16)
  const Case tc_case{AttnShape{2, 100, 4, 2, 64}, MaskKind::Random, true, DType::BF16, 8};
  const Inputs tc_in(tc_case, 15000);
  const Outputs a = run(I::Auto, tc_in), t = run(I::TensorCore, tc_in), m = run(I::Simt, tc_in);
  check_identical(a, t);
  CHECK(std::memcmp(a.o.data(), m.o.data(), a.o.size() * sizeof(float)) != 0);
  // bf16 with misaligned views (row stride not a multiple of 8), or head_dim 16: Auto is SIMT bit for bit;
  // forcing the tensor cores is fatal
  for (const Case& c : {Case{AttnShape{2, 100, 4, 2, 64}, MaskKind::Random, false, DType::BF16},
                        Case{AttnShape{2, 100, 4, 2, 16}, MaskKind::Random, true, DType::BF16}}) {
    INFO(case_name(c));
    const Inputs in(c, 15100);
    check_identical(run(I::Auto, in), run(I::Simt, in));
    REQUIRE_THROWS_WITH(run(I::TensorCore, in), Catch::Contains("AttnImpl::TensorCore needs bf16"));
  }
  // f32: always SIMT; the tensor cores are bf16 only
  const Case f32{AttnShape{1, 64, 2, 2, 64}, MaskKind::None, true};
  const Inputs f32_in(f32, 15200);
  REQUIRE_THROWS_WITH(run(I::TensorCore, f32_in), Catch::Contains("AttnImpl::TensorCore needs bf16"));
  CHECK(gpu().attention_impl() == I::Auto);  // every scope restored it
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
