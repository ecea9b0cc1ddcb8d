// DreamModel forward / backward (spec/coupled_grpo.md §1.3). Per layer, with N = B*L rows:
//   a1 = RMSNorm(x0, w_in)                          [N, H]
//   qkv = a1 Wqkv^T + bqkv                          [N, QW + 2 KW]  (q | k | v column blocks)
//   q, k = RoPE(q, pos), RoPE(k, pos)               in place
//   o = attention(q, k, v, key_mask)                [N, QW]   bidirectional GQA
//   x1 = x0 + o Wo^T                                [N, H]
//   a2 = RMSNorm(x1, w_post)                        [N, H]
//   gu = a2 Wgu^T                                   [N, 2I]   (gate | up)
//   m = silu(g) * u                                 [N, I]
//   x2 = x1 + m Wd^T                                [N, H]
// then hf = RMSNorm(x_L, w_final) and log-probs of requested rows through the fused gather.
// a1, qkv, o, a2, gu, m are in the activation dtype (fp32, or bf16: dream_model.h); everything else is fp32.
#include "cgrpo/model/dream_model.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

#include "cgrpo/core/philox.h"

namespace cgrpo {

// Device scratch grows to the largest request and is reused: nothing is allocated in steady state.
void DreamModel::ensure(Buffer& b, size_t bytes, MemCategory cat) const {
  if (b.bytes() < bytes) b = be_.alloc(std::max<size_t>(bytes, 4), cat);
}

void init_params(const ParamLayout& layout, float* params, uint64_t seed, float std) {
  init_params_range(layout, 0, layout.total(), params, seed, std);
}

void init_params_range(const ParamLayout& layout, int64_t first, int64_t count, float* out, uint64_t seed, float std) {
  CGRPO_CHECK(first >= 0 && count >= 0 && first + count <= layout.total(), "init_params_range: [", first, ", ",
              first + count, ") is outside the model's ", layout.total(), " parameters");
  auto fill = [&](int64_t a, int64_t b) {  // [a, b) into out[a - first, b - first)
    layout.for_each_in_range(a, b - a, [&](size_t i, const ParamInfo& p, int64_t lo, int64_t hi) {
      float* d = out + (lo - first);
      if (p.kind == ParamKind::Norm || p.kind == ParamKind::QkvBias) {
        std::fill(d, d + (hi - lo), p.kind == ParamKind::Norm ? 1.0f : 0.0f);
      } else {
        RngStream(seed, RngPurpose::Init, 0, static_cast<uint32_t>(i))
            .fill_normal(d, hi - lo, 0.0f, std, uint64_t(lo - p.offset));
      }
    });
  };
  // ~40 ns a value (Philox + Box-Muller in double): 1M-value pieces over up to 16 threads. Each value depends on
  // its index alone, so any split gives the same bits.
  constexpr int64_t kPiece = int64_t(1) << 20;
  const int64_t pieces = (count + kPiece - 1) / kPiece;
  const int threads = int(std::min<int64_t>(pieces, std::clamp<int64_t>(std::thread::hardware_concurrency(), 1, 16)));
  if (threads <= 1) return fill(first, first + count);
  std::atomic<int64_t> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      for (int64_t k; (k = next++) < pieces;) fill(first + k * kPiece, first + std::min(count, (k + 1) * kPiece));
    });
  for (std::thread& th : pool) th.join();
}

DreamModel::DreamModel(const ModelConfig& cfg, Backend& backend) : cfg_(cfg), layout_(cfg), be_(backend) {
  H_ = cfg.hidden_size;
  I_ = cfg.intermediate_size;
  hd_ = cfg.head_dim();
  QW_ = cfg.num_attention_heads * hd_;
  KW_ = cfg.num_key_value_heads * hd_;
  QKV_ = QW_ + 2 * KW_;
}

void DreamModel::bind(const float* params, float* grads) {
  CGRPO_CHECK(params != nullptr, "DreamModel::bind: params must not be null");
  CGRPO_CHECK(pdt_ == DType::F32, "DreamModel::bind(const float* params, float* grads) takes fp32 parameters, but the "
              "parameter dtype is ", dtype_name(pdt_), hint("bind bf16 parameters through a ParamSource"));
  release_held();  // the units of the current source, which may be flat_ itself
  flat_.emplace(layout_, params, DType::F32, grads);
  bind(&*flat_, grads != nullptr);
}

