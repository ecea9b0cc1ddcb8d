// CpuBackend: fp32 everywhere, GEMM on OpenBLAS. The reference every other backend is tested against; a
// bf16 x bf16 -> fp32 gemm widens its operands to fp32 (exact) and runs sgemm: bf16 products, fp32 accumulation.
// bf16 activations (backend.h) are the same idea for every op: widen the bf16 arguments, run the f32 op, round
// the bf16 outputs once. That is the definition the contract states, so this backend is its oracle.
// Op kernels live in src/backend/cpu_ops_*.cpp; every matmul inside them goes through gemm().
#pragma once

#include <memory>
#include <vector>

#include "cgrpo/backend/backend.h"

namespace cgrpo {

class CpuThreadPool;
class TokenSampler;

class CpuBackend : public Backend {  // not final: tests derive faulty backends from it
 public:
  explicit CpuBackend(int threads = 0);  // 0 = OpenBLAS default (OPENBLAS_NUM_THREADS or all cores)
  ~CpuBackend() override;
  const char* name() const override { return "cpu"; }
  Device device() const override { return Device::CPU; }
  int threads() const;

  void gemm(const TensorView& A, bool trans_a, const TensorView& B, bool trans_b, const TensorView& C,
            float alpha = 1.0f, float beta = 0.0f) override;

  void upload(const void* host, void* dev, size_t bytes) override;
  void download(const void* dev, void* host, size_t bytes) override;
  void copy_bytes(void* dst, const void* src, size_t bytes) override;
  void synchronize() override {}
  void axpby(int64_t n, float a, const float* x, float b, float* y) override;
  double sumsq(const float* x, int64_t n) override;
  void adamw(float* p, const float* g, float* m, float* v, int64_t n, const std::vector<DecaySegment>& segments,
             double lr, int64_t step, const AdamWParams& hp, float grad_scale) override;
  void cast(const TensorView& src, const TensorView& dst) override;

  void copy(const TensorView& src, const TensorView& dst) override;
  void zero(const TensorView& t) override;
  void embedding_fwd(const TensorView& table, const int32_t* ids, const TensorView& out) override;
  void embedding_bwd(const TensorView& dout, const int32_t* ids, const TensorView& dtable) override;
  void rmsnorm_fwd(const TensorView& x, const TensorView& w, float eps, const TensorView& y, float* rstd) override;
  void rmsnorm_bwd(const TensorView& dy, const TensorView& x, const TensorView& w, const float* rstd,
                   const TensorView& dx, const TensorView& dw) override;
  void rope_fwd(const TensorView& x, int64_t head_dim, const int32_t* pos, float theta) override;
  void rope_bwd(const TensorView& dx, int64_t head_dim, const int32_t* pos, float theta) override;
  void attention_fwd(const AttnShape& s, const TensorView& q, const TensorView& k, const TensorView& v,
                     const uint8_t* key_mask, const TensorView& o, float* lse) override;
  void attention_bwd(const AttnShape& s, const TensorView& q, const TensorView& k, const TensorView& v,
                     const uint8_t* key_mask, const TensorView& o, const float* lse, const TensorView& dout,
                     const TensorView& dq, const TensorView& dk, const TensorView& dv) override;
  void swiglu_fwd(const TensorView& g, const TensorView& u, const TensorView& out) override;
  void swiglu_bwd(const TensorView& dout, const TensorView& g, const TensorView& u, const TensorView& dg,
                  const TensorView& du) override;
  void bias_add(const TensorView& y, const TensorView& b) override;
  void bias_bwd(const TensorView& dy, const TensorView& db) override;
  void logsoftmax_gather_fwd(const TensorView& h, const TensorView& W, const int32_t* targets, int64_t chunk,
                             float* logp, float* lse) override;
  void logsoftmax_gather_bwd(const TensorView& h, const TensorView& W, const int32_t* targets, int64_t chunk,
                             const float* lse, const float* dlogp, const TensorView& dh,
                             const TensorView& dW) override;
  size_t logsoftmax_gather_workspace_bytes(int64_t R, int64_t V, int64_t chunk,
                                           DType operands = DType::F32) const override;
  // TokenSampler row by row (the oracle of every other backend's sample_rows)
  void sample_rows(const TensorView& logits, const double* u, const TokenSampling& s, Confidence kind,
                   int32_t* tokens, float* confidence) override;

  // Scratch memory owned by the backend (MemCategory::Workspace); grows to the largest request, never shrinks.
  // workspace_capacity_bytes() counts it, the per-thread scratch and the fp32 copies of bf16 operands.
  float* workspace(size_t floats);
  size_t workspace_capacity_bytes() const;

 private:
  // The element-wise loops and the per-(batch, head) attention run on a pool of threads() threads (the
  // OpenBLAS thread count at construction); each pool thread has its own scratch buffer.
  CpuThreadPool& pool() { return *pool_; }
  float* thread_workspace(int tid, size_t floats);
  TensorView widen(const TensorView& x, Buffer& dst);  // bf16 gemm operand -> compact fp32 copy in dst
  void widen_rows(const uint16_t* src, int64_t ld, int64_t rows, int64_t cols, float* out);  // [rows, cols] <- bf16
  // bf16 activations (backend.h "Activation dtype"): every op runs its f32 form on fp32 stand-ins and rounds.
  // stage(): t itself when f32; for bf16 a compact fp32 [rows, cols] in act_[slot], holding widen(t) when `read`.
  TensorView stage(const TensorView& t, int slot, bool read, const char* what);
  // dst (bf16 row tensor) = round_bf16(src), src being dst's stage(); a no-op when dst is f32 (src is dst).
  void unstage(const TensorView& src, const TensorView& dst);
  Buffer ws_;
  Buffer wa_, wb_;  // gemm: fp32 copies of bf16 operands A and B (grown to the largest, never shrink)
  Buffer act_[4];   // stage(): fp32 stand-ins of bf16 activations (attention_bwd stages q, k, v and o at once)
  std::vector<Buffer> tws_;
  std::unique_ptr<CpuThreadPool> pool_;
  // sample_rows: one TokenSampler (its [V] scratch) per pool thread, reused while (V, parameters) stay the same
  std::vector<std::unique_ptr<TokenSampler>> samplers_;
  int64_t sampler_vocab_ = 0;
  TokenSampling sampler_params_;
};

// A process-wide CpuBackend for host-memory bookkeeping (engines without a device backend, tools). Its
// thread count is the BLAS default; it never changes the BLAS thread setting.
CpuBackend& host_backend();

}  // namespace cgrpo
