// CudaBackend: the Backend interface on one CUDA device (ARCHITECTURE.md §3.1, §3.4).
//
// Status (issue 12, CUDA backend):
//   exists:  gemm through cuBLASLt (fp32 or bf16 A/B, fp32 C or bf16 C with beta = 0, CUBLAS_COMPUTE_32F
//            accumulate, row-major views mapped onto column-major by swapping operands (colmajor_gemm.h), strided
//            batched with broadcast (batch stride 0), alpha/beta, k = 0 handled as C = beta C, a per-shape
//            cache of descriptors + the heuristic's algorithm, workspace from CudaContext); a stream-ordered
//            caching allocator for Device::CUDA Buffers (cudaMallocAsync/cudaFreeAsync from the device's
//            default pool, release threshold UINT64_MAX: steady-state training does no cudaMalloc);
//            host<->device copies; every fp32 model op (src/backend/cuda_ops_basic.cu:
//            copy, zero, embedding, RMSNorm, RoPE, SwiGLU, bias), the flat-vector ops of the optimizer and
//            ZeRO engine (cuda_ops_flat.cu: axpby, sumsq, AdamW, casts) and the fused vocabulary-chunked
//            logsoftmax_gather (cuda_ops_logsoftmax.cu), each tested against CpuBackend (tests/gpu); their
//            per-element math lives in kernel_math.h, unit-tested on the CPU; NcclCommunicator
//            (comm/nccl_communicator.h); attention fwd/bwd as fp32 SIMT flash attention (cuda_ops_attention.cu,
//            FlashAttention-2 tiling in flash_tile.h, no [L, L] buffer); TF32 math (allow_tf32) and the
//            device's nominal peak (peak_flops) for MFU; sample_rows, the rollout's sample_tokens on the device
//            (cuda_sample.cu: the passes of sample_row.h, one block per row; see its declaration below); the bf16
//            forms of the activation arguments backend.h marks "f32|bf16" (gemm C, rmsnorm_fwd y, rope_fwd x,
//            attention q/k/v/o, swiglu g/u/out, bias_add y): the same kernels templated on the element type, fp32
//            math, one rounding per bf16 output, tested against round_bf16 of the f32 oracle (tests/gpu); bf16
//            attention on tensor cores (cuda_ops_attention_tc.cu: FA-2 forward and backward on mma.sync m16n8k16,
//            ldmatrix, cp.async double buffering; head_dim 32, 64, 128; P and dS rounded to bf16, backend.h's
//            attention tolerance; its fragment maps mma_frag.h unit-tested on the CPU), chosen by
//            set_attention_impl (default: wherever it applies). None of it has run on a GPU yet (no device was
//            lent).
//            On devices whose shared memory per block is too small for the sampler kernel (sm_86 / sm_89),
//            sample_rows runs the CPU oracle on a host copy of the rows (set_sample_impl).
//   remains: every measured number (the tensor-core attention's tolerances, 2^-8 / 2^-7 of the row scale, are
//            reasoned, not yet calibrated on a device).
//
// Determinism: every op gives the same bits on every run for the same shapes (no float atomics; reductions
// use fixed trees and fixed row partitions). Bit-identical to CpuBackend: copy, zero, embedding_fwd/bwd,
// bias_add, axpby, adamw, cast. Within rounding of it (documented per op in the .cu files): the rest, attention
// included.
//
// Bad indices (token ids, targets) are checked on the device: the kernel skips the access and records the
// first offender; the next synchronize() or download() (sumsq included) is fatal with the op, position and id.
//
// Memory model: one CudaBackend per process. Device::CUDA Buffers are allocated and freed in stream order on
// the stream of the most recently constructed live CudaBackend; use them on that stream (all ops do), or
// after synchronize(). Another CudaBackend alive at the same time (tests) takes the allocator stream over
// until it is destroyed.
//
// This header has no CUDA includes, so CPU code can name the type; only src/**/*.cu and cuda_*.cpp define it.
// All ops are stream-ordered on context().stream(); download() and synchronize() wait for them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "cgrpo/backend/backend.h"
#include "cgrpo/backend/cuda_context.h"

namespace cgrpo {

class CudaBackend final : public Backend {
 public:
  // device: usually local_rank % device_count. Installs the Device::CUDA Buffer allocator.
  explicit CudaBackend(int device, size_t workspace_bytes = kCublasLtWorkspaceBytes);
  ~CudaBackend() override;
  const char* name() const override { return "cuda"; }
  void allow_tf32(bool on) override;  // fp32 GEMMs on TF32 tensor cores from the next call on
  double peak_flops(DType matmul = DType::F32) const override;  // 0 = unknown arch (sm_80 and sm_90 are known)
  Device device() const override { return Device::CUDA; }
  const CudaContext& context() const { return ctx_; }

