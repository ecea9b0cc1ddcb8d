#include "cgrpo/rollout/sampler.h"

#include <algorithm>

#include "cgrpo/core/error.h"

namespace cgrpo {

namespace {
SamplerConfig validated(const SamplerConfig& cfg) {
  cfg.validate();
  return cfg;
}
}  // namespace

Sampler::Sampler(const SamplerConfig& cfg, std::unique_ptr<UnmaskPolicy> policy)
    : cfg_(validated(cfg)), schedule_(cfg_.resolved_steps(), cfg_.eps),
      policy_(policy ? std::move(policy) : make_unmask_policy(cfg_)) {}

void Sampler::set_chunk_rows(int64_t rows) {
  CGRPO_CHECK(rows >= 1, "sampler: chunk_rows = ", rows, " must be >= 1");
  chunk_rows_ = rows;
  logits_.clear();
}

void Sampler::reserve(int64_t vocab, int64_t batch, int64_t new_tokens) {
  CGRPO_CHECK(vocab >= 1, "sampler: the model reports vocab = ", vocab);
  CGRPO_CHECK(cfg_.mask_id < vocab && cfg_.pad_id < vocab, "sampler: mask_id ", cfg_.mask_id, " / pad_id ",
              cfg_.pad_id, " outside the model vocabulary of ", vocab, hint("set the ids of this model's tokenizer"));
  if (vocab != vocab_ || !token_sampler_) {
    token_sampler_ = std::make_unique<TokenSampler>(vocab, cfg_.temperature, cfg_.top_p, cfg_.top_k);
    vocab_ = vocab;
    logits_.clear();  // [chunk_rows, vocab], allocated by the first step that needs host logits
  }
  chunk_tok_.resize(static_cast<size_t>(rows_));
  chunk_conf_.resize(static_cast<size_t>(rows_));
  chunk_u_.resize(static_cast<size_t>(rows_));
  const size_t bn = static_cast<size_t>(batch * new_tokens);
  for (auto* v : {&cand_, &target_, &chosen_, &req_row_, &req_col_, &req_slot_, &tok_})
    if (v->size() < bn) v->resize(bn);
  if (conf_.size() < bn) conf_.resize(bn);
  for (auto* v : {&ncand_, &ntarget_, &nchosen_})
    if (v->size() < static_cast<size_t>(batch)) v->resize(static_cast<size_t>(batch));
  if (seen_.size() < static_cast<size_t>(new_tokens)) seen_.resize(static_cast<size_t>(new_tokens));
}

int64_t Sampler::step(Denoiser& model, Canvas& c, const std::vector<uint32_t>& sample_ids, int64_t i,
                      StepRecord* record) {
  const int64_t B = c.batch, N = c.new_tokens, P = c.prompt_len, L = c.len, steps = schedule_.steps();
  CGRPO_CHECK(static_cast<int64_t>(sample_ids.size()) == B, "sampler: ", sample_ids.size(), " sample ids for ", B,
              " rows", hint("pass one global sample id per prompt"));
  CGRPO_CHECK(i >= 0 && i < steps, "sampler: step ", i, " outside [0, ", steps, ")");
  CGRPO_CHECK(c.mask_id == cfg_.mask_id, "sampler: canvas mask id ", c.mask_id, " != config mask id ", cfg_.mask_id);
  rows_ = chunk_rows_ > 0 ? chunk_rows_ : model.preferred_chunk_rows() > 0 ? model.preferred_chunk_rows() : 32;
  reserve(model.vocab(), B, N);
  if (record) *record = StepRecord{i, schedule_.t(i), schedule_.t(i + 1), {}};

  // Candidates: the still-masked completion positions of each row (spec §2.2 M, restricted to the completion).
  int64_t total = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int32_t* x = c.completion(b);
    int32_t* cand = cand_.data() + b * N;
    int64_t n = 0;
    for (int64_t o = 0; o < N; ++o)
      if (x[o] == cfg_.mask_id) cand[n++] = static_cast<int32_t>(o);
    ncand_[static_cast<size_t>(b)] = n;
    total += n;
  }
  // lockstep (sampler_config.h): the forward runs even with nothing to unmask here
  if (total == 0) {
    if (cfg_.lockstep) model.forward(B, L, c.tokens.data(), c.key_mask_or_null(), c.pos_or_null());
    return 0;
  }

