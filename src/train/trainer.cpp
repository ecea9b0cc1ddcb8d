#include "cgrpo/train/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <unistd.h>

#include "cgrpo/core/logging.h"
#include "cgrpo/core/philox.h"
#include "cgrpo/comm/factory.h"
#include "cgrpo/io/checkpoint.h"
#include "cgrpo/io/model_weights.h"
#include "cgrpo/optim/lr_schedule.h"
#include "cgrpo/reward/advantages.h"
#include "cgrpo/reward/reward_options.h"
#include "cgrpo/train/coupled_scorer.h"
#include "cgrpo/train/grpo_loss.h"
#include "cgrpo/train/model_denoiser.h"

namespace cgrpo {

volatile std::sig_atomic_t g_stop_signal = 0;

namespace {
void on_stop_signal(int sig) { g_stop_signal = sig; }

// Scalars summed over ranks in one collective (fp32, rank order).
std::vector<double> sum_over_ranks(Communicator& c, const std::vector<double>& v) {
  std::vector<float> f(v.begin(), v.end());
  c.all_reduce(TensorView::of(f.data(), {int64_t(f.size())}));
  return {f.begin(), f.end()};
}
double sum_over_ranks(Communicator& c, double v) { return sum_over_ranks(c, std::vector<double>{v})[0]; }

std::string fmt_eta(double s) {
  char b[32];
  if (s >= 3600)
    std::snprintf(b, sizeof(b), "%dh%02dm", int(s / 3600), int(std::fmod(s, 3600) / 60));
  else
    std::snprintf(b, sizeof(b), "%dm%02ds", int(s / 60), int(std::fmod(s, 60)));
  return b;
}

// Completion mask (spec §3.4): 1 through the first end token (inclusive), all ones when there is none.
int64_t completion_mask(const int32_t* y, int64_t K, int32_t end, uint8_t* c) {
  int64_t n = K;
  for (int64_t k = 0; k < K; ++k)
    if (y[k] == end) {
      n = k + 1;
      break;
    }
  for (int64_t k = 0; k < K; ++k) c[k] = k < n;
  return n;
}
}  // namespace

std::vector<int32_t> sft_target(const TextCodec& codec, const Prompt& p, int64_t K) {
  std::string answer;
  if (p.meta.count("answer"))
    answer = p.meta.at("answer");
  else if (!p.canonical_solution.empty())
    answer = "```python\n" + p.canonical_solution + "\n```\n";  // spec §4.1: the fence, then one newline
  else
    CGRPO_FAIL("SFT: prompt ", p.id, " has no reference answer", hint("use a toy task or a dataset with solutions"));
  std::vector<int32_t> y = codec.encode(answer);
  y.push_back(codec.end_id);
  y.resize(size_t(K), codec.pad_id);  // fixed length: truncate or pad
  return y;
}

std::string completion_text(const TextCodec& codec, const int32_t* y, int64_t K, bool before_end) {
  const int32_t* end = before_end ? std::find(y, y + K, codec.end_id) : y + K;
  return codec.decode(std::span<const int32_t>(y, size_t(end - y)));
}

void install_stop_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGUSR1, &sa, nullptr);
}

// ------------------------------------------------------------------------------------------------ setup
Trainer::Trainer(Config cfg, MpiCommunicator& comm)
    : cfg_(std::move(cfg)), comm_(comm), rank_(comm.rank()), world_(comm.world_size()) {
  init_logging(cfg_.run.dir, rank_, cfg_.run.log_level);
  {  // one line per rank in its own log: where it runs, and which (re)start of a batch job this is
    const char* job = std::getenv("SLURM_JOB_ID");
    const char* restart = std::getenv("SLURM_RESTART_COUNT");
    CGRPO_LOG(info) << "rank " << rank_ << "/" << world_ << " (local rank " << comm.local_rank() << ") on host "
                    << process_host() << ", pid " << ::getpid() << (job ? ", SLURM_JOB_ID=" : "") << (job ? job : "")
                    << (job ? ", SLURM_RESTART_COUNT=" : "") << (job ? (restart ? restart : "0") : "");
  }
  if (rank_ == 0) cfg_.write_resolved(cfg_.run.dir);
  ckpt_dir_ = cfg_.checkpoint.dir.empty() ? cfg_.run.dir + "/checkpoints" : cfg_.checkpoint.dir;
  init_model();

  data_ = std::make_unique<Dataset>(Dataset::from_config(cfg_.data, uint64_t(cfg_.run.seed)));
  if (cfg_.data.dataset.rfind("toy:", 0) == 0) toy_ = make_toy_task(cfg_.data.dataset);
  const std::vector<std::string> funcs = cfg_.reward.func_list();
  std::vector<float> weights;
  for (double w : cfg_.reward.weight_list()) weights.push_back(float(w));
  if (std::find(funcs.begin(), funcs.end(), "toy") == funcs.end()) {  // code rewards run in the sandbox
    sandbox_ = std::make_unique<Sandbox>(sandbox_config(cfg_.reward));
  } else {
    CGRPO_CHECK(toy_ != nullptr, "reward.funcs = toy needs a toy dataset (data.dataset = toy:<task>)",
                hint("use reward.funcs = code,code_format for code datasets"));
  }
  rewards_ =
      std::make_unique<RewardSet>(RewardSet::make(funcs, weights, sandbox_.get(), code_exec_options(cfg_.reward)));
  {  // the evaluation's prompts, scored with the same rewards: toy with toy, code with code
    const std::string& ev = cfg_.run.eval_dataset;
    if (ev.empty()) {
      eval_toy_ = toy_.get();
      eval_data_ = data_.get();
      eval_name_ = toy_ ? cfg_.data.dataset + " (unseen indices)" : cfg_.data.dataset + " (training prompts)";
    } else if (ev.rfind("toy:", 0) == 0) {
      eval_toy_own_ = make_toy_task(ev);
      eval_toy_ = eval_toy_own_.get();
      eval_name_ = ev + " (unseen indices)";
    } else {
      DataSection d = cfg_.data;
      d.dataset = ev;
      d.path.clear();
      d.max_samples = 0;
      eval_data_own_ = std::make_unique<Dataset>(Dataset::from_config(d, uint64_t(cfg_.run.seed)));
      eval_data_ = eval_data_own_.get();
      eval_name_ = ev;
    }
    CGRPO_CHECK((eval_toy_ != nullptr) == (toy_ != nullptr), "run.eval_dataset = ", ev, " cannot be scored with ",
                "the rewards of data.dataset = ", cfg_.data.dataset, " (", cfg_.reward.funcs, ")",
                hint(toy_ ? "use a toy:<task> evaluation set with a toy training set"
                          : "use a code evaluation set (humaneval, mbpp, a .jsonl) with a code training set"));
  }

  const int64_t local = cfg_.grpo.per_device_batch * cfg_.grpo.grad_accum;  // completions per rank per round
  const int64_t prompts_per_rank = local / cfg_.grpo.num_generations;
  sampler_ = std::make_unique<GroupSampler>(data_->size(), prompts_per_rank * world_, cfg_.grpo.num_generations,
                                            world_, rank_, uint64_t(cfg_.run.seed), cfg_.data.shuffle);
  if (rank_ == 0) {
    metrics_ = std::fopen((cfg_.run.dir + "/metrics.jsonl").c_str(), "a");
    CGRPO_CHECK(metrics_ != nullptr, "cannot open ", cfg_.run.dir, "/metrics.jsonl", hint("check run.dir"));
    CGRPO_LOG(info) << "cgrpo train: " << world_ << " ranks, ZeRO-" << policy_->stage() << ", model "
                    << (cfg_.model.path.empty() ? cfg_.model.preset : cfg_.model.path) << " ("
                    << layout_->total() << " parameters), dataset " << data_->name() << " (" << data_->size()
                    << " prompts), run dir " << cfg_.run.dir;
  }
  install_stop_signal_handlers();
}

