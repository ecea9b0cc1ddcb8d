// DreamModel: the Dream / DiffuCoder transformer (spec §1.3) on a Backend: bidirectional GQA attention,
// RoPE with explicit positions, SwiGLU MLP, RMSNorm; hidden states everywhere, logits or log-probs only
// at requested rows through the fused vocabulary-chunked log-softmax gather. The model never
// communicates: parameters and gradients are flat buffers owned by the caller (ParamLayout offsets).
//
// Use: bind(params, grads) -> forward(in, grad) -> logprobs(rows, targets) -> backward(dlogp).
// Gradients accumulate (+=) into the bound gradient buffer; zeroing it is the caller's job.
// With set_recompute(true) only each layer's input is kept; backward recomputes a layer's activations
// right before its backward, giving bit-identical gradients with O(1 layer) activation memory.
//
// Parameter dtype (set_param_dtype; ARCHITECTURE.md §3.4): F32 (default) runs fp32 everywhere. With BF16 the
// ParamSource hands out bf16 units (the flat ParamLayout element order); activations, gradients, RMSNorm
// statistics, softmax and log-softmax stay fp32:
//   - every matmul against a weight (q/k/v, o, gate/up, down projections, forward, recompute and backward's
//     dX = dY W) and every weight-gradient matmul (dW += dY^T X) is a bf16 x bf16 -> fp32 gemm with fp32
//     accumulation: the fp32 activation operands are rounded to bf16 (RNE) into model scratch first, as under
//     torch autocast. Gradients are fp32 and accumulate (+=) into the fp32 gradient buffers;
//   - the embedding gathers bf16 rows of its table, widened (exact);
//   - the LM head (the fused log-softmax gather, logits() and sample(), always the same math, so logits() and
//     logprobs() agree): under bf16 activations a bf16 x bf16 -> fp32 gemm of the bf16 head with the selected
//     fp32 hidden rows rounded to bf16, the gather's dz rounded to bf16 for its gradient gemms (backend.h), as
//     autocast runs a bf16 model's lm_head; under fp32 activations fp32 math on an fp32 copy of the head;
//   - every other use of a weight (RMSNorm weights, the qkv bias) reads an fp32 copy cast from bf16;
//   - param_dtype_scratch_bytes() is the device memory that costs: the fp32 head [V, H] (fp32 activations only),
//     one fp32 copy of the largest small weight, and bf16 copies of one matmul's activation operands.
//
// Activation dtype (set_compute_dtype(BF16), parallel.compute_dtype = bf16; needs bf16 parameters): the tensors
// a layer saves for backward and feeds to matmuls are bf16: a1, qkv, o, a2, gu, m (the Backend ops marked
// "f32|bf16" read them and round their outputs once). The q/k/v and gate/up projections write bf16 directly
// (bf16 x bf16 -> bf16, fp32 accumulation); so do RMSNorm (a1, a2), RoPE, attention (o) and SwiGLU (m). The
// residual stream (x0, x1, layer outputs), RMSNorm statistics, the attention lse, the final hidden states, the
// log-softmax and every gradient stay fp32, so the o and down projections accumulate into fp32 x (beta = 1) and
// backward rounds only the fp32 output gradients it multiplies (as with fp32 activations). Saved activation
// memory per token and layer drops from 4 (2H + QKV + QW + 3I) + 4 H to 2 (2H + QKV + QW + 3I) + 4 H bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "cgrpo/backend/backend.h"
#include "cgrpo/core/buffer.h"
#include "cgrpo/model/flat_params.h"
#include "cgrpo/model/model_config.h"
#include "cgrpo/model/param_layout.h"
#include "cgrpo/model/param_source.h"