void DreamModel::bind(ParamSource* source, bool with_grads) {
  CGRPO_CHECK(source != nullptr, "DreamModel::bind: null parameter source");
  release_held();
  src_ = source;
  with_grads_ = with_grads;
  unit_params_.assign(layout_.units().size(), nullptr);
  unit_grads_.assign(layout_.units().size(), nullptr);
  big_src_ = nullptr;
}

void DreamModel::set_compute_dtype(DType t) {
  CGRPO_CHECK(t == DType::F32 || t == DType::BF16, "DreamModel: activation (compute) dtype must be f32 or bf16, got ",
              dtype_name(t));
  cdt_ = t;
  N_ = 0, R_ = -1, grad_ = false;  // the saved activations are in the old dtype
}

void DreamModel::set_param_dtype(DType t) {
  CGRPO_CHECK(t == DType::F32 || t == DType::BF16, "DreamModel: parameter dtype must be f32 or bf16, got ",
              dtype_name(t));
  CGRPO_CHECK(t == DType::F32 || !flat_ || src_ != &*flat_, "DreamModel::set_param_dtype(bf16) while bound to fp32 buffers by "
              "bind(const float*, float*)", hint("bind bf16 parameters through a ParamSource"));
  release_held();  // units acquired in the old dtype
  pdt_ = t;
  big_src_ = nullptr;
}

int DreamModel::unit_of(int64_t offset) const {
  const auto& us = layout_.units();
  for (size_t u = 0; u < us.size(); ++u)
    if (offset >= us[u].offset && offset < us[u].offset + us[u].numel) return static_cast<int>(u);
  CGRPO_FAIL("offset ", offset, " is outside every parameter unit");
}

void DreamModel::hold(int u) {
  if (!unit_params_[size_t(u)]) {
    unit_params_[size_t(u)] = src_->acquire(u);
    big_src_ = nullptr;  // a sharding layer may hand out new data at an address it used before
  }
}

void DreamModel::drop(int u) {
  if (unit_params_[size_t(u)]) {
    unit_params_[size_t(u)] = nullptr;
    big_src_ = nullptr;
    src_->release(u);
  }
}

void DreamModel::release_held() {
  for (size_t u = 0; u < unit_params_.size(); ++u) drop(static_cast<int>(u));
}

void DreamModel::open_grads(int u) {
  if (!unit_grads_[size_t(u)]) unit_grads_[size_t(u)] = src_->grads(u);
}

void DreamModel::set_vocab_chunk(int64_t chunk) {
  CGRPO_CHECK(chunk > 0, "vocab chunk must be > 0, got ", chunk);
  chunk_ = chunk;
}

TensorView DreamModel::P(int64_t offset, int64_t rows, int64_t cols) const {
  const int u = unit_of(offset);
  const char* base = static_cast<const char*>(unit_params_[size_t(u)]);
  CGRPO_CHECK(base != nullptr, "parameters of unit ", layout_.units()[size_t(u)].name, " used while not acquired");
  const size_t at = size_t(offset - layout_.units()[size_t(u)].offset) * dtype_size(pdt_);
  return TensorView(const_cast<char*>(base) + at, pdt_, {rows, cols}, be_.device());
}

// The LM head's operands (the top of dream_model.h): under bf16 activations the bf16 head times the selected rows
// rounded to bf16 (hsel16 [R, H], cast here from hsel), otherwise the fp32 head (W32 with bf16 parameters) times
// the fp32 rows hsel.
TensorView DreamModel::head_weight() {
  return cdt_ == DType::BF16 ? P(layout_.head(), cfg_.vocab_size, H_) : W32(layout_.head(), cfg_.vocab_size, H_);
}
TensorView DreamModel::head_rows(const float* hsel, void* hsel16, int64_t R, bool cast) {
  if (cdt_ == DType::F32) return view(hsel, R, H_, H_);
  const TensorView h16(hsel16, DType::BF16, {R, H_}, be_.device());
  if (cast) be_.cast(view(hsel, R, H_, H_), h16);
  return h16;
}