Trainer::~Trainer() {
  if (metrics_) std::fclose(metrics_);
}

void Trainer::init_model() {
  if (!cfg_.model.path.empty())
    mc_ = ModelConfig::load((std::filesystem::path(cfg_.model.path) / "config.json").string());
  else
    mc_ = ModelConfig::preset(cfg_.model.preset);
  if (cfg_.model.mask_token_id >= 0) mc_.mask_token_id = cfg_.model.mask_token_id;
  // Sequences longer than the model's context (as generate refuses them): RoPE would run on untrained positions
  const int64_t ctx = mc_.max_position_embeddings, rollout_len = cfg_.grpo.max_prompt_length + cfg_.rollout.max_new_tokens;
  CGRPO_CHECK(rollout_len <= ctx, "grpo.max_prompt_length (", cfg_.grpo.max_prompt_length, ") + rollout.max_new_tokens (",
              cfg_.rollout.max_new_tokens, ") = ", rollout_len, " exceeds the model's max_position_embeddings ", ctx,
              hint("lower grpo.max_prompt_length or rollout.max_new_tokens (Dream/DiffuCoder were trained on 2048)"));
  CGRPO_CHECK(cfg_.sft.steps == 0 || cfg_.sft.max_length <= ctx, "sft.max_length (", cfg_.sft.max_length,
              ") exceeds the model's max_position_embeddings ", ctx, hint("lower sft.max_length"));
  layout_ = std::make_unique<ParamLayout>(mc_);
  be_ = make_backend(cfg_.parallel.backend, comm_.local_rank(), int(cfg_.parallel.threads));
  dcomm_ = make_device_communicator(*be_);
  be_->allow_tf32(cfg_.parallel.tf32);
  model_ = std::make_unique<DreamModel>(mc_, *be_);
  model_->set_recompute(cfg_.model.gradient_checkpointing);
  const auto units = units_from_layout(*layout_, cfg_.optim.wd_exclude_list());
  const AdamWParams hp{cfg_.optim.beta1, cfg_.optim.beta2, cfg_.optim.eps, cfg_.optim.weight_decay};
  const DType param_dtype = parse_dtype(cfg_.parallel.param_dtype);  // bf16: fp32 master weights in the engines
  model_->set_param_dtype(param_dtype);  // the model reads the engines' working parameters in their dtype
  model_->set_compute_dtype(parse_dtype(cfg_.parallel.compute_dtype));
  policy_ = std::make_unique<ZeroEngine>(units, pcomm(), cfg_.parallel.stage(), hp, true, be_.get(), param_dtype,
                                         parse_dtype(cfg_.parallel.reduce_dtype));
  // The reference: a frozen copy of the initial policy (§3.9), fully sharded by default (parallel.ref_full_shard:
  // its forwards gather it unit by unit, as DeepSpeed's stage-3 reference does) and, with bf16 parameters, without
  // an fp32 master unless parallel.ref_fp32_master (mix_from then mixes into its bf16 weights, as TRL does)
  if (cfg_.grpo.beta != 0.0) {
    const int ref_stage = cfg_.parallel.ref_stage(pcomm().world_size(), cfg_.parallel.stage());
    ref_ = std::make_unique<ZeroEngine>(units, pcomm(), ref_stage, hp, false, be_.get(), param_dtype, DType::F32,
                                        cfg_.parallel.ref_fp32_master);
  }
  // Unit by unit, each rank reading or drawing only what it stores (its shard at ZeRO-3), never the whole model;
  // nothing when resume() will overwrite it all (or fail)
  if (resume_will_load(ckpt_dir_, cfg_.checkpoint.resume)) {
    if (rank_ == 0) CGRPO_LOG(info) << "initial weights: not loaded, the run resumes from a checkpoint";
  } else {
    std::optional<ModelWeights> weights;
    if (!cfg_.model.path.empty()) weights.emplace(cfg_.model.path, *layout_);
    const uint64_t seed = uint64_t(cfg_.run.seed);
    const ParamFill fill = weights ? weights->fill() : [&](int64_t first, int64_t count, float* out) {
      init_params_range(*layout_, first, count, out, seed);
    };
    load_units(*policy_, *layout_, fill, ref_.get());
  }
  src_ = std::make_unique<EngineParamSource>(*policy_);
  model_->bind(src_.get(), true);
  codec_ = make_codec(mc_.vocab_size, int32_t(mc_.mask_token_id), int32_t(mc_.eos_token_id), cfg_.model.tokenizer,
                      cfg_.model.path);
}

