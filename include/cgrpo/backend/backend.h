// Backend: the compute interface the model and optimizer are written against (ARCHITECTURE.md §2, §3.1).
// CpuBackend (OpenBLAS + threads) is the oracle; CudaBackend (cuBLASLt + own kernels) implements the
// same calls. Tensors are row-major TensorViews; shapes are checked, never assumed.
//
// Conventions of the model ops (spec/coupled_grpo.md §1.3):
// - "Row" tensors are 2-D [N, C] views whose inner stride is 1; the row stride may be larger than C, so a
//   column block of a fused projection (q, k, v inside qkv; gate, up inside gate_up) is passed as a view.
// - Index arrays (token ids, position ids, targets) are int32 and the key mask is uint8 (1 = may be
//   attended), all in the backend's device memory.
// - Forward outputs are written (=). Parameter gradients (dW, dtable, dw, db) accumulate (+=), so
//   micro-batches accumulate without extra buffers. Activation gradients are written (=) unless noted:
//   rmsnorm_bwd and logsoftmax_gather_bwd add into dx/dh (+=) because their input is a residual stream.
//
// Activation dtype (parallel.compute_dtype = bf16, ARCHITECTURE.md §3 item 4). The tensors a layer saves for
// backward and feeds to GEMMs may be bf16; each op below marks them "f32|bf16". Such an op reads bf16 exactly
// (widening), computes in fp32 exactly as its f32 form, and rounds every bf16 output once, to nearest even:
//   bf16 op(x) = round_bf16(f32 op(widen(x))).
// CpuBackend implements precisely that (the oracle), so a device backend matches it to the f32 op's tolerance
// plus one bf16 rounding (1 ulp = 2^-8 relative); attention is the one exception (tensor cores, see
// attention_fwd). Statistics (rstd, lse), the weights of non-matmul ops (w, b, table), the residual stream and every
// gradient stay f32. An op given bf16 where it says f32 is fatal.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "cgrpo/backend/sampling.h"
#include "cgrpo/core/buffer.h"
#include "cgrpo/core/tensor_view.h"
#include "cgrpo/optim/adamw.h"

namespace cgrpo {

// Bidirectional grouped-query attention over q [B*L, n_heads*head_dim] and k, v [B*L, n_kv_heads*head_dim]
// (row r = b*L + i; head j of q uses kv head j / (n_heads / n_kv_heads)).
struct AttnShape {
  int64_t B = 0, L = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual Device device() const = 0;

  // C = alpha * op(A) @ op(B) + beta * C                      (BLAS sgemm semantics, row-major)
  //   2-D: op(A) [m,k], op(B) [k,n], C [m,n]; op(X) = X^T when trans_x.
  //   3-D: strided batched over dim 0; a batch dim of 1 (or stride 0) broadcasts that operand.
  // The innermost stride of every operand must be 1; the row stride is the leading dimension.
  // dtypes: A, B both f32 or both bf16; C f32, or bf16 when A, B are bf16 and beta = 0 (fp32 accumulation, one
  // rounding of alpha * AB to bf16).
  virtual void gemm(const TensorView& A, bool trans_a, const TensorView& B, bool trans_b, const TensorView& C,
                    float alpha = 1.0f, float beta = 0.0f) = 0;

  // Dense nominal peak FLOP/s of the matmul math this backend runs on `matmul` inputs (the MFU denominator): f32 =
  // fp32 SIMT, or TF32 tensor cores under allow_tf32; bf16 = bf16 tensor cores. 0 = unknown (CPU).
  virtual double peak_flops(DType /*matmul*/ = DType::F32) const { return 0.0; }
  // fp32 GEMMs on TF32 tensor cores (fp32 storage and accumulation, inputs rounded to a 10-bit mantissa),
  // PyTorch's allow_tf32. Only the CUDA backend has it; asking another backend for it is fatal.
  virtual void allow_tf32(bool on);

