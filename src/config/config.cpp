#include "cgrpo/config/config.h"

#include <boost/program_options.hpp>
#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cgrpo/core/error.h"

namespace po = boost::program_options;

namespace cgrpo {

// Every key once: section, name, field, doc. Used for parsing, validation messages, to_ini and reference().
template <class C, class V>
static void visit(C& c, V&& v) {
  v("model", "path", c.model.path, "HF model dir (config.json + *.safetensors); empty: initialise from preset");
  v("model", "preset", c.model.preset, "tiny | small | 1b | diffucoder-7b (used when path is empty)");
  v("model", "tokenizer", c.model.tokenizer, "tokenizer.json; empty: <path>/tokenizer.json or the shared DiffuCoder one");
  v("model", "gradient_checkpointing", c.model.gradient_checkpointing, "recompute each layer's activations in backward");
  v("model", "mask_token_id", c.model.mask_token_id, "-1: take it from the model's config.json");
  v("parallel", "backend", c.parallel.backend, "cpu | cuda");
  v("parallel", "zero_stage", c.parallel.zero_stage, "0..3, or no_shard (0) | shard_grad_op (2) | full_shard (3)");
  v("parallel", "param_dtype", c.parallel.param_dtype, "working parameter dtype: f32 | bf16 (fp32 master weights)");
  v("parallel", "compute_dtype", c.parallel.compute_dtype, "activation dtype: f32 | bf16 (needs param_dtype = bf16)");
  v("parallel", "reduce_dtype", c.parallel.reduce_dtype, "gradient reduction dtype: f32 | bf16");
  v("parallel", "zero3_rollout_gather", c.parallel.zero3_rollout_gather, "once | per_unit: ZeRO-3 weights for generation");
  v("parallel", "threads", c.parallel.threads, "BLAS threads per rank; 0 = OPENBLAS_NUM_THREADS or all cores");
  v("parallel", "tf32", c.parallel.tf32, "cuda: fp32 GEMMs on TF32 tensor cores (10-bit mantissa inputs, fp32 accumulate)");
  v("parallel", "ref_full_shard", c.parallel.ref_full_shard,
    "GRPO reference (grpo.beta != 0) sharded ZeRO-3 style at any zero_stage; false = like the policy");
  v("parallel", "ref_fp32_master", c.parallel.ref_fp32_master,
    "param_dtype = bf16: keep an fp32 master of the reference; false = sync mixes into its bf16 weights (TRL)");
  v("rollout", "steps", c.rollout.steps, "denoising steps (diffusion_steps)");
  v("rollout", "tokens_per_step", c.rollout.tokens_per_step, "> 0: steps = max_new_tokens / tokens_per_step");
  v("rollout", "max_new_tokens", c.rollout.max_new_tokens, "completion length K (fixed canvas)");
  v("rollout", "temperature", c.rollout.temperature, "sampling temperature; 0 = greedy");
  v("rollout", "top_p", c.rollout.top_p, "nucleus filter in (0, 1]; 1 = off");
  v("rollout", "top_k", c.rollout.top_k, "top-k filter; 0 = off");
  v("rollout", "alg", c.rollout.alg, "origin | maskgit_plus | topk_margin | entropy | confidence_threshold");
  v("rollout", "alg_temp", c.rollout.alg_temp, "0: deterministic position choice; > 0: stochastic");
  v("rollout", "eps", c.rollout.eps, "final time of the linspace(1, eps, steps + 1) schedule");
  v("rollout", "confidence_threshold", c.rollout.confidence_threshold, "commit threshold for alg = confidence_threshold");
  v("rollout", "batch_size", c.rollout.batch_size, "prompts per generation call (generation_batch_size)");
  v("reward", "funcs", c.reward.funcs, "comma list: code, code_format, toy");
  v("reward", "weights", c.reward.weights, "comma list, one weight per function");
  v("reward", "test_timeout_s", c.reward.test_timeout_s, "wall-clock limit per test program");
  v("reward", "completion_timeout_s", c.reward.completion_timeout_s, "wall-clock budget per completion");
  v("reward", "timeout_policy", c.reward.timeout_policy, "zero_all (any timeout zeroes the completion, as the reference) | fail_test");
  v("reward", "workers", c.reward.workers, "sandbox processes per rank");
  v("reward", "memory_mb", c.reward.memory_mb, "address-space limit per sandboxed program");
  v("reward", "completion_text", c.reward.completion_text,
    "all (the K completion tokens with special tokens skipped, as the reference) | before_end (cut at the first end token)");
  v("grpo", "num_generations", c.grpo.num_generations, "G completions per prompt");
  v("grpo", "num_iterations", c.grpo.num_iterations, "mu policy updates per rollout batch");
  v("grpo", "beta", c.grpo.beta, "KL coefficient (k3 estimator)");
  v("grpo", "epsilon", c.grpo.epsilon, "PPO clip, low side");
  v("grpo", "epsilon_high", c.grpo.epsilon_high, "PPO clip, high side; < 0: same as epsilon");
  v("grpo", "scale_rewards", c.grpo.scale_rewards, "divide advantages by the group std");
  v("grpo", "per_device_batch", c.grpo.per_device_batch, "completions per micro-batch per rank");
  v("grpo", "grad_accum", c.grpo.grad_accum, "micro-batches per optimizer step");
  v("grpo", "max_prompt_length", c.grpo.max_prompt_length, "prompt tokens kept (left-truncated)");
  v("grpo", "random_masking", c.grpo.random_masking, "fresh mask draws per iteration and round (else one fixed draw, as the reference's [42] * mu)");
  v("grpo", "t_min", c.grpo.t_min, "t ~ U(t_min, t_max) per micro-batch");
  v("grpo", "t_max", c.grpo.t_max, "");
  v("grpo", "sync_ref_model", c.grpo.sync_ref_model, "mix the policy into the reference every ref_model_sync_steps");
  v("grpo", "ref_model_sync_steps", c.grpo.ref_model_sync_steps, "");
  v("grpo", "ref_model_mixup_alpha", c.grpo.ref_model_mixup_alpha, "ref = alpha * policy + (1 - alpha) * ref");
  v("sft", "steps", c.sft.steps, "optimizer steps of masked-diffusion SFT");
  v("sft", "batch_size", c.sft.batch_size, "sequences per step per rank");
  v("sft", "max_length", c.sft.max_length, "tokens per sequence");
  v("sft", "lr", c.sft.lr, "peak learning rate for SFT");
  v("optim", "lr", c.optim.lr, "peak learning rate");
  v("optim", "beta1", c.optim.beta1, "AdamW beta1");
  v("optim", "beta2", c.optim.beta2, "AdamW beta2");
  v("optim", "eps", c.optim.eps, "AdamW epsilon");
  v("optim", "weight_decay", c.optim.weight_decay, "decoupled weight decay");
  v("optim", "wd_exclude", c.optim.wd_exclude, "comma list of tensor-name substrings without weight decay");
  v("optim", "lr_scheduler", c.optim.lr_scheduler, "constant | linear_warmup | cosine_with_min_lr");
  v("optim", "warmup_ratio", c.optim.warmup_ratio, "warmup steps = ceil(ratio * total)");
  v("optim", "min_lr_rate", c.optim.min_lr_rate, "cosine floor as a fraction of lr");
  v("optim", "max_grad_norm", c.optim.max_grad_norm, "global-norm clip; <= 0 disables");
  v("checkpoint", "dir", c.checkpoint.dir, "empty: <run.dir>/checkpoints");
  v("checkpoint", "every_steps", c.checkpoint.every_steps, "save every N optimizer steps; 0 = only at the end");
  v("checkpoint", "keep_last", c.checkpoint.keep_last, "complete checkpoints kept");
  v("checkpoint", "keep_best", c.checkpoint.keep_best,
    "with run.eval_every_steps: keep best.h5, the checkpoint of the best held-out reward, beside keep_last");
  v("checkpoint", "resume", c.checkpoint.resume, "none | auto | <checkpoint path>");
  v("data", "dataset", c.data.dataset, "humaneval | mbpp | acecode | toy:<task> | <file.jsonl>");
  v("data", "path", c.data.path, "dataset file; empty: the copy under ../shared/data");
  v("data", "system_prompt", c.data.system_prompt, "ChatML system turn; empty: none");
  v("data", "prompt_column", c.data.prompt_column, "JSONL field holding the prompt (AceCode-style data)");
  v("data", "max_samples", c.data.max_samples, "0 = all");
  v("data", "shuffle", c.data.shuffle, "shuffle by (seed, epoch)");
  v("run", "dir", c.run.dir, "run directory: logs/, metrics.jsonl, checkpoints/, config.resolved.ini");
  v("run", "seed", c.run.seed, "global seed of every Philox stream");
  v("run", "max_steps", c.run.max_steps, "0: run run.epochs over the data");
  v("run", "epochs", c.run.epochs, "");
  v("run", "log_level", c.run.log_level, "trace | debug | info | warning | error");
  v("run", "logging_steps", c.run.logging_steps, "progress line every N steps");
  v("run", "eval_prompts", c.run.eval_prompts, "held-out prompts scored (greedy) before and after GRPO; 0 = none");
  v("run", "eval_dataset", c.run.eval_dataset,
    "evaluation prompts: humaneval | mbpp | mbpp_sanitized | toy:<task> | a .jsonl; empty: unseen toy prompts for a "
    "toy data.dataset, else the first eval_prompts prompts of data.dataset (which training also sees)");
  v("run", "eval_every_steps", c.run.eval_every_steps,
    "also evaluate every N GRPO steps (metrics phase eval; checkpoint.keep_best); 0 = before and after only");
}

namespace {

template <class T>
std::string to_text(const T& v) {
  if constexpr (std::is_same_v<T, bool>) {
    return v ? "true" : "false";
  } else if constexpr (std::is_same_v<T, std::string>) {
    return v;
  } else if constexpr (std::is_same_v<T, double>) {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof(buf), v);  // shortest text that reads back to the same double
    return std::string(buf, r.ptr);
  } else {
    return std::to_string(v);
  }
}

template <class T>
const char* type_name() {
  if constexpr (std::is_same_v<T, bool>) return "a boolean (true/false)";
  if constexpr (std::is_same_v<T, int64_t>) return "an integer";
  if constexpr (std::is_same_v<T, double>) return "a number";
  return "a string";
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::vector<std::string> all_keys() {
  std::vector<std::string> keys;
  Config c;
  visit(c, [&](const char* s, const char* k, auto&, const char*) { keys.push_back(std::string(s) + "." + k); });
  return keys;
}

std::string suggest(const std::string& key) {
  std::string best;
  size_t best_d = 4;
  for (const std::string& k : all_keys()) {
    const size_t d = edit_distance(key, k);
    if (d < best_d) best_d = d, best = k;
  }
  return best.empty() ? "see `cgrpo config --reference` for every key" : "did you mean '" + best + "'?";
}

// "section.key" -> line number, from a plain scan of the INI file (Program_options does not report lines).
std::map<std::string, int> key_lines(std::istream& in) {
  std::map<std::string, int> lines;
  std::string line, section;
  for (int n = 1; std::getline(in, line); ++n) {
    const size_t b = line.find_first_not_of(" \t");
    if (b == std::string::npos || line[b] == '#' || line[b] == ';') continue;
    if (line[b] == '[') {
      section = line.substr(b + 1, line.find(']', b) - b - 1);
      continue;
    }
    const size_t eq = line.find('=', b);
    if (eq == std::string::npos) continue;
    std::string key = line.substr(b, eq - b);
    key.erase(key.find_last_not_of(" \t") + 1);
    lines.emplace(section.empty() ? key : section + "." + key, n);
  }
  return lines;
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

}  // namespace

int ParallelSection::stage() const {
  if (zero_stage == "0" || zero_stage == "no_shard") return 0;
  if (zero_stage == "1") return 1;
  if (zero_stage == "2" || zero_stage == "shard_grad_op") return 2;
  if (zero_stage == "3" || zero_stage == "full_shard") return 3;
  return -1;
}

std::vector<std::string> RewardSection::func_list() const { return split_list(funcs); }
std::vector<std::string> OptimSection::wd_exclude_list() const { return split_list(wd_exclude); }

std::vector<double> RewardSection::weight_list() const {
  std::vector<double> w;
  for (const std::string& s : split_list(weights)) {
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    CGRPO_CHECK(used == s.size(), "reward.weights: '", s, "' is not a number", hint("write e.g. weights = 2.0,0.5"));
    w.push_back(v);
  }
  return w;
}

Config Config::load(const std::string& file, const std::vector<std::string>& overrides) {
  if (file.empty()) return parse(nullptr, "", overrides);
  std::ifstream in(file);
  CGRPO_CHECK(in.good(), "config: cannot open '", file, "'", hint("pass an existing INI file, e.g. configs/tiny_cpu.ini"));
  return parse(&in, file, overrides);
}

Config Config::from_ini(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  return parse(&in, name, {});
}

Config Config::parse(std::istream* ini, const std::string& file, const std::vector<std::string>& overrides) {
  Config c;
  c.source_file = file;
  po::options_description desc;
  visit(c, [&](const char* s, const char* k, auto& field, const char* doc) {
    using T = std::remove_reference_t<decltype(field)>;
    desc.add_options()((std::string(s) + "." + k).c_str(), po::value<T>(&field)->default_value(field, to_text(field)), doc);
  });

  std::map<std::string, int> lines;
  po::variables_map vm;
  auto where = [&](const std::string& key) -> std::string {
    auto it = lines.find(key);
    if (it != lines.end()) return file + ":" + std::to_string(it->second);
    return file.empty() ? "command line" : file;
  };

  // 1. command-line overrides (stored first: Program_options keeps the first value stored for a key)
  // Each override is "--section.key VALUE" or "--section.key=VALUE"; the pairs are stored as parsed options
  // directly, so an empty VALUE ("--data.system_prompt ''") is an empty string, as "key =" is in the INI file
  // (Program_options' unix-style parser refuses "--key=").
  po::parsed_options parsed(&desc);
  for (size_t i = 0; i < overrides.size(); ++i) {
    const std::string& a = overrides[i];
    const size_t eq = a.find('=');
    po::option opt;
    opt.string_key = a.rfind("--", 0) == 0 ? a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2) : "";
    CGRPO_CHECK(!opt.string_key.empty() && opt.string_key[0] != '-', "config: stray command-line argument '", a, "'",
                hint("overrides look like --section.key VALUE or --section.key=VALUE"));
    if (eq != std::string::npos) {
      opt.value = {a.substr(eq + 1)};
    } else {
      CGRPO_CHECK(i + 1 < overrides.size(), "config: override '", a, "' has no value",
                  hint("write " + a + " VALUE (booleans take true/false)"));
      opt.value = {overrides[++i]};
    }
    opt.original_tokens = {a};
    parsed.options.push_back(std::move(opt));
  }
  try {
    po::store(parsed, vm);
  } catch (const po::unknown_option& e) {
    std::string key = e.get_option_name();
    key.erase(0, key.find_first_not_of('-'));
    CGRPO_FAIL("config: unknown key '", key, "' on the command line", hint(suggest(key)));
  } catch (const po::error_with_option_name& e) {
    CGRPO_FAIL("config: command line: ", e.what(), hint("overrides look like --section.key value"));
  } catch (const po::error& e) {
    CGRPO_FAIL("config: command line: ", e.what(), hint("overrides look like --section.key value"));
  }
  for (const auto& [key, value] : vm)
    if (!value.defaulted()) c.origin[key] = "command line";

  // 2. the INI file
  if (ini) {
    const std::string text((std::istreambuf_iterator<char>(*ini)), std::istreambuf_iterator<char>());
    std::istringstream for_lines(text), for_values(text);
    lines = key_lines(for_lines);
    try {
      po::store(po::parse_config_file(for_values, desc, /*allow_unregistered=*/false), vm);
    } catch (const po::unknown_option& e) {
      const std::string key = e.get_option_name();
      CGRPO_FAIL("config: unknown key '", key, "' at ", where(key), hint(suggest(key)));
    } catch (const po::multiple_occurrences& e) {
      CGRPO_FAIL("config: key '", e.get_option_name(), "' is set twice in ", file, hint("keep one of the two lines"));
    } catch (const po::error_with_option_name& e) {
      const std::string key = e.get_option_name();
      CGRPO_FAIL("config: ", where(key), ": ", e.what(), hint("check the value's type in `cgrpo config --reference`"));
    } catch (const po::error& e) {
      CGRPO_FAIL("config: ", file, ": ", e.what(), hint("lines look like 'key = value' under a [section] header"));
    }
    for (const auto& [key, line] : lines)
      if (!c.origin.count(key)) c.origin[key] = file + ":" + std::to_string(line);
  }
  try {
    po::notify(vm);
  } catch (const po::error_with_option_name& e) {
    const std::string key = e.get_option_name();
    CGRPO_FAIL("config: ", where(key), ": ", e.what(), hint("check the value's type in `cgrpo config --reference`"));
  }
  c.validate();
  return c;
}

void Config::validate() const {
  auto at = [&](const std::string& key) {
    auto it = origin.find(key);
    return it == origin.end() ? std::string("default") : it->second;
  };
  auto require = [&](bool ok, const std::string& key, const std::string& what, const std::string& fix) {
    if (!ok) CGRPO_FAIL("config: ", key, " (", at(key), ") ", what, hint(fix));
  };
  auto one_of = [&](const std::string& v, std::initializer_list<const char*> allowed, const std::string& key) {
    std::string list;
    for (const char* a : allowed) {
      if (v == a) return;
      list += (list.empty() ? "" : " | ") + std::string(a);
    }
    require(false, key, "= '" + v + "' is not allowed", "use one of " + list);
  };

  if (model.path.empty())
    one_of(model.preset, {"tiny", "small", "1b", "diffucoder-7b"}, "model.preset");
  one_of(parallel.backend, {"cpu", "cuda"}, "parallel.backend");
  require(parallel.stage() >= 0, "parallel.zero_stage", "= '" + parallel.zero_stage + "' is not a ZeRO stage",
          "use 0, 1, 2, 3, no_shard, shard_grad_op or full_shard");
  // mixed precision (ARCHITECTURE.md §3 item 4): bf16 working parameters over fp32 master weights, bf16 activations
  // over bf16 parameters (the matmuls are bf16 x bf16), fp32 or bf16 gradient reduction; f16 is not implemented
  for (const char* k : {"param_dtype", "compute_dtype", "reduce_dtype"}) {
    const std::string& v = k[0] == 'p' ? parallel.param_dtype : k[0] == 'c' ? parallel.compute_dtype : parallel.reduce_dtype;
    require(v == "f32" || v == "bf16", std::string("parallel.") + k,
            "= '" + v + "' is not supported" + (v == "f16" ? " (f16 is not implemented)" : ""), "use f32 or bf16");
  }
  require(parallel.compute_dtype == "f32" || parallel.param_dtype == "bf16", "parallel.compute_dtype",
          "= bf16 needs parallel.param_dtype = bf16, which is " + parallel.param_dtype + " (" +
              at("parallel.param_dtype") + "): bf16 activations feed bf16 x bf16 matmuls",
          "set parallel.param_dtype = bf16 too, or parallel.compute_dtype = f32");
  one_of(parallel.zero3_rollout_gather, {"once", "per_unit"}, "parallel.zero3_rollout_gather");
  require(parallel.threads >= 0, "parallel.threads", "must be >= 0", "use 0 for the BLAS default");

  require(rollout.max_new_tokens >= 1, "rollout.max_new_tokens", "must be >= 1", "e.g. 256");
  require(rollout.steps >= 1, "rollout.steps", "must be >= 1", "e.g. steps = max_new_tokens");
  require(rollout.steps <= rollout.max_new_tokens || rollout.tokens_per_step > 0, "rollout.steps",
          "= " + std::to_string(rollout.steps) + " exceeds max_new_tokens = " + std::to_string(rollout.max_new_tokens),
          "at most one step per token: set steps <= max_new_tokens");
  require(rollout.tokens_per_step >= 0, "rollout.tokens_per_step", "must be >= 0", "0 disables it");
  require(rollout.tokens_per_step == 0 || rollout.max_new_tokens % rollout.tokens_per_step == 0,
          "rollout.tokens_per_step", "must divide max_new_tokens", "pick a divisor of rollout.max_new_tokens");
  require(rollout.temperature >= 0, "rollout.temperature", "must be >= 0", "0 = greedy");
  require(rollout.top_p > 0 && rollout.top_p <= 1, "rollout.top_p", "must be in (0, 1]", "1 disables the filter");
  require(rollout.top_k >= 0, "rollout.top_k", "must be >= 0", "0 disables the filter");
  one_of(rollout.alg, {"origin", "maskgit_plus", "topk_margin", "entropy", "confidence_threshold"}, "rollout.alg");
  require(rollout.alg_temp >= 0, "rollout.alg_temp", "must be >= 0", "0 = deterministic");
  require(rollout.eps > 0 && rollout.eps < 1, "rollout.eps", "must be in (0, 1)", "the reference uses 1e-3");
  require(rollout.confidence_threshold > 0 && rollout.confidence_threshold <= 1, "rollout.confidence_threshold",
          "must be in (0, 1]", "e.g. 0.9");
  require(rollout.batch_size >= 1, "rollout.batch_size", "must be >= 1", "e.g. 10");

  const auto funcs = reward.func_list();
  const auto weights = reward.weight_list();
  require(!funcs.empty(), "reward.funcs", "is empty", "name at least one reward function");
  require(funcs.size() == weights.size(), "reward.weights",
          "has " + std::to_string(weights.size()) + " weights for " + std::to_string(funcs.size()) + " functions",
          "give one weight per function in reward.funcs");
  for (const std::string& f : funcs)
    require(f == "code" || f == "code_format" || f == "toy", "reward.funcs", "names an unknown function '" + f + "'",
            "use code, code_format or toy");
  require(reward.test_timeout_s > 0, "reward.test_timeout_s", "must be > 0", "the reference uses 5");
  require(reward.completion_timeout_s >= reward.test_timeout_s, "reward.completion_timeout_s",
          "must be >= reward.test_timeout_s", "the reference uses 30");
  one_of(reward.timeout_policy, {"zero_all", "fail_test"}, "reward.timeout_policy");
  one_of(reward.completion_text, {"all", "before_end"}, "reward.completion_text");
  require(reward.workers >= 1, "reward.workers", "must be >= 1", "e.g. 2");
  require(reward.memory_mb >= 64, "reward.memory_mb", "must be >= 64", "Python needs ~30 MB to start");

  require(grpo.num_generations >= 2, "grpo.num_generations", "must be >= 2", "leave-one-out advantages need a group");
  require(grpo.num_iterations >= 1, "grpo.num_iterations", "must be >= 1", "the recipe uses 2");
  require(grpo.beta >= 0, "grpo.beta", "must be >= 0", "0 disables the KL term");
  require(grpo.epsilon > 0, "grpo.epsilon", "must be > 0", "the recipe uses 0.5");
  require(grpo.per_device_batch >= 1, "grpo.per_device_batch", "must be >= 1", "e.g. 5");
  require(grpo.grad_accum >= 1, "grpo.grad_accum", "must be >= 1", "e.g. 2");
  require((grpo.per_device_batch * grpo.grad_accum) % grpo.num_generations == 0, "grpo.num_generations",
          "must divide per_device_batch * grad_accum (a GRPO group stays on one rank)",
          "e.g. G = 10 with per_device_batch = 5 and grad_accum = 2");
  require(grpo.max_prompt_length >= 1, "grpo.max_prompt_length", "must be >= 1", "the recipe uses 200");
  require(grpo.t_min > 0 && grpo.t_min <= grpo.t_max && grpo.t_max < 1, "grpo.t_min",
          "needs 0 < t_min <= t_max < 1", "the reference uses 0.2 and 0.8");
  require(grpo.ref_model_sync_steps >= 1, "grpo.ref_model_sync_steps", "must be >= 1", "the recipe uses 64");
  require(grpo.ref_model_mixup_alpha >= 0 && grpo.ref_model_mixup_alpha <= 1, "grpo.ref_model_mixup_alpha",
          "must be in [0, 1]", "the recipe uses 0.6");

  require(sft.steps >= 0, "sft.steps", "must be >= 0", "0 skips SFT");
  require(sft.batch_size >= 1, "sft.batch_size", "must be >= 1", "e.g. 8");
  require(sft.max_length >= 2, "sft.max_length", "must be >= 2", "e.g. 256");
  require(sft.lr > 0, "sft.lr", "must be > 0", "e.g. 1e-4");

  require(optim.lr > 0, "optim.lr", "must be > 0", "the recipe uses 1e-6");
  require(optim.beta1 >= 0 && optim.beta1 < 1, "optim.beta1", "must be in [0, 1)", "e.g. 0.9");
  require(optim.beta2 >= 0 && optim.beta2 < 1, "optim.beta2", "must be in [0, 1)", "the recipe uses 0.99");
  require(optim.eps > 0, "optim.eps", "must be > 0", "e.g. 1e-8");
  require(optim.weight_decay >= 0, "optim.weight_decay", "must be >= 0", "the recipe uses 0.1");
  one_of(optim.lr_scheduler, {"constant", "linear_warmup", "cosine_with_min_lr"}, "optim.lr_scheduler");
  require(optim.warmup_ratio >= 0 && optim.warmup_ratio < 1, "optim.warmup_ratio", "must be in [0, 1)", "e.g. 1e-4");
  require(optim.min_lr_rate >= 0 && optim.min_lr_rate <= 1, "optim.min_lr_rate", "must be in [0, 1]", "e.g. 0.1");

  require(checkpoint.every_steps >= 0, "checkpoint.every_steps", "must be >= 0", "0 = only at the end");
  require(checkpoint.keep_last >= 1, "checkpoint.keep_last", "must be >= 1", "keep at least the newest");
  require(!data.dataset.empty(), "data.dataset", "is empty", "e.g. toy:arith or humaneval");
  require(data.max_samples >= 0, "data.max_samples", "must be >= 0", "0 = all");
  require(!run.dir.empty(), "run.dir", "is empty", "e.g. runs/my_run");
  require(run.seed >= 0, "run.seed", "must be >= 0", "e.g. 42");
  require(run.max_steps >= 0, "run.max_steps", "must be >= 0", "0 = use run.epochs");
  require(run.epochs >= 1, "run.epochs", "must be >= 1", "e.g. 1");
  one_of(run.log_level, {"trace", "debug", "info", "warning", "error"}, "run.log_level");
  require(run.logging_steps >= 1, "run.logging_steps", "must be >= 1", "e.g. 1");
  require(run.eval_prompts >= 0, "run.eval_prompts", "must be >= 0", "0 disables the evaluation");
  require(run.eval_every_steps >= 0, "run.eval_every_steps", "must be >= 0", "0 = evaluate before and after GRPO only");
  require(run.eval_every_steps == 0 || run.eval_prompts > 0, "run.eval_every_steps",
          "needs held-out prompts, but run.eval_prompts = 0", "set run.eval_prompts (e.g. 32) or run.eval_every_steps = 0");
}

std::string Config::to_ini() const {
  std::ostringstream o;
  std::string section;
  visit(*this, [&](const char* s, const char* k, const auto& field, const char*) {
    if (section != s) {
      o << (section.empty() ? "" : "\n") << "[" << s << "]\n";
      section = s;
    }
    o << k << " = " << to_text(field) << "\n";
  });
  return o.str();
}

void Config::write_resolved(const std::string& run_dir) const {
  std::error_code ec;
  std::filesystem::create_directories(run_dir, ec);
  CGRPO_CHECK(!ec, "cannot create run dir '", run_dir, "': ", ec.message(), hint("set run.dir to a writable path"));
  const std::string path = run_dir + "/config.resolved.ini";
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << "# resolved by cgrpo from " << (source_file.empty() ? "defaults" : source_file) << "\n" << to_ini();
    CGRPO_CHECK(out.good(), "cannot write ", tmp);
  }
  std::filesystem::rename(tmp, path, ec);
  CGRPO_CHECK(!ec, "cannot rename ", tmp, " to ", path, ": ", ec.message());
}

std::string Config::reference() {
  std::ostringstream o;
  std::string section;
  Config c;
  visit(c, [&](const char* s, const char* k, const auto& field, const char* doc) {
    if (section != s) {
      o << (section.empty() ? "" : "\n") << "[" << s << "]\n";
      section = s;
    }
    using T = std::remove_cvref_t<decltype(field)>;
    o << "  " << k << " = " << to_text(field) << "    (" << type_name<T>() << ")" << (*doc ? "  " : "") << doc << "\n";
  });
  return o.str();
}

}  // namespace cgrpo