void Trainer::resume() {
  CheckpointMeta m;
  const std::string path = resolve_resume(ckpt_dir_, cfg_.checkpoint.resume, *policy_, ref_.get(), &m);
  if (cfg_.checkpoint.keep_best && cfg_.run.eval_every_steps > 0) {  // the best record consider_best() extends
    const BestCheckpoint b = read_best_checkpoint(ckpt_dir_);
    if (b.step >= 0) best_reward_ = b.eval_reward;
  }
  if (path.empty()) return;
  tokens_seen_ = m.tokens_seen;
  if (m.phase == "sft") {
    sft_step_ = m.step;
  } else {
    sft_done_ = true;
    sft_step_ = cfg_.sft.steps;  // a GRPO checkpoint comes after the whole SFT phase (for the summary line)
    grpo_step_ = m.step;
    sampler_->restore(SamplerCursor{m.data_epoch, m.data_index, m.data_batch, m.data_position});
  }
  if (rank_ == 0)
    CGRPO_LOG(info) << "resumed from " << path << " (" << m.phase << " step " << m.step << ", saved at "
                    << m.world_size << " ranks, ZeRO-" << m.zero_stage << ")";
}

std::vector<int32_t> Trainer::prompt_ids(const Prompt& p) const {
  std::vector<int32_t> ids = codec_->prompt_ids(p.text, cfg_.data.system_prompt);
  const size_t keep = size_t(cfg_.grpo.max_prompt_length);
  if (ids.size() > keep) ids.erase(ids.begin(), ids.end() - ptrdiff_t(keep));  // left-truncate (spec §3.3)
  return ids;
}

std::vector<RewardSample> Trainer::reward_samples(const std::vector<const Prompt*>& prompts,
                                                  const std::vector<std::string>& completions) const {
  std::vector<RewardSample> out(completions.size());
  for (size_t i = 0; i < completions.size(); ++i) {
    out[i].completion = completions[i];
    out[i].tests = prompts[i]->tests;
    out[i].task = prompts[i]->kind;
    auto it = prompts[i]->meta.find("answer");
    if (it != prompts[i]->meta.end()) out[i].answer = it->second;
  }
  return out;
}

bool Trainer::stop_requested() {
  const double any = sum_over_ranks(comm_, g_stop_signal ? 1.0 : 0.0);
  return any > 0;
}

void Trainer::write_metrics(const nlohmann::json& line) {
  if (!metrics_) return;
  std::fprintf(metrics_, "%s\n", line.dump().c_str());
  std::fflush(metrics_);
}

std::string Trainer::reward_text(const int32_t* y, int64_t K) const {
  return completion_text(*codec_, y, K, cfg_.reward.completion_text == "before_end");
}

std::string Trainer::checkpoint(const std::string& phase, PhaseTimes* phases) {
  Timer t;
  CheckpointMeta m;
  m.phase = phase;
  m.step = phase == "sft" ? sft_step_ : grpo_step_;
  m.tokens_seen = tokens_seen_;
  m.lr_step = m.step;
  const SamplerCursor& c = sampler_->cursor();
  m.data_epoch = c.epoch;
  m.data_index = c.prompt;
  m.data_batch = c.batch;
  m.data_position = c.position;
  m.seed = cfg_.run.seed;
  m.config_ini = cfg_.to_ini();
  const std::string path = save_checkpoint(ckpt_dir_, m, *policy_, ref_.get(), int(cfg_.checkpoint.keep_last));
  if (phases) phases->add("checkpoint", t.elapsed_ms());
  return path;
}

void Trainer::consider_best(double eval_reward, std::string path) {
  if (!cfg_.checkpoint.keep_best || cfg_.run.eval_every_steps == 0 || !(eval_reward > best_reward_)) return;
  best_reward_ = eval_reward;  // the same on every rank: evaluate() sums over ranks
  if (path.empty()) path = checkpoint("grpo", nullptr);
  mark_best_checkpoint(ckpt_dir_, path, grpo_step_, eval_reward);
}