  // --- memory on this backend's device. Every pointer an op takes is device memory unless it says "host".
  Buffer alloc(size_t bytes, MemCategory category) const { return Buffer(bytes, device(), category); }
  // Stream-ordered copies. upload() returns once the host memory may be reused; download() returns once the
  // copy, and all work queued before it, is done. copy_bytes is device to device.
  virtual void upload(const void* host, void* dev, size_t bytes) = 0;
  virtual void download(const void* dev, void* host, size_t bytes) = 0;
  virtual void copy_bytes(void* dst, const void* src, size_t bytes) = 0;
  virtual void synchronize() = 0;  // waits for all queued work (CPU: no-op)

  // --- flat fp32 vectors (optimizer, ZeRO engine)
  // y = a * x + b * y over n elements
  virtual void axpby(int64_t n, float a, const float* x, float b, float* y) = 0;
  // sum_i x_i^2 accumulated in double; returns the value on the host (a device backend waits for it)
  virtual double sumsq(const float* x, int64_t n) = 0;
  // out[k] = sumsq(x[k], n[k]) for k < count (host out), each with sumsq's own bits; a device backend queues them
  // all and waits once (the gradient norm over every unit and shard of a ZeRO step).
  virtual void sumsq_many(const float* const* x, const int64_t* n, int64_t count, double* out) {
    for (int64_t k = 0; k < count; ++k) out[k] = sumsq(x[k], n[k]);
  }
  // One torch-exact AdamW step (optim/adamw.h) on n elements; segments (host) tile [0, n).
  virtual void adamw(float* p, const float* g, float* m, float* v, int64_t n, const std::vector<DecaySegment>& segments,
                     double lr, int64_t step, const AdamWParams& hp, float grad_scale) = 0;
  // dst = src converted element-wise between f32, bf16 and f16 (round to nearest even), same numel, contiguous
  virtual void cast(const TensorView& src, const TensorView& dst) = 0;

  // dst = src; t = 0                                 row tensors [N, C] (or 1-D [C])
  virtual void copy(const TensorView& src, const TensorView& dst) = 0;
  virtual void zero(const TensorView& t) = 0;

  // out[n, :] = table[ids[n], :]                      table [V, H] f32|bf16 (bf16: widened, exact), ids [N],
  //                                                   out [N, H] f32
  virtual void embedding_fwd(const TensorView& table, const int32_t* ids, const TensorView& out) = 0;
  // dtable[ids[n], :] += dout[n, :]                   dout [N, H], dtable [V, H]
  virtual void embedding_bwd(const TensorView& dout, const int32_t* ids, const TensorView& dtable) = 0;

  // y = w * x * rstd, rstd = 1/sqrt(mean(x^2) + eps)   x, y [N, H], w [H], rstd [N] (saved, fp32); y f32|bf16
  virtual void rmsnorm_fwd(const TensorView& x, const TensorView& w, float eps, const TensorView& y,
                           float* rstd) = 0;
  // dx += d/dx, dw += d/dw                             dy, x, dx [N, H], w, dw [H], rstd [N]
  virtual void rmsnorm_bwd(const TensorView& dy, const TensorView& x, const TensorView& w, const float* rstd,
                           const TensorView& dx, const TensorView& dw) = 0;

  // In place, x [N, heads*head_dim], pos [N]:  x = x*cos + rotate_half(x)*sin with
  // inv_freq[j] = theta^(-2j/head_dim), angle = pos * inv_freq[j mod head_dim/2] (half-split convention).
  // x f32|bf16.
  virtual void rope_fwd(const TensorView& x, int64_t head_dim, const int32_t* pos, float theta) = 0;
  // In place, dx = R(pos)^T dy (the rotation by -angle). dx f32.
  virtual void rope_bwd(const TensorView& dx, int64_t head_dim, const int32_t* pos, float theta) = 0;