  UnmaskRow row;
  row.step = i;
  row.steps = steps;
  row.t = schedule_.t(i);
  row.s = schedule_.t(i + 1);
  row.fraction = schedule_.fraction(i);
  row.rng_word = 2 * static_cast<uint64_t>(N);  // words [0, 2N) are the token draws (uniform_f64(offset))

  const auto check_choice = [&](int64_t b, int64_t n, int64_t count) {
    CGRPO_CHECK(count >= 0 && count <= n, "sampler: unmask policy chose ", count, " of ", n, " candidates (row ", b,
                ", step ", i, ")");
    const int32_t* ch = chosen_.data() + b * N;
    std::fill(seen_.begin(), seen_.begin() + n, 0);
    for (int64_t j = 0; j < count; ++j) {
      CGRPO_CHECK(ch[j] >= 0 && ch[j] < n && !seen_[static_cast<size_t>(ch[j])], "sampler: unmask policy chose ",
                  "candidate ", ch[j], " (row ", b, ", step ", i, ")", hint("indices must be distinct and in [0, n)"));
      seen_[static_cast<size_t>(ch[j])] = 1;
    }
  };
  const auto view = [&](int64_t b, RngStream& rng) {
    row.n = ncand_[static_cast<size_t>(b)];
    row.k = schedule_.count(i, row.n);  // per row; equals the reference's batch average int(sum(M)/B ...)
    row.offsets = cand_.data() + b * N;  // when every row has the same number of masks (top-k algorithms)
    row.rng = &rng;
  };