// Model FLOPs utilisation (PaLM's MFU) of this rank's training work w in `ms`: the model's FLOPs, forward +
// backward = 3 forwards of the body over w.tokens and of the LM head over the w.rows it scored, against the
// backend's nominal dense peak; 0 when the backend does not know its peak (CPU). Gradient checkpointing's recompute
// forward is work the hardware does, not model FLOPs: it is not counted.
double Trainer::step_mfu(const DreamModel::TrainedWork& w, int64_t seq_len, double ms) const {
  const double peak = be_->peak_flops(model_->param_dtype());  // the weight matmuls' input dtype
  if (peak <= 0 || ms <= 0) return 0.0;
  const double flops = 3.0 * (double(w.tokens) * model_->body_flops_per_token(seq_len) +
                              double(w.rows) * model_->head_flops_per_row());
  return flops / (ms * 1e-3) / peak;
}

void Trainer::log_step(const std::string& phase, int64_t step, int64_t total, double loss, const std::string& extra,
                       const PhaseTimes& phases, double step_ms, double tokens_per_s) {
  if (rank_ != 0) return;
  const double elapsed = run_timer_.elapsed_s();
  static double phase_start = elapsed;
  static std::string last_phase;
  if (last_phase != phase) phase_start = elapsed, last_phase = phase;
  const double eta = (elapsed - phase_start) / double(std::max<int64_t>(1, step)) * double(total - step);
  std::string ph;
  for (const auto& [k, v] : phases.all()) ph += " " + k + " " + std::to_string(int64_t(v)) + "ms";
  if (step % cfg_.run.logging_steps == 0 || step == total)
    CGRPO_LOG(info) << phase << " " << step << "/" << total << " | loss " << loss << extra << " | "
                    << int64_t(tokens_per_s) << " tok/s |" << ph << " | step " << int64_t(step_ms) << "ms | ETA "
                    << fmt_eta(eta);
}

// ------------------------------------------------------------------------------------------------ SFT
// Masked-diffusion SFT, LLaDA's normalisation (LLaDA GUIDELINES.md, "SFT"; the Dream/DiffuCoder SFT code is
// not public, so this is our stated choice): per sequence t ~ U(0, 1), p = (1 - eps) t + eps with eps = 1e-3,
// each answer token masked with probability p (the prompt never),
//   loss = sum_b sum_{masked k} CE_bk / p_b / K / B_global,
// where K is the fixed answer length (the answer, its end token, then padding: DiffuCoder-Instruct's
// fixed-length training with <|dlm_pad|>, spec §1.2).
void Trainer::sft_loop() {
  const int64_t total = cfg_.sft.steps, per = cfg_.sft.batch_size, K = cfg_.rollout.max_new_tokens;
  if (total == 0 || sft_step_ >= total) return;
  GroupSampler sft_sampler(data_->size(), per * world_, 1, world_, rank_, uint64_t(cfg_.run.seed) + 1, true);
  for (int64_t s = 0; s < sft_step_; ++s) sft_sampler.next();  // resume: skip consumed batches
  const LrSchedule lr(cfg_.optim.lr_scheduler, cfg_.sft.lr, total, std::max(cfg_.optim.warmup_ratio, 0.05),
                      cfg_.optim.min_lr_rate);
  const int64_t B_global = per * world_;
  while (sft_step_ < total) {
    Timer step_timer;
    PhaseTimes phases;
    pcomm().reset_stats();
    model_->take_trained_work();  // count this step's alone
    const RankBatch rb = sft_sampler.next();
    std::vector<std::vector<int32_t>> prompts;
    std::vector<std::vector<int32_t>> targets;
    for (int64_t idx : rb.prompts) {
      const Prompt& p = (*data_)[idx];
      prompts.push_back(prompt_ids(p));
      targets.push_back(sft_target(*codec_, p, K));
    }
    Canvas cv = Canvas::make(prompts, K, codec_->mask_id, codec_->pad_id);
    std::vector<int32_t> clean = cv.tokens;
    for (int64_t b = 0; b < cv.batch; ++b) std::copy(targets[size_t(b)].begin(), targets[size_t(b)].end(), clean.begin() + b * cv.len + cv.prompt_len);
    std::vector<int32_t> noisy = clean, rows, tgt;
    std::vector<float> w;
    for (int64_t b = 0; b < cv.batch; ++b) {
      const uint32_t sid = uint32_t(rb.first_position + b);
      const double t = RngStream(uint64_t(cfg_.run.seed), RngPurpose::Timestep, uint32_t(sft_step_), sid).uniform_f64(0);
      const double p = (1.0 - 1e-3) * t + 1e-3;
      const RngStream r(uint64_t(cfg_.run.seed), RngPurpose::Mask, uint32_t(sft_step_), sid);
      for (int64_t k = 0; k < K; ++k) {
        if (r.uniform(uint64_t(k)) >= float(p)) continue;
        const int64_t col = cv.prompt_len + k;
        noisy[size_t(b * cv.len + col)] = codec_->mask_id;
        rows.push_back(int32_t(b * cv.len + col - 1));  // shifted (spec §1.5)
        tgt.push_back(clean[size_t(b * cv.len + col)]);
        w.push_back(float(1.0 / (p * double(K) * double(B_global))));
      }
    }
    double loss_local = 0;
    {
      ScopedPhase ph(phases, "train");
      const ModelInput in{cv.batch, cv.len, noisy.data(), cv.pos_or_null(), cv.key_mask_or_null()};
      model_->forward(in, true);
      // a rank without masked tokens scores 0 rows: its backward adds nothing but joins every unit's
      // gradient collective in the same order as the other ranks (DreamModel::logprobs)
      std::vector<float> logp(rows.size()), dlogp(rows.size());
      model_->logprobs(int64_t(rows.size()), rows.data(), tgt.data(), logp.data());
      for (size_t i = 0; i < rows.size(); ++i) {
        loss_local -= double(logp[i]) * w[i];
        dlogp[i] = -w[i];
      }
      model_->backward(dlogp.data());
    }
    double gnorm = 0;
    {
      ScopedPhase ph(phases, "optim");
      gnorm = policy_->step(lr.lr(sft_step_), cfg_.optim.max_grad_norm);
    }
    ++sft_step_;
    tokens_seen_ += B_global * cv.len;
    phases.add("comm", pcomm().stats().time_ms());
    const int64_t sent = pcomm().stats().bytes_sent();
    const double loss = sum_over_ranks(comm_, loss_local);
    const double ms = step_timer.elapsed_ms();
    const double mfu = step_mfu(model_->take_trained_work(), cv.len, ms);
    char extra[128];
    std::snprintf(extra, sizeof(extra), " | gnorm %.3f | lr %.2e%s", gnorm, lr.lr(sft_step_ - 1),
                  mfu > 0 ? (" | MFU " + std::to_string(int(100 * mfu + 0.5)) + "%").c_str() : "");
    log_step("sft", sft_step_, total, loss, extra, phases, ms, double(B_global * cv.len) / (ms * 1e-3));
    if (metrics_) {
      nlohmann::json j = {{"phase", "sft"}, {"step", sft_step_}, {"loss", loss}, {"grad_norm", gnorm},
                          {"lr", lr.lr(sft_step_ - 1)}, {"step_ms", ms}, {"tokens_per_s", double(B_global * cv.len) / (ms * 1e-3)},
                          {"comm_bytes_sent", sent}};
      if (mfu > 0) j["mfu"] = mfu;
      for (const auto& [k, v] : phases.all()) j["ms_" + k] = v;
      write_metrics(j);
    }
    if (stop_requested()) {
      checkpoint("sft", nullptr);
      if (rank_ == 0) CGRPO_LOG(info) << "stop signal: checkpoint written at sft step " << sft_step_ << ", exiting";
      throw StopRequested{};
    }
    // periodic SFT checkpoints (sft_step_N.h5); the last step's is written by the caller
    if (cfg_.checkpoint.every_steps > 0 && sft_step_ % cfg_.checkpoint.every_steps == 0 && sft_step_ < total)
      checkpoint("sft", nullptr);
  }
}