  // A and B of one dtype (f32 or bf16), C f32, or bf16 (A, B bf16 and beta = 0, else fatal); every operand in
  // device memory. fp32 accumulate.
  void gemm(const TensorView& A, bool trans_a, const TensorView& B, bool trans_b, const TensorView& C,
            float alpha = 1.0f, float beta = 0.0f) override;
  size_t gemm_plans_cached() const;  // distinct (shape, layout, dtype, alignment) keys seen so far
  // Bytes of the attention workspace (backward's D = rowsum(dO o O), [B, heads, L] fp32; the tensor-core backward
  // adds bf16(dO) [B*L, heads*head_dim]), grown on demand.
  size_t attention_workspace_bytes() const { return attn_ws_.bytes(); }

  // Stream-ordered copies on the context's stream; download() waits for the copy (and all work before it).
  void upload(const void* host, void* device_ptr, size_t bytes) override;
  void download(const void* device_ptr, void* host, size_t bytes) override;
  void copy_bytes(void* dst, const void* src, size_t bytes) override;
  void synchronize() override;

  void axpby(int64_t n, float a, const float* x, float b, float* y) override;
  double sumsq(const float* x, int64_t n) override;
  void sumsq_many(const float* const* x, const int64_t* n, int64_t count, double* out) override;
  void adamw(float* p, const float* g, float* m, float* v, int64_t n, const std::vector<DecaySegment>& segments,
             double lr, int64_t step, const AdamWParams& hp, float grad_scale) override;
  void cast(const TensorView& src, const TensorView& dst) override;

  // Flash attention (cuda_ops_attention.cu): head_dim 16, 32, 64 or 128; q, k, v, o f32 or bf16 (one dtype), lse
  // and the gradients f32; everything, key_mask included, in device memory. f32 runs fp32 SIMT kernels; bf16 runs
  // the tensor-core kernels (cuda_ops_attention_tc.cu: bf16 products, P and dS rounded to bf16, backend.h) when
  // head_dim is 32, 64 or 128 and q, k, v, o are 16-byte aligned (base and row stride), else the SIMT kernels
  // (fp32 math, o rounded once). set_attention_impl overrides the choice (tests, benchmarks):
  //   Auto: as above; Simt: always the SIMT kernels; TensorCore: the tensor-core kernels, fatal where they do not
  //   apply.
  enum class AttnImpl { Auto, Simt, TensorCore };
  void set_attention_impl(AttnImpl impl) { attn_impl_ = impl; }
  AttnImpl attention_impl() const { return attn_impl_; }
  void attention_fwd(const AttnShape& s, const TensorView& q, const TensorView& k, const TensorView& v,
                     const uint8_t* key_mask, const TensorView& o, float* lse) override;
  void attention_bwd(const AttnShape& s, const TensorView& q, const TensorView& k, const TensorView& v,
                     const uint8_t* key_mask, const TensorView& o, const float* lse, const TensorView& dout,
                     const TensorView& dq, const TensorView& dk, const TensorView& dv) override;

  void copy(const TensorView& src, const TensorView& dst) override;
  void zero(const TensorView& t) override;
  void embedding_fwd(const TensorView& table, const int32_t* ids, const TensorView& out) override;
  void embedding_bwd(const TensorView& dout, const int32_t* ids, const TensorView& dtable) override;
  void rmsnorm_fwd(const TensorView& x, const TensorView& w, float eps, const TensorView& y, float* rstd) override;
  void rmsnorm_bwd(const TensorView& dy, const TensorView& x, const TensorView& w, const float* rstd,
                   const TensorView& dx, const TensorView& dw) override;
  void rope_fwd(const TensorView& x, int64_t head_dim, const int32_t* pos, float theta) override;
  void rope_bwd(const TensorView& dx, int64_t head_dim, const int32_t* pos, float theta) override;
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

  // Scratch device memory owned by the backend (MemCategory::Workspace); grows to the largest request, never
  // shrinks. Stream-ordered: valid for work queued on context().stream() until the next call that grows it.
  float* workspace(size_t floats);
  size_t workspace_capacity_bytes() const { return ws_.bytes(); }