  // Which positions to sample: all candidates, or (origin) the preselected ones.
  const bool pre = policy_->preselect();
  int64_t R = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = ncand_[static_cast<size_t>(b)];
    const int32_t* cand = cand_.data() + b * N;
    int32_t* tgt = target_.data() + b * N;
    int64_t nt = n;
    if (pre && n > 0) {
      RngStream rng(cfg_.seed, RngPurpose::Sampler, static_cast<uint32_t>(i), sample_ids[static_cast<size_t>(b)]);
      view(b, rng);
      nt = policy_->select(row, chosen_.data() + b * N);
      check_choice(b, n, nt);
      for (int64_t j = 0; j < nt; ++j) tgt[j] = cand[chosen_[static_cast<size_t>(b * N + j)]];
    } else {
      std::copy(cand, cand + n, tgt);
    }
    ntarget_[static_cast<size_t>(b)] = nt;
    for (int64_t j = 0; j < nt; ++j, ++R) {
      req_row_[static_cast<size_t>(R)] = static_cast<int32_t>(b);
      req_col_[static_cast<size_t>(R)] = static_cast<int32_t>(P + tgt[j]);
      req_slot_[static_cast<size_t>(R)] = static_cast<int32_t>(b * N + j);
    }
  }
  if (R == 0) {  // this step unmasks nothing here (origin's k = 0)
    if (cfg_.lockstep) model.forward(B, L, c.tokens.data(), c.key_mask_or_null(), c.pos_or_null());
    return 0;
  }

  // One forward, then sample_tokens (§2.3) per position, in chunks of rows: fused in the model when it can
  // (Denoiser::sample: the logits stay on its device), else its logits here and the TokenSampler per row.
  model.forward(B, L, c.tokens.data(), c.key_mask_or_null(), c.pos_or_null());
  const Confidence kind = policy_->confidence();
  const bool draw = cfg_.temperature > 0.0f;
  const TokenSampling params{cfg_.temperature, cfg_.top_p, cfg_.top_k};
  for (int64_t r0 = 0; r0 < R; r0 += rows_) {
    const int64_t nr = std::min(rows_, R - r0);
    const int32_t* rows = req_row_.data() + r0;
    const int32_t* cols = req_col_.data() + r0;
    for (int64_t r = 0; r < nr; ++r) {
      const int32_t b = rows[r];
      const uint64_t off = static_cast<uint64_t>(cols[r] - P);
      chunk_u_[static_cast<size_t>(r)] =
          draw ? RngStream(cfg_.seed, RngPurpose::Sampler, static_cast<uint32_t>(i), sample_ids[static_cast<size_t>(b)])
                     .uniform_f64(off)
               : 0.0;
    }
    if (!model.sample(nr, rows, cols, chunk_u_.data(), params, kind, chunk_tok_.data(), chunk_conf_.data())) {
      if (logits_.size() < static_cast<size_t>(rows_ * vocab_)) logits_.resize(static_cast<size_t>(rows_ * vocab_));
      model.logits(nr, rows, cols, logits_.data());
      for (int64_t r = 0; r < nr; ++r) {
        const SampledToken st =
            token_sampler_->sample(logits_.data() + r * vocab_, chunk_u_[static_cast<size_t>(r)], kind);
        chunk_tok_[static_cast<size_t>(r)] = st.token;
        chunk_conf_[static_cast<size_t>(r)] = st.confidence;
      }
    }
    for (int64_t r = 0; r < nr; ++r) {
      const int32_t slot = req_slot_[static_cast<size_t>(r0 + r)];
      tok_[static_cast<size_t>(slot)] = chunk_tok_[static_cast<size_t>(r)];
      conf_[static_cast<size_t>(slot)] = chunk_conf_[static_cast<size_t>(r)];
    }
  }

  // Choose (unless preselected) and commit; committed positions are never re-masked.
  int64_t committed = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = ncand_[static_cast<size_t>(b)];
    const int32_t* tok = tok_.data() + b * N;
    const float* conf = conf_.data() + b * N;
    int64_t count = ntarget_[static_cast<size_t>(b)];
    if (!pre) {
      RngStream rng(cfg_.seed, RngPurpose::Sampler, static_cast<uint32_t>(i), sample_ids[static_cast<size_t>(b)]);
      view(b, rng);
      row.tokens = tok;
      row.confidence = conf;
      count = n > 0 ? policy_->select(row, chosen_.data() + b * N) : 0;
      check_choice(b, n, count);
    }
    int32_t* x = c.row(b) + P;
    for (int64_t j = 0; j < count; ++j) {
      const int64_t slot = pre ? j : chosen_[static_cast<size_t>(b * N + j)];  // index into target_ / tok_
      const int32_t off = target_[static_cast<size_t>(b * N + slot)];
      x[off] = tok[slot];
      if (record) record->commits.push_back({static_cast<int32_t>(b), static_cast<int32_t>(P + off), tok[slot],
                                             conf[slot]});
    }
    committed += count;
  }
  return committed;
}

void Sampler::run(Denoiser& model, Canvas& canvas, const std::vector<uint32_t>& sample_ids,
                  std::vector<StepRecord>* records, const StepCallback& on_step) {
  for (int64_t i = 0; i < schedule_.steps(); ++i) {
    bool any = cfg_.lockstep;  // lockstep: every step, also once nothing is masked
    for (int64_t b = 0; b < canvas.batch && !any; ++b) any = canvas.masked(b) > 0;
    if (!any) break;
    StepRecord rec;
    step(model, canvas, sample_ids, i, records ? &rec : nullptr);
    if (records) records->push_back(std::move(rec));
    if (on_step) on_step(i, canvas);
  }
}

Canvas Sampler::generate(Denoiser& model, const std::vector<std::vector<int32_t>>& prompts,
                         const std::vector<uint32_t>& sample_ids, std::vector<StepRecord>* records,
                         const StepCallback& on_step) {
  Canvas canvas = Canvas::make(prompts, cfg_.max_new_tokens, cfg_.mask_id, cfg_.pad_id);
  run(model, canvas, sample_ids, records, on_step);
  return canvas;
}

}  // namespace cgrpo