// ------------------------------------------------------------------------------------------------ GRPO
struct Trainer::Rollout {
  int64_t B = 0, P = 0, K = 0;               // local completions, prompt columns, completion length
  Canvas canvas;                             // [B, P + K] prompt + completion
  std::vector<int64_t> sample_ids;           // [B]
  std::vector<uint8_t> cmask;                // [B, K] completion mask (§3.4)
  std::vector<float> rewards, adv;           // [B]
  std::vector<std::vector<float>> per_fn;    // [fn][B]
  std::vector<float> old, ref;               // [mu][B, K] coupled scores before the round's updates
  std::vector<const Prompt*> prompts;        // [B]
  int64_t completion_tokens = 0;             // sum of cmask
  double zero_std = 0;
  StatusCounts status;
};

Trainer::Rollout Trainer::rollout_round(int64_t round, PhaseTimes& phases) {
  (void)round;
  Rollout r;
  const int64_t G = cfg_.grpo.num_generations, K = cfg_.rollout.max_new_tokens;
  const RankBatch rb = sampler_->next();
  std::vector<std::vector<int32_t>> prompts;
  for (size_t k = 0; k < rb.prompts.size(); ++k)
    for (int64_t j = 0; j < G; ++j) {
      r.prompts.push_back(&(*data_)[rb.prompts[k]]);
      prompts.push_back(prompt_ids(*r.prompts.back()));
      r.sample_ids.push_back(rb.sample_id(int64_t(k), j));
    }
  r.B = int64_t(prompts.size());
  r.K = K;
  r.canvas = Canvas::make(prompts, K, codec_->mask_id, codec_->pad_id);
  r.P = r.canvas.prompt_len;
  {
    ScopedPhase ph(phases, "rollout");
    SamplerConfig sc = SamplerConfig::grpo_rollout(cfg_.rollout, codec_->mask_id, codec_->pad_id, uint64_t(cfg_.run.seed));
    sc.lockstep = policy_->stage() == 3;  // per-unit gathers in every forward (and "once" pins collectively)
    Sampler sampler(sc);
    std::unique_ptr<PinnedSource> pinned;  // ZeRO-3 "once": every unit gathered for the whole rollout
    if (policy_->stage() == 3 && cfg_.parallel.zero3_rollout_gather == "once") {
      pinned = std::make_unique<PinnedSource>(*policy_);
      model_->bind(pinned.get(), false);
    }
    ModelDenoiser den(*model_);
    const int64_t chunk = cfg_.rollout.batch_size;
    for (int64_t b0 = 0; b0 < r.B; b0 += chunk) {
      const int64_t n = std::min(chunk, r.B - b0);
      std::vector<std::vector<int32_t>> sub(prompts.begin() + b0, prompts.begin() + b0 + n);
      std::vector<uint32_t> ids(r.sample_ids.begin() + b0, r.sample_ids.begin() + b0 + n);
      Canvas c = sampler.generate(den, sub, ids);
      for (int64_t i = 0; i < n; ++i) {
        const int32_t* y = c.completion(i);
        std::copy(y, y + K, r.canvas.row(b0 + i) + r.P);
      }
    }
    model_->release_held();
    model_->bind(src_.get(), true);
  }
  // completion masks, decoded completions, rewards, advantages (spec §3.4, §3.5)
  r.cmask.resize(size_t(r.B * K));
  std::vector<std::string> texts(size_t(r.B));
  for (int64_t b = 0; b < r.B; ++b) {
    const int32_t* y = r.canvas.completion(b);
    r.completion_tokens += completion_mask(y, K, codec_->end_id, r.cmask.data() + b * K);
    texts[size_t(b)] = reward_text(y, K);
  }
  {
    ScopedPhase ph(phases, "reward");
    RewardSetOutput out = rewards_->score(reward_samples(r.prompts, texts));
    r.rewards = out.total;
    r.per_fn = out.per_fn;
    r.status = out.runs;
  }
  r.adv = group_advantages(r.rewards, int(G), cfg_.grpo.scale_rewards);
  r.zero_std = zero_std_ratio(r.rewards, int(G));
  return r;
}