// Numerics of bf16 parameters: ARCHITECTURE.md §3.4 and the top of dream_model.h.
TensorView DreamModel::W32(int64_t offset, int64_t rows, int64_t cols) {
  const TensorView p = P(offset, rows, cols);
  if (pdt_ == DType::F32) return p;
  const bool big = rows == cfg_.vocab_size;  // embedding table / head; everything else is [1, <= max(H, QKV)]
  Buffer& b = big ? wbig_ : wsmall_;
  const size_t bytes = size_t(rows * cols) * sizeof(float);
  if (b.bytes() < bytes) {
    ensure(b, bytes, MemCategory::Workspace);
    if (big) big_src_ = nullptr;
  }
  const TensorView w = view(b.as<float>(), rows, cols);
  if (big && big_src_ == p.data) return w;  // still the cast of this table: its unit stayed held since
  be_.cast(p, w);
  if (big) big_src_ = p.data;
  return w;
}

void DreamModel::mm(const TensorView& A, bool trans_a, const TensorView& B, bool trans_b, const TensorView& C,
                    float beta, bool a_cast) {
  if (pdt_ == DType::F32) return be_.gemm(A, trans_a, B, trans_b, C, 1.0f, beta);
  // bf16 x bf16 -> fp32, fp32 accumulation: round the fp32 operands (activations, output gradients) to bf16.
  auto count = [](const TensorView& x) { return x.dtype == DType::F32 ? x.numel() : int64_t(0); };
  const int64_t na = (count(A) + 127) / 128 * 128, nb = count(B);  // B starts 256-byte aligned
  const void* held = cast_.data();
  ensure(cast_, size_t(na + nb) * 2, MemCategory::Workspace);
  // a_cast: the caller's A is the fp32 tensor the previous mm() rounded (backward's dX = dY W, then dW += dY^T X):
  // its bf16 copy at the front of cast_ still stands unless cast_ was just reallocated
  const bool reuse = a_cast && A.dtype == DType::F32 && cast_a_src_ == A.data && cast_.data() == held;
  auto lower = [&](const TensorView& x, uint16_t* dst, bool cast) {
    if (x.dtype != DType::F32) return x;
    const TensorView y(dst, DType::BF16, {x.dim(0), x.dim(1)}, be_.device());
    if (cast) be_.cast(x, y);  // fatal unless x is contiguous (every activation operand is)
    return y;
  };
  const TensorView a16 = lower(A, cast_.as<uint16_t>(), !reuse);
  cast_a_src_ = A.dtype == DType::F32 ? A.data : nullptr;
  be_.gemm(a16, trans_a, lower(B, cast_.as<uint16_t>() + na, true), trans_b, C, 1.0f, beta);
}

// bf16 elements of cast_ for N rows: the widest fp32 A operand of mm() (rounded to 256 bytes) and, with grad, the
// widest fp32 dW operand B. Forward: A = a1 | o | a2 | m (fp32 activations only); backward: A = dx2 | dgu | dx1 |
// dqkv (fp32 gradients), B = m | a2 | o | a1 (fp32 activations only).
int64_t DreamModel::cast_elems(int64_t N, bool grad) const {
  const bool f32_acts = cdt_ == DType::F32;
  // A operands: fp32 activations' [N, max(H, QW, I)]; bf16 activations only the head's rows [R <= N, H]
  const int64_t wa = std::max(f32_acts ? std::max({H_, QW_, I_}) : H_, grad ? std::max({H_, 2 * I_, QKV_}) : 0);
  const int64_t wb = grad && f32_acts ? std::max({H_, QW_, I_}) : 0;
  return (N * wa + 127) / 128 * 128 + N * wb;
}

size_t DreamModel::param_dtype_scratch_bytes(int64_t B, int64_t L, bool grad) const {
  if (pdt_ == DType::F32) return 0;
  const int64_t table = cdt_ == DType::F32 ? cfg_.vocab_size * H_ : 0;  // the fp32 head (bf16 activations: none)
  return size_t(table + std::max(H_, QKV_)) * 4 + size_t(cast_elems(B * L, grad)) * 2;
}

// sel_'s fp32 part for R rows (rows ... dhsel), and where hsel16 starts after it: the next 256-byte boundary
size_t DreamModel::hsel16_offset(int64_t R) const { return (size_t(5 * R + 2 * R * H_) * 4 + 255) / 256 * 256; }

size_t DreamModel::selection_bytes(int64_t R) const {
  return cdt_ == DType::F32 ? size_t(5 * R + 2 * R * H_) * 4 : hsel16_offset(R) + size_t(R * H_) * 2;
}

TensorView DreamModel::G(int64_t offset, int64_t rows, int64_t cols) const {
  const int u = unit_of(offset);
  float* base = unit_grads_[size_t(u)];
  CGRPO_CHECK(base != nullptr, "gradients of unit ", layout_.units()[size_t(u)].name, " used while not open");
  return view(base + (offset - layout_.units()[size_t(u)].offset), rows, cols, cols);
}