  // The device's default memory pool, which backs every Device::CUDA Buffer.
  struct PoolStats {
    uint64_t reserved_bytes = 0;     // held by the pool (cudaMemPoolAttrReservedMemCurrent)
    uint64_t used_bytes = 0;         // handed out to live allocations (cudaMemPoolAttrUsedMemCurrent)
    uint64_t release_threshold = 0;  // cudaMemPoolAttrReleaseThreshold (UINT64_MAX: never trimmed)
  };
  PoolStats pool_stats() const;

  // spec §2.3 sample_tokens, one block of 512 threads per row (src/backend/cuda_sample.cu runs the passes of
  // backend/sample_row.h): only u [R] goes up and (token, confidence) [R] come down, never the logits.
  // Against CpuBackend (TokenSampler), what is exact and what is not:
  //  - exact: the tempered logits (IEEE division, written back), the argmax and every tie rule (top-p ranks by
  //    logit desc then id asc, +0 above -0; top-k keeps every logit >= the k-th largest, -0 == +0; lowest id
  //    wins the argmax), each token's mass e = exp(z - m) (the CPU's AVX2 polynomial, bit for bit: this needs
  //    the CPU build's default -mavx2 -mfma, otherwise TokenSampler uses std::exp and e differs by ~1 ulp), and
  //    the ORDER the draw walks the kept tokens in (by id, or TokenSampler's quickselect arrangement, replayed);
  //  - rounded differently: the double sums (softmax sum S, the cumulative masses behind the top-p cut and the
  //    draw, the entropy sum) run in another order, ~1e-16 relative apart. A kept set or a token therefore
  //    differs only when a cumulative mass lies within that rounding of top_p * S or u * S_kept (probability
  //    ~1e-15 per row for continuous logits; sums of exactly representable masses, e.g. equal logits, agree
  //    exactly). Prob and Margin agree to 1 float ulp; NegEntropy to 1 ulp plus ~1e-15 absolute.
  //  - a NaN logit anywhere is fatal here (TokenSampler only notices NaN at the maximum: its exp maps NaN to a
  //    tiny mass).
  // Deterministic: fixed-order reductions, no float atomics; a row's result depends neither on the other rows
  // nor on R. Equal to the host emulation tests/common/sample_emulation.h bit for bit. Cost per row: ~20-40
  // passes over V (radix selects of 8 x 4-bit digits for top-p and top-k) plus, after a top-p cut with
  // temperature > 0, the replay (O(n log n) over the quickselect's array, scratch 16 V bytes per resident block).
  void sample_rows(const TensorView& logits, const double* u, const TokenSampling& s, Confidence kind,
                   int32_t* tokens, float* confidence) override;
  // Where sample_rows runs. The kernel needs ~103 KB of shared memory per block, which sm_80 / sm_90 give
  // (163 / 227 KB) but sm_86 / sm_89 (A10, A40, L4, L40S: 99 KB) do not: there Auto downloads the logits and
  // runs CpuBackend::sample_rows, the oracle the kernel reproduces (one warning per backend). Host forces that
  // path (tests: it must agree with the kernel).
  enum class SampleImpl { Auto, Host };
  void set_sample_impl(SampleImpl impl) { sample_impl_ = impl; }
  bool sample_kernel_fits() const;  // this device can run the sampler kernel

 private:
  struct GemmCache;
  // Waits for the stream, then turns a device-side error record (a bad id found by a kernel) into a fatal
  // error and clears it. Called by synchronize() and download().
  void sync_and_check();
  void* device_error() const { return err_dev_.data(); }  // cuda::DeviceError*

  CudaContext ctx_;
  std::unique_ptr<GemmCache> gemm_cache_;
  bool tf32_ = false;
  AttnImpl attn_impl_ = AttnImpl::Auto;
  Buffer ws_;              // workspace(), see above
  Buffer err_dev_;         // cuda::DeviceError on the device, zero = no error
  void* err_host_ = nullptr;  // pinned host copy of it
  Buffer sample_io_;  // sample_rows: u [R] double, then the per-row results
  SampleImpl sample_impl_ = SampleImpl::Auto;
  mutable int sample_fits_ = -1;    // sample_kernel_fits(), once known
  std::vector<float> sample_host_;  // the host path's copy of the logits [R, V]
  Buffer attn_ws_;  // attention workspace, declared last so it is freed before the context's stream
  float* attention_workspace(size_t floats);  // at least `floats` floats (grows; waits for the stream first)
};

}  // namespace cgrpo