// The coupled-scoring micro-batch of rollout rows [m0, m0 + n) for iteration u of a round: iteration u uses
// mask draw round * mu + u (spec §3.7 quirk fixed); random_masking = false: draw 0 for every iteration of every
// round, as the reference's mask_seeds = [42] * mu.
CoupledBatch Trainer::micro_batch(const Rollout& r, int64_t m0, int64_t n, int64_t round, int64_t u) const {
  const int64_t L = r.P + r.K, mu = cfg_.grpo.num_iterations;
  CoupledBatch cb;
  cb.B = n;
  cb.P = r.P;
  cb.K = r.K;
  cb.tokens = r.canvas.tokens.data() + m0 * L;
  cb.key_mask = r.canvas.key_mask.empty() ? nullptr : r.canvas.key_mask.data() + m0 * L;
  cb.pos = r.canvas.pos.empty() ? nullptr : r.canvas.pos.data() + m0 * L;
  cb.sample_ids = r.sample_ids.data() + m0;
  cb.mask_id = codec_->mask_id;
  cb.seed = uint64_t(cfg_.run.seed);
  cb.mask_step = uint32_t(cfg_.grpo.random_masking ? round * mu + u : 0);
  cb.t_min = cfg_.grpo.t_min;
  cb.t_max = cfg_.grpo.t_max;
  return cb;
}

void Trainer::score_old_ref(Rollout& r, int64_t round, PhaseTimes& phases) {
  ScopedPhase ph(phases, "score");
  const int64_t mu = cfg_.grpo.num_iterations, M = cfg_.grpo.per_device_batch, K = r.K;
  r.old.assign(size_t(mu * r.B * K), 0.0f);
  r.ref.assign(size_t(mu * r.B * K), 0.0f);
  CoupledScorer scorer(*model_);
  auto score_all = [&](std::vector<float>& dst) {
    for (int64_t u = 0; u < mu; ++u)
      for (int64_t m0 = 0; m0 < r.B; m0 += M)
        scorer.score(micro_batch(r, m0, std::min(M, r.B - m0), round, u), false, dst.data() + (u * r.B + m0) * K);
  };
  if (mu > 1) score_all(r.old);  // mu = 1: old = logp.detach() (ratio 1), filled per micro-batch
  if (ref_) {
    EngineParamSource ref_src(*ref_);
    model_->bind(&ref_src, false);
    score_all(r.ref);
    model_->release_held();
    model_->bind(src_.get(), true);
  }
}

