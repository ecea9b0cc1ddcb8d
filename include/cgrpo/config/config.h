// Run configuration: one typed struct per INI section, read with Boost.Program_options.
// Precedence: built-in defaults (the DiffuCoder Coupled-GRPO recipe, spec/coupled_grpo.md §3.10)
//             < the INI file < command-line overrides of the same keys (`--grpo.beta 0.02`).
// An unknown key, a wrong type or an out-of-range value is an error that names the key, the file:line
// (or "command line") and the fix. The resolved config is written to the run dir (to_ini()).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <map>
#include <string>
#include <vector>

namespace cgrpo {

struct ModelSection {
  std::string path;                 // HF model dir (config.json + safetensors); empty: build from preset
  std::string preset = "tiny";      // tiny | small | 1b | diffucoder-7b (used when path is empty)
  std::string tokenizer;            // tokenizer.json; empty: <path>/tokenizer.json or the shared DiffuCoder one
  bool gradient_checkpointing = true;
  int64_t mask_token_id = -1;       // -1: from the model's config.json
};

struct ParallelSection {
  std::string backend = "cpu";      // cpu | cuda
  std::string zero_stage = "2";     // 0..3 or no_shard(0) | shard_grad_op(2) | full_shard(3); recipe: ZeRO-2
  std::string param_dtype = "f32";  // storage dtype of working params (bf16 on GPU)
  std::string compute_dtype = "f32";
  std::string reduce_dtype = "f32";
  std::string zero3_rollout_gather = "once";  // once | per_unit: weights for generation under ZeRO-3
  int64_t threads = 0;              // BLAS threads per rank; 0 = OPENBLAS_NUM_THREADS or all cores
  bool tf32 = false;                // CUDA: fp32 GEMMs on TF32 tensor cores
  bool ref_full_shard = true;       // GRPO reference parameters ZeRO-3-sharded whatever zero_stage is (false: as it)
  bool ref_fp32_master = false;     // GRPO reference under param_dtype = bf16: an fp32 master to mix into
  int stage() const;                // zero_stage resolved to 0..3
  // the frozen reference engine's stage beside a policy at `policy_stage` on `world` ranks (one rank has nothing
  // to shard)
  int ref_stage(int world, int policy_stage) const { return ref_full_shard && world > 1 ? 3 : policy_stage; }
};

struct RolloutSection {             // spec §2, §3.3
  int64_t steps = 256;              // diffusion_steps
  int64_t tokens_per_step = 0;      // > 0: steps = max_new_tokens / tokens_per_step
  int64_t max_new_tokens = 256;     // max_completion_length K
  double temperature = 1.0;         // generation_temperature
  double top_p = 0.95;
  int64_t top_k = 0;                // 0 = off
  std::string alg = "entropy";      // origin | maskgit_plus | topk_margin | entropy | confidence_threshold
  double alg_temp = 0.0;
  double eps = 1e-3;
  double confidence_threshold = 0.9;  // for alg = confidence_threshold
  int64_t batch_size = 10;          // generation_batch_size
};

struct RewardSection {              // spec §4
  std::string funcs = "code,code_format";
  std::string weights = "2.0,0.5";
  double test_timeout_s = 5.0;      // per test (spec §4.3 exec_timeout)
  double completion_timeout_s = 30.0;
  std::string timeout_policy = "zero_all";  // zero_all (reference) | fail_test
  int64_t workers = 2;
  int64_t memory_mb = 1024;
  std::string completion_text = "all";  // all (reference, spec §3.4) | before_end: what the rewards read
  std::vector<std::string> func_list() const;
  std::vector<double> weight_list() const;
};

struct GrpoSection {                // spec §3.2-3.10
  int64_t num_generations = 10;     // G
  int64_t num_iterations = 2;       // mu
  double beta = 0.01;               // KL coefficient
  double epsilon = 0.5;             // clip low
  double epsilon_high = -1.0;       // clip high; < 0: equal to epsilon (recipe: unset)
  bool scale_rewards = false;
  int64_t per_device_batch = 5;
  int64_t grad_accum = 2;
  int64_t max_prompt_length = 200;
  bool random_masking = true;
  double t_min = 0.2, t_max = 0.8;  // t ~ U(t_min, t_max) per micro-batch (spec §3.6)
  bool sync_ref_model = true;
  int64_t ref_model_sync_steps = 64;
  double ref_model_mixup_alpha = 0.6;
};

struct SftSection {
  int64_t steps = 200;
  int64_t batch_size = 8;
  int64_t max_length = 256;
  double lr = 1e-4;
};

struct OptimSection {               // spec §3.10
  double lr = 1e-6;
  double beta1 = 0.9, beta2 = 0.99, eps = 1e-8;
  double weight_decay = 0.1;
  std::string wd_exclude = "bias,norm";  // substrings of tensor names with no weight decay
  std::string lr_scheduler = "cosine_with_min_lr";  // constant | linear_warmup | cosine_with_min_lr
  double warmup_ratio = 1e-4;
  double min_lr_rate = 0.1;
  double max_grad_norm = 0.2;       // <= 0: no clipping
  std::vector<std::string> wd_exclude_list() const;
};

struct CheckpointSection {
  std::string dir;                  // empty: <run.dir>/checkpoints
  int64_t every_steps = 2000;       // save_steps; 0 = only at the end
  int64_t keep_last = 3;
  bool keep_best = true;            // with run.eval_every_steps: best.h5 = the best held-out reward (checkpoint.h)
  std::string resume = "none";      // none | auto | <path to a checkpoint>
};

struct DataSection {
  std::string dataset = "toy:arith";  // humaneval | mbpp | acecode | toy:<task> | <path.jsonl>
  std::string path;                 // file for humaneval/mbpp/acecode; empty: the copy in ../shared/data
  std::string system_prompt = "You are a helpful assistant.";
  std::string prompt_column = "question";
  int64_t max_samples = 0;          // 0 = all
  bool shuffle = true;
};

struct RunSection {
  std::string dir = "runs/default";
  int64_t seed = 42;
  int64_t max_steps = 0;            // 0: num_epochs over the data
  int64_t epochs = 1;
  std::string log_level = "info";   // trace | debug | info | warning | error
  int64_t logging_steps = 1;
  int64_t eval_prompts = 32;        // held-out prompts scored before and after GRPO (0: no evaluation)
  std::string eval_dataset;         // the evaluation's prompts (a data.dataset value); empty: see Trainer::evaluate
  int64_t eval_every_steps = 0;     // > 0: also every N GRPO steps (at round boundaries), for checkpoint.keep_best
};

struct Config {
  ModelSection model;
  ParallelSection parallel;
  RolloutSection rollout;
  RewardSection reward;
  GrpoSection grpo;
  SftSection sft;
  OptimSection optim;
  CheckpointSection checkpoint;
  DataSection data;
  RunSection run;

  std::string source_file;  // the INI it came from ("" = defaults only)
  std::map<std::string, std::string> origin;  // "section.key" -> "file:line" | "command line"

  // Reads `file` ("" = none) and applies `overrides` (argv-style: {"--grpo.beta", "0.02", ...} or
  // "--grpo.beta=0.02"), then validate(). Errors are fatal with file:line and a hint.
  static Config load(const std::string& file, const std::vector<std::string>& overrides = {});
  // The same from INI text (e.g. the resolved config a checkpoint carries); `name` stands for the file in messages.
  static Config from_ini(const std::string& text, const std::string& name);
  void validate() const;
  std::string to_ini() const;                   // every key, resolved, grouped by section
  void write_resolved(const std::string& run_dir) const;  // <run_dir>/config.resolved.ini
  static std::string reference();               // every key with its default and doc, for --help and README

 private:
  // load / from_ini: ini = nullptr for defaults + overrides only; file names the source in messages
  static Config parse(std::istream* ini, const std::string& file, const std::vector<std::string>& overrides);
};

}  // namespace cgrpo