  // o = softmax(q k^T / sqrt(head_dim) + mask) v; key_mask [B, L] (nullptr = attend everywhere). A query
  // whose keys are all masked gets o = 0 and lse = -inf (safe softmax). lse [B, n_heads, L] is saved.
  // Only keys are masked: a pad query row (all-False in HF's 4-D mask) attends to the real keys here instead
  // of returning zeros; outputs at real rows are identical and pad-row outputs are never used (spec §1.4).
  // q, k, v, o f32|bf16, all four the same dtype.
  // With bf16 q, k, v, o a device backend may round the probabilities P and the score gradients dS (and dO) to bf16
  // as the operands of tensor-core products, as FlashAttention-2 does, instead of round_bf16(f32 op(widen(x))).
  // Its outputs then match the CPU oracle to about 2^-8 relative of each row's output scale: the GPU tests require,
  // per (row, head) with scale = max |want| over its head_dim columns, |got - want| <= 2^-7 scale + 1 bf16 ulp for
  // o and <= 2^-7 scale + 1e-4 for dq, dk, dv given a dout of bf16 values; lse (an fp32 sum) stays within
  // 1e-4 (1 + |lse|). Rounding an fp32 dO is not inside that bound: it moves dq_i by ~2^-9 |dO_i| times the norm
  // of the map dO_i -> dq_i, which can be a large fraction of a row whose dq cancels (few attendable keys). The 1e-4
  // (for the tests' unit-scale data) covers the fp32 noise of a gradient that vanishes exactly (one attendable key).
  // Masking, safe softmax and every shape rule are unchanged.
  virtual void attention_fwd(const AttnShape& s, const TensorView& q, const TensorView& k, const TensorView& v,
                             const uint8_t* key_mask, const TensorView& o, float* lse) = 0;
  // dq, dk, dv (=) from do, the forward inputs, o and lse. q, k, v, o f32|bf16 (one dtype, as forward);
  // dout, dq, dk, dv f32.
  virtual void attention_bwd(const AttnShape& s, const TensorView& q, const TensorView& k, const TensorView& v,
                             const uint8_t* key_mask, const TensorView& o, const float* lse, const TensorView& dout,
                             const TensorView& dq, const TensorView& dk, const TensorView& dv) = 0;

  // out = silu(g) * u                                  g, u, out [N, I]; f32|bf16, all three the same dtype
  virtual void swiglu_fwd(const TensorView& g, const TensorView& u, const TensorView& out) = 0;
  // dg, du (=)                                         g, u f32|bf16 (one dtype); dout, dg, du f32
  virtual void swiglu_bwd(const TensorView& dout, const TensorView& g, const TensorView& u, const TensorView& dg,
                          const TensorView& du) = 0;

  // y[n, :] += b                                       y [N, C] f32|bf16, b [C]
  virtual void bias_add(const TensorView& y, const TensorView& b) = 0;
  // db += sum_n dy[n, :]
  virtual void bias_bwd(const TensorView& dy, const TensorView& db) = 0;

  // Fused, vocabulary-chunked log-softmax gather (spec §3.6 selective_log_softmax, ARCHITECTURE.md §3.4):
  //   logp[r] = z[r, t_r] - logsumexp_v z[r, v],  z = h W^T,   h [R, H], W [V, H], targets [R], logp, lse [R]
  // Works on [R, chunk] logits at a time with an online logsumexp; [R, V] is never materialised.
  // h and W are both f32 or both bf16 (the head under bf16 activations, as autocast runs it): then z is a
  // bf16 x bf16 -> fp32 gemm (fp32 accumulation, z stays fp32) and the backward rounds dz to bf16 (RNE) as the
  // operand of both gradient gemms (dh, dW stay fp32). The softmax and its sums are fp32 either way.
  virtual void logsoftmax_gather_fwd(const TensorView& h, const TensorView& W, const int32_t* targets,
                                     int64_t chunk, float* logp, float* lse) = 0;
  // dz = dlogp[r] * (onehot(t_r) - softmax(z_r));  dh += dz W,  dW += dz^T h   (chunk by chunk, z recomputed)
  virtual void logsoftmax_gather_bwd(const TensorView& h, const TensorView& W, const int32_t* targets,
                                     int64_t chunk, const float* lse, const float* dlogp, const TensorView& dh,
                                     const TensorView& dW) = 0;
  // Peak workspace (bytes) either direction of logsoftmax_gather uses for R rows, vocabulary V and a chunk, with
  // h and W of dtype `operands` (bf16 adds dz's bf16 copy [R, chunk]).
  virtual size_t logsoftmax_gather_workspace_bytes(int64_t R, int64_t V, int64_t chunk,
                                                   DType operands = DType::F32) const = 0;