void Trainer::grpo_loop() {
  const int64_t mu = cfg_.grpo.num_iterations, GA = cfg_.grpo.grad_accum, M = cfg_.grpo.per_device_batch;
  const int64_t total = cfg_.run.max_steps > 0 ? cfg_.run.max_steps
                                               : cfg_.run.epochs * sampler_->batches_per_epoch() * mu;
  const LrSchedule lr(cfg_.optim.lr_scheduler, cfg_.optim.lr, total, cfg_.optim.warmup_ratio, cfg_.optim.min_lr_rate);
  const double eps_high = cfg_.grpo.epsilon_high < 0 ? cfg_.grpo.epsilon : cfg_.grpo.epsilon_high;
  CoupledScorer scorer(*model_);
  while (grpo_step_ < total) {
    const int64_t round = grpo_step_ / mu;
    PhaseTimes phases;
    Timer round_timer;
    pcomm().reset_stats();
    Rollout r = rollout_round(round, phases);
    score_old_ref(r, round, phases);
    const int64_t K = r.K, L = r.P + K;
    model_->take_trained_work();  // the round's training work, summed over its iterations (the "train" phase)
    DreamModel::TrainedWork trained;
    for (int64_t u = 0; u < mu && grpo_step_ < total; ++u) {
      Timer step_timer;
      GrpoLossStats acc;
      double loss_sum = 0;
      {
        ScopedPhase ph(phases, "train");
        for (int64_t m = 0; m < GA; ++m) {
          const int64_t m0 = m * M, n = std::min(M, r.B - m0);
          if (n <= 0) break;
          std::vector<float> logp(size_t(n * K)), g(size_t(n * K));
          scorer.score(micro_batch(r, m0, n, round, u), true, logp.data());  // iteration u -> mask draw u
          const float* old = mu > 1 ? r.old.data() + (u * r.B + m0) * K : logp.data();
          const float* ref = ref_ ? r.ref.data() + (u * r.B + m0) * K : nullptr;
          const GrpoLossStats s = grpo_loss(n, K, logp.data(), old, ref, r.adv.data() + m0, r.cmask.data() + m0 * K,
                                            cfg_.grpo.epsilon, eps_high, cfg_.grpo.beta, g.data());
          // HF divides the micro-batch loss by GA; DeepSpeed averages gradients over W ranks (spec §3.8)
          const float scale = 1.0f / float(GA * world_);
          for (float& x : g) x *= scale;
          scorer.backward(g.data());
          loss_sum += s.loss / double(GA);
          acc.kl_mean += s.kl_mean / double(GA);
          acc.clip_low += s.clip_low / double(GA);
          acc.clip_high += s.clip_high / double(GA);
          acc.clip_region += s.clip_region / double(GA);
        }
      }
      double gnorm = 0;
      const double lr_now = lr.lr(grpo_step_);
      {
        ScopedPhase ph(phases, "optim");
        gnorm = policy_->step(lr_now, cfg_.optim.max_grad_norm);
      }
      ++grpo_step_;
      if (ref_ && cfg_.grpo.sync_ref_model && grpo_step_ % cfg_.grpo.ref_model_sync_steps == 0)
        ref_->mix_from(*policy_, cfg_.grpo.ref_model_mixup_alpha);  // θ_ref <- (1 - α) θ_ref + α θ (§3.9)

      // metrics: global means over ranks
      double rsum = 0, rsq = 0;
      for (float x : r.rewards) rsum += x, rsq += double(x) * x;
      std::vector<double> local = {loss_sum, acc.kl_mean, acc.clip_low, acc.clip_high, acc.clip_region,
                                   rsum, rsq, double(r.B), double(r.completion_tokens), r.zero_std};
      for (const auto& f : r.per_fn) {  // per reward function: sum and sum of squares
        double s = 0, s2 = 0;
        for (float x : f) s += x, s2 += double(x) * x;
        local.push_back(s);
        local.push_back(s2);
      }
      const size_t status_at = local.size();  // sandbox runs by kind, counted once per round (u == 0)
      for (int k = 0; k < kNumRunStatus; ++k) local.push_back(u == 0 ? double(r.status.n[size_t(k)]) : 0.0);
      const std::vector<double> g = sum_over_ranks(comm_, local);
      const double n = g[7], reward_mean = g[5] / n;
      const double reward_std = std::sqrt(std::max(0.0, g[6] / n - reward_mean * reward_mean));
      const double step_ms = step_timer.elapsed_ms() + (u == 0 ? phases.get("rollout") + phases.get("reward") + phases.get("score") : 0.0);
      tokens_seen_ += int64_t(n) * L;
      const double tok_s = (n * double(K)) / (round_timer.elapsed_ms() * 1e-3) / double(u + 1);
      phases.add("comm", pcomm().stats().time_ms());
      const int64_t sent = pcomm().stats().bytes_sent();
      pcomm().reset_stats();
      // the train phase's MFU: μ iterations so far, each a 3-version forward + backward over every completion
      const DreamModel::TrainedWork w = model_->take_trained_work();
      trained.tokens += w.tokens;
      trained.rows += w.rows;
      const double train_mfu = step_mfu(trained, L, phases.get("train"));
      char extra[288];
      std::snprintf(extra, sizeof(extra), " | reward %.3f ± %.3f | kl %.4f | clip %.3f | len %.1f | gnorm %.3f | lr %.2e%s",
                    reward_mean, reward_std, g[1] / world_, g[4] / world_, g[8] / n, gnorm, lr_now,
                    train_mfu > 0 ? (" | train MFU " + std::to_string(int(100 * train_mfu + 0.5)) + "%").c_str() : "");
      log_step("grpo", grpo_step_, total, g[0] / world_, extra, phases, step_ms, tok_s);
      if (metrics_) {
        nlohmann::json j = {{"phase", "grpo"}, {"step", grpo_step_}, {"loss", g[0] / world_},
                            {"reward_mean", reward_mean}, {"reward_std", reward_std}, {"kl", g[1] / world_},
                            {"clip_ratio_low", g[2] / world_}, {"clip_ratio_high", g[3] / world_},
                            {"clip_ratio_region", g[4] / world_}, {"zero_std_ratio", g[9] / world_},
                            {"completion_length", g[8] / n}, {"grad_norm", gnorm}, {"lr", lr_now},
                            {"tokens_per_s", tok_s}, {"step_ms", step_ms}, {"comm_bytes_sent", sent}};
        if (train_mfu > 0) j["train_mfu"] = train_mfu;
        const auto names = rewards_->names();
        for (size_t k = 0; k < names.size(); ++k) {
          const double m = g[10 + 2 * k] / n;
          j["reward_" + names[k]] = m;
          j["reward_" + names[k] + "_std"] = std::sqrt(std::max(0.0, g[11 + 2 * k] / n - m * m));
        }
        for (int k = 0; k < kNumRunStatus; ++k)  // a crash or timeout scores 0 and is counted here
          if (g[status_at + size_t(k)] > 0) j[std::string("runs_") + run_status_name(RunStatus(k))] = g[status_at + size_t(k)];
        for (const auto& [k, v] : phases.all()) j["ms_" + k] = v;
        write_metrics(j);
      }
      phases.clear();
    }
    // round boundary: checkpoints, evaluations and stop requests (a round's rollouts are not stored)
    const bool last = grpo_step_ >= total;
    const int64_t done_before = grpo_step_ - std::min<int64_t>(mu, grpo_step_);  // this round crossed a multiple?
    auto crossed = [&](int64_t every) { return every > 0 && grpo_step_ / every != done_before / every; };
    const bool due = crossed(cfg_.checkpoint.every_steps);
    if (stop_requested()) {
      checkpoint("grpo", nullptr);
      if (rank_ == 0) CGRPO_LOG(info) << "stop signal: checkpoint written at step " << grpo_step_ << ", exiting";
      throw StopRequested{};
    }
    std::string written;
    if (due && !last) {
      PhaseTimes ck;
      written = checkpoint("grpo", &ck);
      write_metrics({{"phase", "checkpoint"}, {"step", grpo_step_}, {"ms_checkpoint", ck.get("checkpoint")}});
    }
    if (crossed(cfg_.run.eval_every_steps) && !last)  // the last step's evaluation is train()'s "after GRPO"
      consider_best(evaluate(("at step " + std::to_string(grpo_step_)).c_str()), written);
  }
}