namespace cgrpo {

struct ModelInput {
  int64_t B = 0, L = 0;
  const int32_t* ids = nullptr;       // [B, L]
  const int32_t* pos = nullptr;       // [B, L] position ids; nullptr = 0..L-1 in every row
  const uint8_t* key_mask = nullptr;  // [B, L] 1 = may be attended; nullptr = no mask ("full", spec §1.4)
  // All host memory; forward() copies them to the backend's device.
};

// Initialisation (HF Qwen2 style): linear weights and embeddings ~ N(0, std), biases 0, norm weights 1.
// Element j of tensor i is normal(j) of RngStream(seed, Init, 0, i), so values do not depend on sharding:
// init_params_range fills any range [first, first + count) of the flat layout into out[0, count) (a ParamFill)
// with exactly the values init_params puts there (large ranges in 1M-value pieces over up to 16 threads).
void init_params(const ParamLayout& layout, float* params, uint64_t seed, float std = 0.02f);
void init_params_range(const ParamLayout& layout, int64_t first, int64_t count, float* out, uint64_t seed,
                       float std = 0.02f);

class DreamModel {
 public:
  DreamModel(const ModelConfig& cfg, Backend& backend);
  DreamModel(const DreamModel&) = delete;
  DreamModel& operator=(const DreamModel&) = delete;

  const ModelConfig& config() const { return cfg_; }
  Backend& backend() const { return be_; }
  const ParamLayout& layout() const { return layout_; }

  // Every pointer handed to the model's methods is host memory, except parameters and gradients, which
  // live on the backend's device (ParamSource pointers likewise). Activations are device Buffers.
  // params [layout().total()]; grads likewise or nullptr for inference only. fp32 parameters only: with
  // set_param_dtype(BF16) it is fatal; bf16 parameters come through bind(ParamSource*, ...).
  void bind(const float* params, float* grads);
  // Parameters and gradients unit by unit from a sharding layer (see param_source.h for the call order).
  // `with_grads` = false: inference only.
  void bind(ParamSource* source, bool with_grads);
  void release_held();  // give back units still held after a forward without backward (inference)
  void set_recompute(bool on) { recompute_ = on; }
  // dtype of the parameters the ParamSource hands out: F32 (default) or BF16 (see the top of this file).
  // Gives back held units; fatal while bound to bind(const float*, float*) with BF16.
  void set_param_dtype(DType t);
  DType param_dtype() const { return pdt_; }
  // dtype of the saved activations: F32 (default) or BF16 (see the top of this file; forward() refuses BF16 with
  // fp32 parameters). Ends the last forward: backward() needs a new one.
  void set_compute_dtype(DType t);
  DType compute_dtype() const { return cdt_; }
  void set_vocab_chunk(int64_t chunk);  // columns of logits live at once in logprobs/backward (default 4096)

  // Runs the layers and the final norm. grad = true keeps what backward() needs.
  void forward(const ModelInput& in, bool grad);
  TensorView hidden() const;  // [B*L, H] final-normed hidden states of the last forward (device memory)

  // logp[r] = log_softmax(h[rows[r]] W_head^T)[targets[r]]; rows index [0, B*L). Raw logits at row b*L+i
  // predict token i+1 of sequence b (spec §1.5): the caller chooses rows accordingly. R = 0 is allowed (a rank
  // whose micro-batch has no loss rows): backward() then adds zero gradients but makes every ParamSource call,
  // in the same order, so the rank still takes part in each unit's collectives.
  void logprobs(int64_t R, const int32_t* rows, const int32_t* targets, float* logp);
  // logits [R, V] = h[rows] W_head^T (small R only: materialises [R, V]).
  void logits(int64_t R, const int32_t* rows, float* out);
  // spec §2.3 sample_tokens on those logits without downloading them: the [R, V] logits of rows are formed in
  // the model's device scratch (as logits() does; the caller bounds R) and Backend::sample_rows draws there
  // with u [R]. tokens, conf: host [R]. Same bits as logits() + TokenSampler on the CPU backend.
  void sample(int64_t R, const int32_t* rows, const double* u, const TokenSampling& s, Confidence kind,
              int32_t* tokens, float* conf);

  // d(sum_r dlogp[r] * logp[r]) / d params, += into the bound gradient buffer, for the last
  // forward(grad = true) + logprobs() pair.
  void backward(const float* dlogp);