size_t DreamModel::carve_acts(char* base, int64_t N, int64_t B, Acts* a) const {
  size_t off = 0;
  auto take = [&](int64_t numel, size_t elem_bytes) {
    void* p = base ? base + off : nullptr;
    off += (size_t(numel) * elem_bytes + 255) / 256 * 256;
    return p;
  };
  const size_t e = dtype_size(cdt_);
  Acts t;
  t.rstd1 = static_cast<float*>(take(N, 4));
  t.lse = static_cast<float*>(take(B * cfg_.num_attention_heads * (N / B), 4));
  t.x1 = static_cast<float*>(take(N * H_, 4));
  t.rstd2 = static_cast<float*>(take(N, 4));
  t.a1 = take(N * H_, e);
  t.qkv = take(N * QKV_, e);
  t.o = take(N * QW_, e);
  t.a2 = take(N * H_, e);
  t.gu = take(N * 2 * I_, e);
  t.m = take(N * I_, e);
  if (a) *a = t;
  return off;
}

TensorView DreamModel::act(const void* p, int64_t rows, int64_t cols, int64_t ld, int64_t col0) const {
  TensorView t(static_cast<char*>(const_cast<void*>(p)) + size_t(col0) * dtype_size(cdt_), cdt_, {rows, cols},
               be_.device());
  t.strides[0] = ld;
  return t;
}

float* DreamModel::x_at(int64_t l) const {
  const int64_t slot = grad_ ? l : l % 2;
  return xs_.as<float>() + slot * N_ * H_;
}

DreamModel::Acts DreamModel::layer_acts(int64_t l) const {
  const int64_t slot = (grad_ && !recompute_) ? l : 0;
  Acts a;
  carve_acts(static_cast<char*>(acts_.data()) + size_t(slot) * carve_acts(nullptr, N_, B_, nullptr), N_, B_, &a);
  return a;
}

double DreamModel::body_flops_per_token(int64_t L) const {
  const double table = double(cfg_.vocab_size) * double(H_);  // the embedding (a lookup) and the head: not here
  const double lin = double(layout_.total()) - table * (cfg_.tie_word_embeddings ? 1.0 : 2.0);
  return 2.0 * lin + 4.0 * double(L) * double(QW_) * double(cfg_.num_hidden_layers);
}

double DreamModel::head_flops_per_row() const { return 2.0 * double(cfg_.vocab_size) * double(H_); }

DreamModel::TrainedWork DreamModel::take_trained_work() { return std::exchange(trained_, TrainedWork{}); }

size_t DreamModel::activation_bytes(int64_t B, int64_t L, bool grad) const {
  const int64_t N = B * L, nl = cfg_.num_hidden_layers;
  const int64_t xs = (grad ? nl + 1 : 2) * N * H_;
  const size_t acts = size_t((grad && !recompute_) ? nl : 1) * carve_acts(nullptr, N, B, nullptr);
  return static_cast<size_t>(xs + N * H_ + N) * sizeof(float) + acts + static_cast<size_t>(N) * 9;  // + ids, pos, mask
}

