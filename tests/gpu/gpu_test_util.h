// Shared helpers of the GPU tests (header only): the process's CudaBackend and MPI, device copies of host vectors,
// row tensors stored as column blocks of wider matrices, and comparisons.
#pragma once

#include <catch2/catch.hpp>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <utility>
#include <vector>

#include "cgrpo/backend/cuda_backend.h"
#include "cgrpo/comm/mpi_communicator.h"
#include "cgrpo/core/dtype.h"
#include "cgrpo/core/philox.h"
#include "cgrpo/model/model_config.h"

namespace gpu_test {

using namespace cgrpo;

inline std::vector<float> randn(size_t n, uint32_t sample, float scale = 1.0f) {
  std::vector<float> v(n);
  RngStream(7, RngPurpose::Test, 0, sample).fill_normal(v.data(), static_cast<int64_t>(n), 0.0f, scale);
  return v;
}
inline std::vector<float> round_bf16(std::vector<float> v) {
  for (float& x : v) x = bf16_to_f32(f32_to_bf16(x));
  return v;
}
inline std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = f32_to_bf16(v[i]);
  return h;
}
inline std::vector<float> from_bf16(const std::vector<uint16_t>& h) {
  std::vector<float> v(h.size());
  for (size_t i = 0; i < h.size(); ++i) v[i] = bf16_to_f32(h[i]);
  return v;
}
// The values an activation of dtype t can hold: v itself for f32, v rounded to bf16 for bf16.
inline std::vector<float> as_act(std::vector<float> v, DType t) {
  return t == DType::BF16 ? round_bf16(std::move(v)) : v;
}
// One bf16 ulp at x: 2^(e - 7) for |x| in [2^e, 2^(e+1)) (8 significant bits), 2^-133 below the smallest normal.
// A bf16 output is round_bf16 of an fp32 result; two fp32 results within tol of each other round to values within
// tol + one ulp (backend.h: a device backend matches the oracle to the f32 tolerance plus one bf16 rounding).
inline double bf16_ulp(float x) {
  const double a = std::fabs(double(x));
  if (!(a >= std::ldexp(1.0, -126))) return std::ldexp(1.0, -133);
  int e = 0;
  std::frexp(a, &e);  // a = m 2^e, m in [0.5, 1): the binade is [2^(e-1), 2^e)
  return std::ldexp(1.0, e - 1 - 7);
}

// One CudaBackend for the whole test process (inline: shared by every test file). The device the
// NcclCommunicator picks too under mpirun: node-local rank % device count.
inline CudaBackend& gpu() {
  static CudaBackend be([] {
    const char* lr = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    return (lr ? std::atoi(lr) : 0) % cuda_device_info().device_count;
  }());
  return be;
}

// MPI for the tests that need a communicator: initialised once per process (a singleton without mpirun) and
// finalised at exit, after everything the tests built on it.
inline void ensure_mpi() {
  int inited = 0;
  MPI_Initialized(&inited);
  static std::unique_ptr<MpiSession> session;
  if (!inited) session = std::make_unique<MpiSession>(nullptr, nullptr);
}

// A device copy of a host vector, as a view with `dims` (and the given row stride when > 0).
struct Dev {
  Buffer buf;
  TensorView view;
  template <class T>
  Dev(const std::vector<T>& host, DType t, std::initializer_list<int64_t> dims, int64_t ld = 0)
      : buf(host.size() * sizeof(T) + 64, Device::CUDA) {
    gpu().upload(host.data(), buf.data(), host.size() * sizeof(T));
    view = TensorView(buf.data(), t, dims, Device::CUDA);
    if (ld > 0) {
      view.strides[view.ndim - 2] = ld;
      if (view.ndim == 3) view.strides[0] = view.shape[0] > 1 ? view.shape[1] * ld : 0;
    }
  }
  template <class T>
  std::vector<T> get(size_t n) {
    std::vector<T> h(n);
    gpu().download(buf.data(), h.data(), n * sizeof(T));
    return h;
  }
  template <class T>
  T* ptr() const { return static_cast<T*>(buf.data()); }
};

// How a row tensor [N, C] is stored: as columns [off, off + C) of an [N, C + pad] matrix (pad >= off).
struct Layout {
  int64_t pad, off;
};
// off 0, pad 0: contiguous (float4 path when C % 4 == 0); off 1: unaligned rows (scalar path);
// off 4, pad 8: a column-block view with a row stride > C that still allows float4.
inline const std::vector<Layout>& layouts() {
  static const std::vector<Layout> l = {{0, 0}, {3, 1}, {8, 4}};
  return l;
}