  // Model FLOPs of one forward (the usual MFU count, PaLM appendix B): every token of a length-L sequence passes
  // the body, 2 x its matmul parameters + 4 L x q-width per layer (QK^T and PV); the LM head, 2 V H, runs only on
  // the rows whose log-probs or logits are asked for. forward_flops_per_token: every position scored (benchmarks).
  // A training step is 3x the forward (backward = 2x); recompute adds one more forward that MFU does not count.
  double body_flops_per_token(int64_t L) const;
  double head_flops_per_row() const;
  double forward_flops_per_token(int64_t L) const { return body_flops_per_token(L) + head_flops_per_row(); }
  // Training work since the last call, then reset: tokens of forward(.., grad = true) and the rows logprobs()
  // scored after such forwards. Their model FLOPs are 3 x (tokens x body + rows x head).
  struct TrainedWork {
    int64_t tokens = 0, rows = 0;
  };
  TrainedWork take_trained_work();

  // Bytes of activation memory forward(grad) holds for a [B, L] batch under the current recompute setting.
  size_t activation_bytes(int64_t B, int64_t L, bool grad) const;
  // Bytes of the model's own scratch for R requested rows: selected rows (Activations) and the backward
  // scratch (Workspace). The backend's scratch (attention scores, log-softmax chunks) is extra.
  // (bf16 activations add the rows' bf16 copy for the head.)
  size_t selection_bytes(int64_t R) const;
  size_t backward_workspace_bytes(int64_t B, int64_t L) const {
    return size_t(B * L * (H_ * 3 + QKV_ + QW_ + 3 * I_)) * 4;
  }
  // Bytes of the model's extra scratch (Workspace) for bf16 parameters on a [B, L] batch, 0 with fp32: the fp32
  // copy of a [V, H] table, of the largest small weight (max(H, QKV)), and the bf16 activation operands of one
  // matmul ([N, max(H, QW, 2I, QKV)] and, with grad, the dW operand [N, max(H, QW, I)]).
  size_t param_dtype_scratch_bytes(int64_t B, int64_t L, bool grad) const;

 private:
  struct Acts {  // one layer's saved activations (views into acts_)
    void *a1, *qkv, *o, *a2, *gu, *m;  // activation dtype cdt_: [N, H], [N, QKV], [N, QW], [N, H], [N, 2I], [N, I]
    float *rstd1, *lse, *x1, *rstd2;   // fp32: [N], [B, heads, L], [N, H], [N]
  };
  // Lays one layer's Acts out from base (every array 256-byte aligned); returns the bytes they span. base may be
  // nullptr to size only.
  size_t carve_acts(char* base, int64_t N, int64_t B, Acts* a) const;
  float* x_at(int64_t l) const;  // input of layer l ([N, H]); l = n_layers is the final hidden before norm
  Acts layer_acts(int64_t l) const;
  struct Sel {  // views into sel_ for the R_ rows of the last logprobs()
    int32_t *rows, *tgt;
    float *lse, *logp, *dlogp, *hsel, *dhsel;
    void* hsel16;  // bf16 activations: hsel rounded to bf16 [R, H], the head's operand (256-byte aligned)
  };
  Sel selection() const;
  size_t hsel16_offset(int64_t R) const;  // bytes into sel_ where hsel16 starts (bf16 activations)
  float* head_logits(int64_t R, const int32_t* rows, const char* what);  // logits_ scratch [R, V]; R = 0: nullptr
  const uint8_t* key_mask() const {
    return has_mask_ ? reinterpret_cast<const uint8_t*>(in_.as<int32_t>() + 2 * N_) : nullptr;
  }
  void layer_forward(int64_t l, const float* x0, const Acts& a, float* x_out);
  void layer_backward(int64_t l, const float* x0, const Acts& a);
  TensorView view(const float* p, int64_t rows, int64_t cols, int64_t ld) const {
    return rows_view(p, rows, cols, ld, be_.device());
  }
  TensorView view(const float* p, int64_t rows, int64_t cols) const { return view(p, rows, cols, cols); }
  // An activation (dtype cdt_) [rows, cols] at column col0 of p, row stride ld.
  TensorView act(const void* p, int64_t rows, int64_t cols, int64_t ld, int64_t col0 = 0) const;
  void ensure(Buffer& b, size_t bytes, MemCategory cat) const;
  // The parameter tensor at a layout offset, [rows, cols], in the parameter dtype (pdt_).
  TensorView P(int64_t offset, int64_t rows, int64_t cols) const;
  // An fp32 view of the same weight: P() itself with fp32, else a copy cast from bf16 into wbig_ ([V, H] tables)
  // or wsmall_ (every other weight), valid until the next W32() of that kind (or the next acquire / release).
  TensorView W32(int64_t offset, int64_t rows, int64_t cols);
  // The LM head [V, H] and its selected rows [R, H] as the head multiplies them: bf16 under bf16 activations
  // (hsel16 cast from hsel when `cast`), else fp32.
  TensorView head_weight();
  TensorView head_rows(const float* hsel, void* hsel16, int64_t R, bool cast);
  // C = op(A) op(B) + beta C for a matmul against a weight (or a weight gradient): with bf16 parameters every
  // fp32 operand is rounded to bf16 into cast_ first and the gemm is bf16 x bf16 -> fp32; with fp32, be_.gemm.
  // a_cast: A is the same, unchanged fp32 tensor as the previous mm()'s A, whose bf16 copy is reused.
  void mm(const TensorView& A, bool trans_a, const TensorView& B, bool trans_b, const TensorView& C,
          float beta = 0.0f, bool a_cast = false);
  int64_t cast_elems(int64_t N, bool grad) const;  // bf16 elements cast_ needs for N rows
  TensorView G(int64_t offset, int64_t rows, int64_t cols) const;
  int unit_of(int64_t offset) const;
  void hold(int u);           // acquire once; stays until drop(u)
  void drop(int u);           // release if held
  void open_grads(int u);     // fetch the unit's gradient accumulator