void DreamModel::layer_forward(int64_t l, const float* x0, const Acts& a, float* x_out) {
  const LayerOffsets& w = layout_.layer(l);
  const int64_t N = N_;
  const float eps = static_cast<float>(cfg_.rms_norm_eps), theta = static_cast<float>(cfg_.rope_theta);
  const int32_t* pos = in_.as<int32_t>() + N;
  const TensorView X0 = view(x0, N, H_, H_);
  const TensorView A1 = act(a.a1, N, H_, H_), QKV = act(a.qkv, N, QKV_, QKV_);
  const TensorView Q = act(a.qkv, N, QW_, QKV_), K = act(a.qkv, N, KW_, QKV_, QW_),
                   Vv = act(a.qkv, N, KW_, QKV_, QW_ + KW_);
  const TensorView O = act(a.o, N, QW_, QW_), X1 = view(a.x1, N, H_, H_);
  const TensorView A2 = act(a.a2, N, H_, H_), GU = act(a.gu, N, 2 * I_, 2 * I_);
  const TensorView Gt = act(a.gu, N, I_, 2 * I_), U = act(a.gu, N, I_, 2 * I_, I_);
  const TensorView M = act(a.m, N, I_, I_), X2 = view(x_out, N, H_, H_);

  be_.rmsnorm_fwd(X0, W32(w.ln_in, 1, H_).slice_flat(0, H_), eps, A1, a.rstd1);
  mm(A1, false, P(w.w_qkv, QKV_, H_), true, QKV);
  be_.bias_add(QKV, W32(w.b_qkv, 1, QKV_).slice_flat(0, QKV_));
  be_.rope_fwd(Q, hd_, pos, theta);
  be_.rope_fwd(K, hd_, pos, theta);
  const AttnShape s{B_, L_, cfg_.num_attention_heads, cfg_.num_key_value_heads, hd_};
  be_.attention_fwd(s, Q, K, Vv, key_mask(), O, a.lse);
  be_.copy(X0, X1);
  mm(O, false, P(w.w_o, H_, QW_), true, X1, 1.0f);  // x1 = x0 + o Wo^T
  be_.rmsnorm_fwd(X1, W32(w.ln_post, 1, H_).slice_flat(0, H_), eps, A2, a.rstd2);
  mm(A2, false, P(w.w_gate_up, 2 * I_, H_), true, GU);
  be_.swiglu_fwd(Gt, U, M);
  be_.copy(X1, X2);
  mm(M, false, P(w.w_down, H_, I_), true, X2, 1.0f);  // x2 = x1 + m Wd^T
}

void DreamModel::forward(const ModelInput& in, bool grad) {
  CGRPO_CHECK(src_ != nullptr, "DreamModel::forward before bind()");
  CGRPO_CHECK(!grad || with_grads_, "DreamModel::forward(grad = true) needs gradients in bind()");
  release_held();
  CGRPO_CHECK(in.B > 0 && in.L > 0 && in.ids != nullptr, "DreamModel::forward: empty batch B=", in.B, " L=", in.L);
  CGRPO_CHECK(cdt_ == DType::F32 || pdt_ == DType::BF16, "DreamModel: bf16 activations need bf16 parameters (the "
              "matmuls are bf16 x bf16)", hint("set parallel.param_dtype = bf16 with parallel.compute_dtype = bf16"));
  B_ = in.B, L_ = in.L, N_ = in.B * in.L, grad_ = grad, R_ = -1;
  if (grad) trained_.tokens += N_;
  has_mask_ = in.key_mask != nullptr;
  const int64_t nl = cfg_.num_hidden_layers;
  ensure(in_, static_cast<size_t>(N_) * 9, MemCategory::Activations);
  ensure(xs_, static_cast<size_t>((grad ? nl + 1 : 2) * N_ * H_) * sizeof(float), MemCategory::Activations);
  ensure(acts_, size_t((grad && !recompute_) ? nl : 1) * carve_acts(nullptr, N_, B_, nullptr),
         MemCategory::Activations);
  ensure(final_, static_cast<size_t>(N_ * H_ + N_) * sizeof(float), MemCategory::Activations);
  if (pdt_ != DType::F32) {  // grown here once to what the step needs, so no later call allocates
    ensure(cast_, size_t(cast_elems(N_, grad)) * 2, MemCategory::Workspace);
    ensure(wsmall_, size_t(std::max(H_, QKV_)) * 4, MemCategory::Workspace);
    if (cdt_ == DType::F32 && wbig_.bytes() < size_t(cfg_.vocab_size * H_) * 4) {  // the fp32 head
      ensure(wbig_, size_t(cfg_.vocab_size * H_) * 4, MemCategory::Workspace);
      big_src_ = nullptr;
    }
  }
  pos_host_.resize(size_t(N_));
  for (int64_t r = 0; r < N_; ++r) {
    const int32_t p = in.pos ? in.pos[r] : static_cast<int32_t>(r % L_);
    CGRPO_CHECK(p >= 0 && p < cfg_.max_position_embeddings, "position id ", p, " at row ", r / L_, ", column ",
                r % L_, " is outside [0, max_position_embeddings = ", cfg_.max_position_embeddings, ")");
    CGRPO_CHECK(in.ids[r] >= 0 && in.ids[r] < cfg_.vocab_size, "token id ", in.ids[r], " at row ", r / L_,
                ", column ", r % L_, " is outside the vocabulary [0, ", cfg_.vocab_size, ")",
                hint("check the tokenizer / vocab_size in config.json"));
    pos_host_[size_t(r)] = p;
  }
  int32_t* ids = in_.as<int32_t>();  // device: ids [N] | pos [N] | key_mask [N]
  be_.upload(in.ids, ids, size_t(N_) * 4);
  be_.upload(pos_host_.data(), ids + N_, size_t(N_) * 4);
  if (has_mask_) be_.upload(in.key_mask, ids + 2 * N_, size_t(N_));
  hold(0);
  src_->prefetch(1);  // ZeRO-3: the next unit's gather overlaps this unit's compute
  be_.embedding_fwd(P(layout_.embed(), cfg_.vocab_size, H_), ids, view(x_at(0), N_, H_, H_));  // h0 = E[ids]
  drop(0);
  for (int64_t l = 0; l < nl; ++l) {
    hold(int(1 + l));
    src_->prefetch(int(2 + l));
    layer_forward(l, x_at(l), layer_acts(l), x_at(l + 1));
    drop(int(1 + l));
  }
  hold(int(nl + 1));  // final norm + head: held through logprobs() and backward's head part
  float* hf = final_.as<float>();
  be_.rmsnorm_fwd(view(x_at(nl), N_, H_, H_), W32(layout_.final_norm(), 1, H_).slice_flat(0, H_),
                  static_cast<float>(cfg_.rms_norm_eps), view(hf, N_, H_, H_), hf + N_ * H_);
}

