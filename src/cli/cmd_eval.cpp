// cgrpo eval: N samples per problem of a dataset, each checked by running the problem's tests in the reward
// sandbox (code) or by the task's checker (toy: exact answer), then pass@1 and the unbiased pass@k (k <= N).
// Problem i runs on rank i % W with sample ids i * N + j, so results do not depend on the rank count.
// The program of a code sample is the data module's contract, run through CodeExecReward (test_program with
// the sentinel): code + "\n" + test, where code is the completion's ```python block when it has one, else the
// completion itself (HumanEval: prompt_code + completion, the raw-completion mode). A sample passes when all
// of its tests pass. --canonical checks the datasets' reference solutions instead of a model.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cgrpo/cli/commands.h"
#include "cgrpo/cli/gen_common.h"
#include "cgrpo/cli/options.h"
#include "cgrpo/comm/mpi_communicator.h"
#include "cgrpo/core/error.h"
#include "cgrpo/core/timer.h"
#include "cgrpo/data/toy_task.h"
#include "cgrpo/reward/code_format.h"

namespace cgrpo::cli {

namespace {

std::string code_of(const Prompt& p, const std::string& completion) {
  if (completion.find("```python\n") != std::string::npos) return extract_code(completion);
  if (p.kind == "humaneval") return p.meta_at("prompt_code") + completion;
  return completion;
}

}  // namespace

int cmd_eval(int argc, char** argv) {
  std::string model, dataset, output;
  int64_t samples = 1, limit = 0;
  po::options_description desc("cgrpo eval options");
  desc.add_options()("model", po::value(&model), "model directory (config.json + safetensors); default model.path")
                    ("dataset", po::value(&dataset), "humaneval | mbpp | mbpp_sanitized | toy:<task> | FILE.jsonl")
                    ("samples,n", po::value(&samples)->default_value(1), "samples per problem (N)")
                    ("limit", po::value(&limit)->default_value(0), "first M problems only (0 = all; toy: required)")
                    ("output", po::value(&output), "per-problem results JSONL")
                    ("canonical", "check the dataset's canonical solutions (no model; one sample each)")
                    ("config,c", po::value<std::string>(), "run config (INI)");
  po::variables_map vm;
  std::vector<std::string> overrides;
  if (!parse_args(argc, argv,
                  "cgrpo eval --model DIR --dataset humaneval|mbpp|FILE --samples N [--limit M] [--output "
                  "results.jsonl] [--config FILE] [--rollout.key VALUE ...]\n       cgrpo eval --canonical "
                  "--dataset humaneval|mbpp|mbpp_sanitized|FILE",
                  desc, vm, &overrides))
    return 0;
  const bool canonical = vm.count("canonical") > 0;
  CGRPO_CHECK(!dataset.empty(), "cgrpo eval: --dataset is required", hint("see `cgrpo eval --help`"));
  CGRPO_CHECK(samples >= 1, "cgrpo eval: --samples must be >= 1 (got ", samples, ")");
  CGRPO_CHECK(limit >= 0, "cgrpo eval: --limit must be >= 0 (got ", limit, ")");
  CGRPO_CHECK(!canonical || samples == 1, "cgrpo eval: --canonical checks one solution per problem; drop --samples");
  CGRPO_CHECK(!canonical || model.empty(), "cgrpo eval: --canonical uses no model; drop --model");
  CGRPO_CHECK(dataset.rfind("toy:", 0) != 0 || limit > 0, "cgrpo eval: a toy dataset needs --limit M");
  const Config cfg = load_config(vm, overrides);

  MpiSession mpi(&argc, &argv);
  const int rank = mpi.rank(), world = mpi.world_size();
  Timer timer;
  const Dataset ds = load_dataset(cfg, dataset, limit);
  const int64_t n_problems = ds.size(), N = samples;
  const std::vector<int64_t> mine = rank_items(n_problems, rank, world);

  // completions[k * N + j]: sample j of this rank's k-th problem
  std::vector<std::string> completions;
  std::unique_ptr<Generator> gen;
  if (canonical) {
    for (const int64_t i : mine) {
      CGRPO_CHECK(!ds[i].canonical_solution.empty(), "cgrpo eval --canonical: problem ", ds[i].id, " of ", dataset,
                  " has no canonical solution");
      completions.push_back(ds[i].canonical_solution);
    }
  } else {
    gen = std::make_unique<Generator>(model_dir_of(model, cfg), cfg, mpi.local_rank());
    std::vector<std::vector<int32_t>> prompts;
    std::vector<uint32_t> ids;
    for (const int64_t i : mine) {
      const std::vector<int32_t> p = gen->prompt_ids(ds[i].text, true, ds[i].id);
      for (int64_t j = 0; j < N; ++j) prompts.push_back(p), ids.push_back(uint32_t(i * N + j));
    }
    for (const auto& c : gen->generate(prompts, ids)) completions.push_back(gen->codec().decode(gen->until_end(c)));
  }

  // pass / status per sample: code through the training reward (the program = code + "\n" + test, sentinel)
  std::vector<char> passed(completions.size(), 0);
  std::vector<RunStatus> status(completions.size(), RunStatus::Ok);
  std::vector<RewardSample> code_batch;
  std::vector<size_t> code_at;
  for (size_t k = 0; k < mine.size(); ++k) {
    const Prompt& p = ds[mine[k]];
    for (int64_t j = 0; j < N; ++j) {
      const size_t s = k * size_t(N) + size_t(j);
      if (p.is_toy()) {
        passed[s] = make_toy_task(p.kind)->score(p, completions[s]) == 1.0f;
        continue;
      }
      CGRPO_CHECK(!p.tests.empty(), "cgrpo eval: problem ", p.id, " has no tests");
      const std::string code = canonical ? completions[s] : code_of(p, completions[s]);
      code_batch.push_back({"```python\n" + code + "\n```\n", p.tests, "", ""});
      code_at.push_back(s);
    }
  }
  if (!code_batch.empty()) {
    Sandbox sandbox(sandbox_config(cfg.reward));
    CodeExecReward reward(sandbox, code_exec_options(cfg.reward));
    const RewardOutput r = reward.score(code_batch);
    for (size_t b = 0; b < code_at.size(); ++b) {
      passed[code_at[b]] = r.scores[b] == 1.0f;
      status[code_at[b]] = r.status[b];
    }
  }

  std::vector<std::string> lines;
  for (size_t k = 0; k < mine.size(); ++k) {
    const Prompt& p = ds[mine[k]];
    nlohmann::json sj = nlohmann::json::array();
    int64_t correct = 0;
    for (int64_t j = 0; j < N; ++j) {
      const size_t s = k * size_t(N) + size_t(j);
      correct += passed[s];
      nlohmann::json one = {{"passed", bool(passed[s])}, {"status", run_status_name(status[s])}};
      if (!canonical) one["completion"] = completions[s];
      sj.push_back(std::move(one));
    }
    lines.push_back(nlohmann::json{{"id", p.id}, {"n", N}, {"correct", correct}, {"pass@1", double(correct) / N},
                                   {"samples", sj}}
                        .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  const std::vector<std::string> all = gather_lines(lines, n_problems, rank, world);
  if (rank != 0) return 0;

  std::vector<int64_t> ks;
  for (const int64_t k : {int64_t(1), int64_t(2), int64_t(5), int64_t(10), int64_t(20), int64_t(50), int64_t(100), N})
    if (k <= N && std::find(ks.begin(), ks.end(), k) == ks.end()) ks.push_back(k);
  std::vector<double> pass(ks.size(), 0.0);
  int64_t total_correct = 0;
  StatusCounts counts;
  for (const std::string& l : all) {
    const nlohmann::json j = nlohmann::json::parse(l);
    const int64_t c = j["correct"].get<int64_t>();
    total_correct += c;
    for (size_t q = 0; q < ks.size(); ++q) pass[q] += pass_at_k(N, c, ks[q]) / double(n_problems);
    for (const auto& s : j["samples"])
      for (int st = 0; st < kNumRunStatus; ++st)
        if (s["status"] == run_status_name(RunStatus(st))) counts.add(RunStatus(st));
  }
  if (!output.empty()) {
    std::ofstream out(output);
    CGRPO_CHECK(out.good(), "cannot write ", output);
    for (const std::string& l : all) out << l << "\n";
    out.close();
    CGRPO_CHECK(!out.fail(), "write to ", output, " failed");
  }
  std::printf("eval %s: %lld problems x %lld samples on %d rank%s, %.1f s; passed %lld/%lld samples (%s)\n",
              dataset.c_str(), (long long)n_problems, (long long)N, world, world == 1 ? "" : "s",
              timer.elapsed_ms() / 1000.0, (long long)total_correct, (long long)(n_problems * N),
              counts.str().c_str());
  for (size_t q = 0; q < ks.size(); ++q) std::printf("pass@%lld = %.4f\n", (long long)ks[q], pass[q]);
  if (!output.empty()) std::printf("results -> %s\n", output.c_str());
  return 0;
}

}  // namespace cgrpo::cli
