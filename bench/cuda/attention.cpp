// bench_cuda_attention: CudaBackend attention forward and backward TFLOP/s for a preset's head shape, for each L on
// three paths: fp32 q/k/v/o on the SIMT kernels ("f32 simt"), bf16 q/k/v/o forced onto the SIMT kernels ("bf16
// simt": fp32 math on widened tiles) and bf16 on the tensor-core kernels ("bf16 tc", cuda_ops_attention_tc.cu).
// FLOPs as FlashAttention-2 counts them (Dao 2023, §4): forward 4 B heads L^2 hd (QK^T and PV), backward
// 2.5 x forward (five matmuls of the same size instead of two; the tensor-core backward recomputes S and dP in
// its dq kernel, 7 matmuls, but is credited 5 like FA-2). No causal mask (bidirectional).
// Usage: bench_cuda_attention [preset=1b] [B=4] [L=1024 2048 ...]
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cgrpo/backend/cuda_backend.h"
#include "cgrpo/core/philox.h"
#include "cgrpo/core/timer.h"
#include "cgrpo/model/model_config.h"

using namespace cgrpo;

int main(int argc, char** argv) {
  if (cuda_device_info().device_count == 0) {
    std::printf("SKIP: no CUDA device (%s)\n", cuda_device_info().error.c_str());
    return 77;
  }
  const ModelConfig c = ModelConfig::preset(argc > 1 ? argv[1] : "1b");
  const int64_t B = argc > 2 ? std::atoll(argv[2]) : 4;
  std::vector<int64_t> lengths;
  for (int i = 3; i < argc; ++i) lengths.push_back(std::atoll(argv[i]));
  if (lengths.empty()) lengths = {256, 512, 1024, 2048};
  const int64_t nh = c.num_attention_heads, nkv = c.num_key_value_heads, hd = c.head_dim();
  CudaBackend be(0);
  std::printf("device %s, heads %lld / kv %lld, head_dim %lld, B %lld\n", cuda_device_info().name.c_str(),
              (long long)nh, (long long)nkv, (long long)hd, (long long)B);
  std::printf("%6s %10s %10s %10s %10s %10s\n", "L", "path", "fwd ms", "fwd TF/s", "bwd ms", "bwd TF/s");
  using Impl = CudaBackend::AttnImpl;
  struct Path {
    const char* name;
    DType act;
    Impl impl;
  };
  const Path paths[] = {{"f32 simt", DType::F32, Impl::Simt}, {"bf16 simt", DType::BF16, Impl::Simt},
                        {"bf16 tc", DType::BF16, Impl::TensorCore}};
  for (int64_t L : lengths) {
    const int64_t N = B * L, QW = nh * hd, KW = nkv * hd;
    std::vector<float> h(size_t(N * QW));
    RngStream(1, RngPurpose::Test, 0, 0).fill_normal(h.data(), int64_t(h.size()), 0.0f, 1.0f);
    auto dev = [&](int64_t cols) {  // [N, cols] fp32 from the random values
      Buffer b = be.alloc(size_t(N * cols) * 4, MemCategory::Activations);
      be.upload(h.data(), b.data(), size_t(N * cols) * 4);
      return b;
    };
    auto view = [&](const Buffer& b, DType t, int64_t cols) {
      return TensorView(b.data(), t, {N, cols}, Device::CUDA);
    };
    Buffer q = dev(QW), k = dev(KW), v = dev(KW), o = dev(QW), dout = dev(QW), dq = dev(QW), dk = dev(KW),
           dv = dev(KW);
    auto bf16_of = [&](const Buffer& f, int64_t cols) {  // the same values rounded to bf16
      Buffer b = be.alloc(size_t(N * cols) * 2, MemCategory::Activations);
      be.cast(view(f, DType::F32, cols), view(b, DType::BF16, cols));
      return b;
    };
    Buffer qb = bf16_of(q, QW), kb = bf16_of(k, KW), vb = bf16_of(v, KW), ob = bf16_of(o, QW);
    Buffer lse = be.alloc(size_t(B * nh * L) * 4, MemCategory::Activations);
    const AttnShape s{B, L, nh, nkv, hd};
    const double flop = 4.0 * double(B * nh) * double(L) * double(L) * double(hd);
    for (const Path& p : paths) {
      const bool bf = p.act == DType::BF16;
      const TensorView tq = view(bf ? qb : q, p.act, QW), tk = view(bf ? kb : k, p.act, KW),
                       tv = view(bf ? vb : v, p.act, KW), to = view(bf ? ob : o, p.act, QW);
      be.set_attention_impl(p.impl);
      auto fwd = [&] { be.attention_fwd(s, tq, tk, tv, nullptr, to, lse.as<float>()); };
      auto bwd = [&] {
        be.attention_bwd(s, tq, tk, tv, nullptr, to, lse.as<float>(), view(dout, DType::F32, QW),
                         view(dq, DType::F32, QW), view(dk, DType::F32, KW), view(dv, DType::F32, KW));
      };
      auto time = [&](const auto& fn) {
        fn();
        be.synchronize();
        const int reps = 5;
        Timer t;
        for (int i = 0; i < reps; ++i) fn();
        be.synchronize();
        return t.elapsed_ms() / reps;
      };
      const double f_ms = time(fwd), b_ms = time(bwd);
      std::printf("%6lld %10s %10.3f %10.1f %10.3f %10.1f\n", (long long)L, p.name, f_ms, flop / f_ms / 1e9, b_ms,
                  2.5 * flop / b_ms / 1e9);
    }
    be.set_attention_impl(Impl::Auto);
  }
  return 0;
}