// Greedy decoding on the evaluation prompts (run.eval_dataset; toy: indices past the training range, else the
// dataset's first eval_prompts prompts), mean total reward over all ranks; a metrics line {"phase": "eval",
// "step", "when", "eval_reward"}.
double Trainer::evaluate(const char* when) {
  if (cfg_.run.eval_prompts == 0) return -1;
  const int64_t n = eval_toy_ ? cfg_.run.eval_prompts : std::min(cfg_.run.eval_prompts, eval_data_->size());
  RolloutSection rs = cfg_.rollout;
  rs.temperature = 0.0;
  rs.alg_temp = 0.0;
  SamplerConfig sc = SamplerConfig::from_rollout(rs, codec_->mask_id, codec_->pad_id, uint64_t(cfg_.run.seed));
  sc.lockstep = policy_->stage() == 3;  // ZeRO-3 forwards gather every unit: the same number on every rank
  Sampler sampler(sc);
  ModelDenoiser den(*model_);
  // Prompt i runs on rank i % W. Every rank generates ceil(n / W) prompts, the ranks short of that a repeat of
  // prompt 0 that is not scored: the same number of forwards everywhere, as ZeRO-3's per-unit gathers require.
  const int64_t per_rank = (n + world_ - 1) / world_;
  auto prompt_at = [&](int64_t i) {
    return eval_toy_ ? eval_toy_->generate(uint64_t(cfg_.run.seed), 1'000'000 + i) : (*eval_data_)[i];
  };
  std::vector<Prompt> held;
  held.reserve(size_t(per_rank));   // `mine` points into it
  std::vector<const Prompt*> mine;  // the scored ones: held[0, mine.size())
  std::vector<std::vector<int32_t>> ids;
  std::vector<uint32_t> sids;
  for (int64_t k = 0; k < per_rank; ++k) {
    const int64_t i = rank_ + k * world_;
    held.push_back(prompt_at(i < n ? i : 0));
    if (i < n) mine.push_back(&held.back());
    ids.push_back(prompt_ids(held.back()));
    sids.push_back(uint32_t(0x7fffffff - i));
  }
  double sum = 0;
  {
    std::vector<std::string> texts;
    const int64_t chunk = cfg_.rollout.batch_size;
    for (size_t b0 = 0; b0 < ids.size(); b0 += size_t(chunk)) {
      const size_t e = std::min(ids.size(), b0 + size_t(chunk));
      std::vector<std::vector<int32_t>> sub(ids.begin() + ptrdiff_t(b0), ids.begin() + ptrdiff_t(e));
      std::vector<uint32_t> s(sids.begin() + ptrdiff_t(b0), sids.begin() + ptrdiff_t(e));
      Canvas c = sampler.generate(den, sub, s);
      for (int64_t i = 0; i < c.batch; ++i) texts.push_back(reward_text(c.completion(i), c.new_tokens));
    }
    model_->release_held();
    texts.resize(mine.size());  // the padding repeats are not scored
    const RewardSetOutput out = rewards_->score(reward_samples(mine, texts));
    for (float x : out.total) sum += x;
  }
  const double mean = sum_over_ranks(comm_, sum) / double(n);
  if (rank_ == 0) CGRPO_LOG(info) << "eval (" << when << "): mean reward " << mean << " on " << n << " prompts of " << eval_name_;
  write_metrics({{"phase", "eval"}, {"step", grpo_step_}, {"when", when}, {"eval_reward", mean}});
  return mean;
}

int Trainer::train() {
  resume();
  try {
    if (!sft_done_) {
      sft_loop();
      // GRPO's reference is the model it starts from: the SFT result (TRL: a frozen copy of the initial policy)
      if (ref_ && sft_step_ > 0) ref_->mix_from(*policy_, 1.0);
      policy_->reset_optimizer();  // GRPO starts a fresh AdamW, as a separate fine-tuning run would
      sft_done_ = true;
    }
    reward_before_ = evaluate("before GRPO");
    grpo_loop();
    reward_after_ = evaluate("after GRPO");
    consider_best(reward_after_, checkpoint("grpo", nullptr));
  } catch (const StopRequested&) {
    return 0;
  }
  if (rank_ == 0) {
    char line[256];
    std::snprintf(line, sizeof(line), "done: %lld SFT + %lld GRPO steps on %d ranks in %.1f s; held-out reward %.3f -> %.3f",
                  (long long)sft_step_, (long long)grpo_step_, world_, run_timer_.elapsed_s(), reward_before_,
                  reward_after_);
    CGRPO_LOG(info) << line;
    write_metrics({{"phase", "summary"}, {"reward_before", reward_before_}, {"reward_after", reward_after_},
                   {"sft_steps", sft_step_}, {"grpo_steps", grpo_step_}, {"seconds", run_timer_.elapsed_s()}});
  }
  return 0;
}

int Trainer::sft_only() {
  resume();
  try {
    sft_loop();
    checkpoint("sft", nullptr);
  } catch (const StopRequested&) {
    return 0;
  }
  const double r = evaluate("after SFT");
  if (rank_ == 0) CGRPO_LOG(info) << "done: " << sft_step_ << " SFT steps in " << run_timer_.elapsed_s() << " s; held-out reward " << r;
  return 0;
}

}  // namespace cgrpo