TensorView DreamModel::hidden() const {
  CGRPO_CHECK(N_ > 0, "DreamModel::hidden before forward()");
  return view(final_.as<float>(), N_, H_, H_);
}

void DreamModel::logprobs(int64_t R, const int32_t* rows, const int32_t* targets, float* logp) {
  CGRPO_CHECK(N_ > 0, "DreamModel::logprobs before forward()");
  CGRPO_CHECK(R >= 0, "DreamModel::logprobs: ", R, " rows requested");
  R_ = R;
  if (grad_) trained_.rows += R;
  for (int64_t r = 0; r < R; ++r) {
    CGRPO_CHECK(rows[r] >= 0 && rows[r] < N_, "DreamModel::logprobs: row ", rows[r], " (request ", r,
                ") is outside [0, B*L = ", N_, ")");
    CGRPO_CHECK(targets[r] >= 0 && targets[r] < cfg_.vocab_size, "DreamModel::logprobs: target ", targets[r],
                " (request ", r, ") is outside the vocabulary [0, ", cfg_.vocab_size, ")");
  }
  hold(unit_of(layout_.head()));  // also for R = 0: backward() then makes the same unit calls, adding nothing
  if (R == 0) return;
  ensure(sel_, selection_bytes(R), MemCategory::Activations);
  const Sel q = selection();
  be_.upload(rows, q.rows, static_cast<size_t>(R) * 4);
  be_.upload(targets, q.tgt, static_cast<size_t>(R) * 4);
  be_.embedding_fwd(hidden(), q.rows, view(q.hsel, R, H_, H_));  // hsel = hf[rows]  (row gather)
  be_.logsoftmax_gather_fwd(head_rows(q.hsel, q.hsel16, R, true), head_weight(), q.tgt, chunk_, q.logp, q.lse);
  be_.download(q.logp, logp, static_cast<size_t>(R) * 4);
}

DreamModel::Sel DreamModel::selection() const {
  Sel q;
  q.rows = sel_.as<int32_t>();
  q.tgt = q.rows + R_;
  q.lse = reinterpret_cast<float*>(q.tgt + R_);
  q.logp = q.lse + R_;
  q.dlogp = q.logp + R_;
  q.hsel = q.dlogp + R_;
  q.dhsel = q.hsel + R_ * H_;
  q.hsel16 = cdt_ == DType::BF16 ? sel_.as<char>() + hsel16_offset(R_) : nullptr;
  return q;
}