  // spec §2.3 sample_tokens on each row of logits [R, V] (fp32 row tensor in this device's memory; OVERWRITTEN,
  // it is the op's scratch): row r draws with u[r] (host [R], in [0, 1); unused, and u may be nullptr, at
  // temperature 0) and writes tokens[r] and confidence[r] (host [R]; 0 for Confidence::None). Returns once they
  // are written. Semantics are TokenSampler(V, s).sample(row, u[r], kind) (rollout/token_sampler.h): CpuBackend
  // runs exactly that, row by row; a device backend gives the same tokens except where a cumulative probability
  // sum is within double rounding of its threshold, and the confidence to about one float ulp (see its header).
  // Non-finite logits are fatal (TokenSampler's checks; a device backend also rejects any NaN).
  virtual void sample_rows(const TensorView& logits, const double* u, const TokenSampling& s, Confidence kind,
                           int32_t* tokens, float* confidence) = 0;
};

// Shape bookkeeping shared by every backend's gemm.
struct GemmShape {
  int64_t batch, m, n, k;
  int64_t lda, ldb, ldc;               // row strides (leading dimensions)
  int64_t stride_a, stride_b, stride_c;  // batch strides in elements (0 = broadcast)
};
GemmShape gemm_shape(const TensorView& A, bool trans_a, const TensorView& B, bool trans_b, const TensorView& C);

// A [rows, cols] view of p with row stride ld (a column block of a wider row-major matrix): fp32, or of dtype dt
// starting `first` rows in.
inline TensorView rows_view(const float* p, int64_t rows, int64_t cols, int64_t ld, Device d = Device::CPU) {
  TensorView t(const_cast<float*>(p), DType::F32, {rows, cols}, d);
  t.strides[0] = ld;
  return t;
}
inline TensorView rows_view(const void* p, DType dt, int64_t first, int64_t rows, int64_t cols, int64_t ld,
                            Device d = Device::CPU) {
  TensorView t(const_cast<char*>(static_cast<const char*>(p)) + size_t(first * ld) * dtype_size(dt), dt, {rows, cols},
               d);
  t.strides[0] = ld;
  return t;
}

// Checks that t is a 2-D fp32 [rows, cols] row tensor (inner stride 1) and returns its row stride.
int64_t row_stride(const TensorView& t, int64_t rows, int64_t cols, const char* what);
// The same for an activation marked "f32|bf16" above: f32 or bf16.
int64_t act_row_stride(const TensorView& t, int64_t rows, int64_t cols, const char* what);

// Row strides of attention's q, k, v, o (or dq, dk, dv, dout) views and the GQA group size n_heads / n_kv_heads,
// after checking the shape and every view; shared by every backend so the messages are the same. q, k, v, o may
// be bf16 when all four are (activations); every other dtype mix is fatal.
struct AttnLayout {
  int64_t ldq, ldk, ldv, ldo, group;
};
AttnLayout attention_layout(const AttnShape& s, const TensorView& q, const TensorView& k, const TensorView& v,
                            const TensorView& o);

// Shape of a logsoftmax_gather call after the checks every backend makes (h [R, H], W [V, H] row tensors of one dtype,
// f32 or bf16, chunk > 0, a vocabulary unless R = 0): C = min(chunk, V) columns per chunk, row strides ldh, ldw.
struct LsgShape {
  int64_t R, H, V, C, ldh, ldw;
  DType dtype;  // of h and W
};
LsgShape logsoftmax_gather_shape(const TensorView& h, const TensorView& W, int64_t chunk);

// kind: "cpu" or "cuda". local_rank picks the device on multi-GPU nodes. threads: 0 = leave the BLAS default.
std::unique_ptr<Backend> make_backend(const std::string& kind, int local_rank = 0, int threads = 0);

// The GPU this rank would use (local_rank % devices) runs a kernel, a cuBLASLt GEMM and a one-device NCCL
// all-reduce with exact results: "" when it does, else what failed (or why there is no GPU). *name gets the
// device's name when there is one.
std::string device_selfcheck(int local_rank, std::string* name = nullptr);

}  // namespace cgrpo