// A row tensor with the logical values `vals` [N, C] stored with `lay` on the host and on the device; the
// padding columns hold other random values, which every op must leave alone. dtype BF16 (an activation):
// the device holds bf16, the host backing the same values widened (vals and padding are rounded to bf16), so
// the CPU oracle's f32 op on cpu() is the f32 op on widen(x); round_host() then rounds its outputs once.
struct Rows {
  int64_t N, C, ld, off;
  DType dtype;
  std::vector<float> host;  // [N, ld] backing, the CPU oracle works on it in place (fp32)
  Dev dev;                  // the same backing on the device, in dtype
  Rows(const std::vector<float>& vals, int64_t n, int64_t c, Layout lay, uint32_t pad_seed = 999,
       DType t = DType::F32)
      : N(n), C(c), ld(c + lay.pad), off(lay.off), dtype(t), host(as_act(backing(vals, n, c, lay, pad_seed), t)),
        dev(t == DType::BF16 ? Dev(to_bf16(host), t, {int64_t(host.size())}) : Dev(host, t, {int64_t(host.size())})) {}
  TensorView cpu() { return rows_view(host.data() + off, N, C, ld); }
  TensorView gpu_view() const {
    TensorView v(static_cast<char*>(dev.buf.data()) + off * int64_t(dtype_size(dtype)), dtype, {N, C}, Device::CUDA);
    v.strides[0] = ld;
    return v;
  }
  std::vector<float> got() {
    return dtype == DType::BF16 ? from_bf16(dev.get<uint16_t>(host.size())) : dev.get<float>(host.size());
  }
  // After the CPU oracle wrote its fp32 outputs into host: the bf16 op's result (padding is already bf16).
  void round_host() { host = as_act(std::move(host), dtype); }
  // tol (over the backing) plus one bf16 ulp of want at the logical elements when dtype is BF16; padding keeps tol.
  std::vector<double> act_tol(std::vector<double> tol) const {
    if (dtype == DType::BF16)
      for (int64_t n = 0; n < N; ++n)
        for (int64_t j = 0; j < C; ++j) {
          const size_t i = size_t(n * ld + off + j);
          tol[i] += bf16_ulp(host[i]);
        }
    return tol;
  }
  // logical [N, C] values of a backing
  std::vector<float> logical(const std::vector<float>& b) const {
    std::vector<float> v(size_t(N * C));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t j = 0; j < C; ++j) v[size_t(n * C + j)] = b[size_t(n * ld + off + j)];
    return v;
  }

 private:
  static std::vector<float> backing(const std::vector<float>& vals, int64_t n, int64_t c, Layout lay, uint32_t seed) {
    const int64_t ld = c + lay.pad;
    std::vector<float> b = randn(size_t(std::max<int64_t>(n * ld, 1)), seed);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t j = 0; j < c; ++j) b[size_t(r * ld + lay.off + j)] = vals[size_t(r * c + j)];
    return b;
  }
};

inline uint32_t bits(float f) { return f32_bits(f); }

// Bit-identical (NaN payloads included).
inline void expect_bits(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    if (bits(got[i]) == bits(want[i])) continue;
    INFO(what << " element " << i << ": got " << got[i] << " want " << want[i]);
    REQUIRE(bits(got[i]) == bits(want[i]));
  }
}

// |got - want| <= tol[i]
inline void expect_within(const std::vector<float>& got, const std::vector<float>& want, const std::vector<double>& tol,
                          const char* what) {
  REQUIRE(got.size() == want.size());
  REQUIRE(tol.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = std::fabs(double(got[i]) - double(want[i]));
    if (d <= tol[i]) continue;
    INFO(what << " element " << i << ": got " << got[i] << " want " << want[i] << " |diff| " << d << " > tol "
              << tol[i]);
    REQUIRE(d <= tol[i]);
  }
}

// |got - want| <= rel * (|want| + sqrt(k) * scale), the bound of an fp32 dot product of length k
inline void expect_close(const std::vector<float>& got, const std::vector<float>& want, double rel, int64_t k) {
  REQUIRE(got.size() == want.size());
  const double scale = std::sqrt(double(std::max<int64_t>(k, 1)));
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::abs(double(got[i]) - want[i]) <= rel * (std::abs(double(want[i])) + scale)) continue;
    INFO("element " << i << ": got " << got[i] << " want " << want[i]);
    REQUIRE(std::abs(double(got[i]) - want[i]) <= rel * (std::abs(double(want[i])) + scale));
  }
}

// The tiny preset with an odd vocabulary (V = 301: a 128-column chunk leaves a tail of 45) and an MLP width
// that is not a power of two: hidden 64 = 4 heads x 16, 2 kv heads (GQA group 2), 2 layers.
inline ModelConfig small_model_config() {
  ModelConfig c = ModelConfig::preset("tiny");
  c.vocab_size = 301;
  c.mask_token_id = 300;
  c.pad_token_id = c.bos_token_id = c.eos_token_id = 299;
  c.intermediate_size = 96;
  c.num_hidden_layers = 2;
  return c;
}

}  // namespace gpu_test