float* DreamModel::head_logits(int64_t R, const int32_t* rows, const char* what) {
  CGRPO_CHECK(N_ > 0, "DreamModel::", what, " before forward()");
  for (int64_t r = 0; r < R; ++r)
    CGRPO_CHECK(rows[r] >= 0 && rows[r] < N_, "DreamModel::", what, ": row ", rows[r], " is outside [0, B*L = ", N_,
                ")");
  if (R <= 0) return nullptr;
  const int64_t V = cfg_.vocab_size;
  ensure(logits_, static_cast<size_t>(R + R * H_ + R * V) * 4, MemCategory::Workspace);
  int32_t* d_rows = logits_.as<int32_t>();
  float* hsel = reinterpret_cast<float*>(d_rows + R);  // [R, H]
  float* z = hsel + R * H_;                            // [R, V]
  be_.upload(rows, d_rows, static_cast<size_t>(R) * 4);
  be_.embedding_fwd(hidden(), d_rows, view(hsel, R, H_, H_));
  hold(unit_of(layout_.head()));
  // the head's math as in the log-softmax gather, so logits() and logprobs() agree (bf16 activations: bf16 x bf16,
  // the rows rounded into cast_, the bf16 operand scratch forward() sized for [N >= R, H])
  void* hsel16 = cast_.data();
  CGRPO_CHECK(cdt_ == DType::F32 || cast_.bytes() >= size_t(R * H_) * 2, "DreamModel: ", R, " head rows overflow "
              "the bf16 operand scratch sized for ", N_, " rows");
  be_.gemm(head_rows(hsel, hsel16, R, true), false, head_weight(), true, view(z, R, V, V));
  return z;
}

void DreamModel::logits(int64_t R, const int32_t* rows, float* out) {
  if (const float* z = head_logits(R, rows, "logits"))
    be_.download(z, out, static_cast<size_t>(R * cfg_.vocab_size) * 4);
}

void DreamModel::sample(int64_t R, const int32_t* rows, const double* u, const TokenSampling& s, Confidence kind,
                        int32_t* tokens, float* conf) {
  if (float* z = head_logits(R, rows, "sample"))
    be_.sample_rows(view(z, R, cfg_.vocab_size, cfg_.vocab_size), u, s, kind, tokens, conf);
}

void DreamModel::layer_backward(int64_t l, const float* x0, const Acts& a) {
  const LayerOffsets& w = layout_.layer(l);
  const int64_t N = N_;
  const float theta = static_cast<float>(cfg_.rope_theta);
  const int32_t* pos = in_.as<int32_t>() + N;
  float* dres = bwd_.as<float>();  // [N, H] dL/d(layer output) on entry, dL/d(layer input) on exit
  float* da = dres + N * H_;       // [N, H]
  float* dqkv = da + N * H_;       // [N, QKV]
  float* dout = dqkv + N * QKV_;   // [N, QW]
  float* dgu = dout + N * QW_;     // [N, 2I]
  float* dm = dgu + N * 2 * I_;    // [N, I]
  const TensorView dR = view(dres, N, H_, H_), dA = view(da, N, H_, H_);

  // MLP: x2 = x1 + m Wd^T
  mm(dR, false, P(w.w_down, H_, I_), false, view(dm, N, I_, I_));         // dm = dx2 Wd
  mm(dR, true, act(a.m, N, I_, I_), false, G(w.w_down, H_, I_), 1.0f, true);  // dWd += dx2^T m
  be_.swiglu_bwd(view(dm, N, I_, I_), act(a.gu, N, I_, 2 * I_), act(a.gu, N, I_, 2 * I_, I_),
                 view(dgu, N, I_, 2 * I_), view(dgu + I_, N, I_, 2 * I_));
  const TensorView dGU = view(dgu, N, 2 * I_, 2 * I_);
  mm(dGU, false, P(w.w_gate_up, 2 * I_, H_), false, dA);                             // da2 = dgu Wgu
  mm(dGU, true, act(a.a2, N, H_, H_), false, G(w.w_gate_up, 2 * I_, H_), 1.0f, true);  // dWgu += ..
  be_.rmsnorm_bwd(dA, view(a.x1, N, H_, H_), W32(w.ln_post, 1, H_).slice_flat(0, H_), a.rstd2, dR,
                  G(w.ln_post, 1, H_).slice_flat(0, H_));  // dres = dL/dx1

  // attention: x1 = x0 + o Wo^T
  const TensorView dO = view(dout, N, QW_, QW_);
  mm(dR, false, P(w.w_o, H_, QW_), false, dO);                                  // do = dx1 Wo
  mm(dR, true, act(a.o, N, QW_, QW_), false, G(w.w_o, H_, QW_), 1.0f, true);  // dWo += dx1^T o
  const AttnShape s{B_, L_, cfg_.num_attention_heads, cfg_.num_key_value_heads, hd_};
  const TensorView dQ = view(dqkv, N, QW_, QKV_), dK = view(dqkv + QW_, N, KW_, QKV_);
  be_.attention_bwd(s, act(a.qkv, N, QW_, QKV_), act(a.qkv, N, KW_, QKV_, QW_),
                    act(a.qkv, N, KW_, QKV_, QW_ + KW_), key_mask(), act(a.o, N, QW_, QW_), a.lse, dO, dQ,
                    dK, view(dqkv + QW_ + KW_, N, KW_, QKV_));
  be_.rope_bwd(dQ, hd_, pos, theta);
  be_.rope_bwd(dK, hd_, pos, theta);
  const TensorView dQKV = view(dqkv, N, QKV_, QKV_);
  be_.bias_bwd(dQKV, G(w.b_qkv, 1, QKV_).slice_flat(0, QKV_));
  mm(dQKV, false, P(w.w_qkv, QKV_, H_), false, dA);                             // da1 = dqkv Wqkv
  mm(dQKV, true, act(a.a1, N, H_, H_), false, G(w.w_qkv, QKV_, H_), 1.0f, true);  // dWqkv += ..
  be_.rmsnorm_bwd(dA, view(x0, N, H_, H_), W32(w.ln_in, 1, H_).slice_flat(0, H_), a.rstd1, dR,
                  G(w.ln_in, 1, H_).slice_flat(0, H_));  // dres = dL/dx0
}