  std::optional<FlatParams> flat_;  // bind(params, grads): every unit is a slice of the caller's flat buffers
  ParamSource* src_ = nullptr;
  bool with_grads_ = false;
  std::vector<const void*> unit_params_;  // [units] valid while held
  std::vector<float*> unit_grads_;         // [units] valid between open_grads and grads_done

  ModelConfig cfg_;
  ParamLayout layout_;
  Backend& be_;
  bool recompute_ = false;
  int64_t chunk_ = 4096;
  TrainedWork trained_;
  DType pdt_ = DType::F32;
  DType cdt_ = DType::F32;

  // shapes of the last forward
  int64_t B_ = 0, L_ = 0, N_ = 0, R_ = -1;  // R_ < 0: no logprobs() since the forward
  bool grad_ = false;
  bool has_mask_ = false;
  int64_t H_, I_, QW_, KW_, QKV_, hd_;

  Buffer in_;       // device: ids [N] int32, pos [N] int32, key_mask [N] uint8
  std::vector<int32_t> pos_host_;  // [N] staging
  Buffer xs_;       // layer inputs: [n_layers + 1, N, H] (grad) or 2 x [N, H] ping-pong
  Buffer acts_;     // per-layer Acts (grad, no recompute) or one set: carve_acts() bytes each
  Buffer final_;    // hf [N, H], rstd_f [N]
  Buffer sel_;      // rows [R], targets [R] (int32), lse [R], logp [R], dlogp [R], hsel [R, H], dhsel [R, H];
                    // bf16 activations: hsel16 [R, H] bf16 at the next 256-byte boundary
  Buffer logits_;   // logits(): rows [R] int32, hsel [R, H], out [R, V]
  // bf16 parameters only (param_dtype_scratch_bytes): fp32 weight copies and bf16 matmul operands
  Buffer wbig_;     // fp32 [V, H]: the head under f32 activations; holds the cast of big_src_ (nullptr: none)
  Buffer wsmall_;   // fp32 [max(H, QKV)]: a norm weight or the qkv bias
  Buffer cast_;     // bf16 operands of one mm(): A, then B at a 256-byte boundary
  const void* big_src_ = nullptr;
  const void* cast_a_src_ = nullptr;  // the fp32 A whose bf16 copy is at the front of cast_ (mm), nullptr: none
  Buffer bwd_;      // backward scratch: dres, da [N, H], dqkv [N, QKV], do [N, QW], dgu [N, 2I], dm [N, I], dhf [N, H]
};

}  // namespace cgrpo
