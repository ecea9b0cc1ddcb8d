// bench_cuda_attention: CudaBackend attention forward and backward TFLOP/s for a preset's head shape.
// FLOPs as FlashAttention-2 counts them (Dao 2023, §4): forward 4 B heads L^2 hd (QK^T and PV), backward
// 2.5 x forward (five matmuls of the same size instead of two). No causal mask (bidirectional).
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
  std::printf("%6s %12s %12s %12s %12s\n", "L", "fwd ms", "fwd TF/s", "bwd ms", "bwd TF/s");
  for (int64_t L : lengths) {
    const int64_t N = B * L, QW = nh * hd, KW = nkv * hd;
    std::vector<float> h(size_t(N * QW));
    RngStream(1, RngPurpose::Test, 0, 0).fill_normal(h.data(), int64_t(h.size()), 0.0f, 1.0f);
    auto dev = [&](int64_t cols) {
      Buffer b = be.alloc(size_t(N * cols) * 4, MemCategory::Activations);
      be.upload(h.data(), b.data(), size_t(N * cols) * 4);
      return b;
    };
    Buffer q = dev(QW), k = dev(KW), v = dev(KW), o = dev(QW), dout = dev(QW), dq = dev(QW), dk = dev(KW),
           dv = dev(KW);
    Buffer lse = be.alloc(size_t(B * nh * L) * 4, MemCategory::Activations);
    auto view = [&](Buffer& b, int64_t cols) { return TensorView(b.data(), DType::F32, {N, cols}, Device::CUDA); };
    const AttnShape s{B, L, nh, nkv, hd};
    auto fwd = [&] { be.attention_fwd(s, view(q, QW), view(k, KW), view(v, KW), nullptr, view(o, QW), lse.as<float>()); };
    auto bwd = [&] {
      be.attention_bwd(s, view(q, QW), view(k, KW), view(v, KW), nullptr, view(o, QW), lse.as<float>(),
                       view(dout, QW), view(dq, QW), view(dk, KW), view(dv, KW));
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
    const double flop = 4.0 * double(B * nh) * double(L) * double(L) * double(hd);
    std::printf("%6lld %12.3f %12.1f %12.3f %12.1f\n", (long long)L, f_ms, flop / f_ms / 1e9, b_ms,
                2.5 * flop / b_ms / 1e9);
  }
  return 0;
}