void DreamModel::backward(const float* dlogp) {
  CGRPO_CHECK(grad_, "DreamModel::backward needs forward(in, grad = true) first");
  CGRPO_CHECK(R_ >= 0, "DreamModel::backward needs logprobs() after the forward");
  const int64_t N = N_, R = R_, nl = cfg_.num_hidden_layers;
  ensure(bwd_, static_cast<size_t>(N * H_ * 3 + N * QKV_ + N * QW_ + N * 3 * I_) * 4, MemCategory::Workspace);
  const Sel q = selection();
  if (R > 0) be_.upload(dlogp, q.dlogp, static_cast<size_t>(R) * 4);
  float* dres = bwd_.as<float>();
  float* dhf = dres + N * (H_ * 2 + QKV_ + QW_ + 3 * I_);  // [N, H]
  const TensorView dR = view(dres, N, H_, H_), dHF = view(dhf, N, H_, H_);

  // head + final norm
  const int head_unit = int(nl + 1), tied_unit = unit_of(layout_.head());
  hold(head_unit);
  hold(tied_unit);
  src_->prefetch(int(nl));  // the last layer, acquired next
  open_grads(head_unit);
  open_grads(tied_unit);
  be_.zero(dHF);
  if (R > 0) {  // R = 0: zero gradients flow through the same units (logprobs())
    be_.zero(view(q.dhsel, R, H_, H_));
    be_.logsoftmax_gather_bwd(head_rows(q.hsel, q.hsel16, R, false), head_weight(), q.tgt, chunk_, q.lse, q.dlogp,
                              view(q.dhsel, R, H_, H_), G(layout_.head(), cfg_.vocab_size, H_));
    be_.embedding_bwd(view(q.dhsel, R, H_, H_), q.rows, dHF);  // scatter-add dhsel into rows of dhf
  }
  be_.zero(dR);
  const float* hf = final_.as<float>();
  be_.rmsnorm_bwd(dHF, view(x_at(nl), N, H_, H_), W32(layout_.final_norm(), 1, H_).slice_flat(0, H_),
                  hf + N * H_, dR, G(layout_.final_norm(), 1, H_).slice_flat(0, H_));
  drop(head_unit);
  if (tied_unit != 0) {
    unit_grads_[size_t(head_unit)] = nullptr;
    src_->grads_done(head_unit);
  }

  for (int64_t l = nl - 1; l >= 0; --l) {
    const int u = int(1 + l);
    hold(u);
    if (u > 1) src_->prefetch(u - 1);
    open_grads(u);
    const Acts a = layer_acts(l);
    if (recompute_) layer_forward(l, x_at(l), a, dres + N * H_);  // output goes to the da scratch, unused
    layer_backward(l, x_at(l), a);
    drop(u);
    unit_grads_[size_t(u)] = nullptr;
    src_->grads_done(u);
  }
  open_grads(0);
  be_.embedding_bwd(dR, in_.as<int32_t>(), G(layout_.embed(), cfg_.vocab_size, H_));  // dE[ids] += dh0
  drop(0);  // a tied head held it
  unit_grads_[0] = nullptr;
  src_->grads_done(0);
  if (tied_unit == 0) {
    unit_grads_[size_t(head_unit)] = nullptr;
    src_->grads_done(head_unit);
  }
}

}  // namespace cgrpo
