// cgrpo reward: score completions with the configured reward functions (reward.funcs / reward.weights, spec §4)
// through the same Sandbox and RewardSet as training. A line is one of
//   {"completion": ..., "tests": ["assert ...", ...]}                       code: tests given inline
//   {"completion": ..., "dataset": "humaneval|mbpp|...|FILE", "problem_id": "HumanEval/0" | 0 | "mbpp/11" | 11}
//   {"completion": ..., "task": "toy:arith|toy:reverse|toy:sort|int|prefix", "answer": ...}   toy
// Code lines are scored by the configured functions other than `toy`; toy lines by `toy` alone. Output, one line
// per input line: {"rewards": {"<fn>": score, ...}, "total": sum_k w_k * score_k, "status": "ok|failed|timeout|..."}.
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "cgrpo/cli/commands.h"
#include "cgrpo/cli/gen_common.h"
#include "cgrpo/cli/options.h"
#include "cgrpo/core/error.h"
#include "cgrpo/data/jsonl.h"
#include "cgrpo/reward/reward_set.h"
#include "cgrpo/reward/toy_reward.h"

#include "cgrpo/data/toy_task.h"

namespace cgrpo::cli {

namespace {

// The scorer of a toy record: the synthetic tasks score exactly as in training (data/toy_task.h, through
// the `toy` reward); the generic checkers int / prefix are also accepted.
std::string toy_checker(const JsonlRecord& r, const std::string& task) {
  if (task == "int" || task == "prefix") return task;
  for (const std::string& t : toy_task_names())
    if (task == t) return task;
  r.fail("unknown toy task '" + task + "'", "use toy:arith, toy:reverse, toy:sort (or a checker: int, prefix)");
}

// Prompts of the datasets named by records, loaded once, indexed by id and by the id's last '/' component.
class ProblemIndex {
 public:
  explicit ProblemIndex(const Config& cfg) : cfg_(cfg) {}
  const Prompt& find(const JsonlRecord& r) {
    const std::string name = r.str("dataset"), id = r.str_or_int("problem_id");
    auto it = sets_.find(name);
    if (it == sets_.end()) {
      Entry e{std::make_unique<Dataset>(load_dataset(cfg_, name, 0)), {}};
      for (int64_t i = 0; i < e.ds->size(); ++i) {
        const std::string& pid = (*e.ds)[i].id;
        e.by_id.emplace(pid, i);
        e.by_id.emplace(pid.substr(pid.rfind('/') + 1), i);  // "HumanEval/3" also as "3"
      }
      it = sets_.emplace(name, std::move(e)).first;
    }
    const auto p = it->second.by_id.find(id);
    if (p == it->second.by_id.end())
      r.fail("no problem '" + id + "' in dataset " + name,
             "problem_id is a record id (\"HumanEval/0\", \"mbpp/11\") or its number");
    return (*it->second.ds)[p->second];
  }

 private:
  struct Entry {
    std::unique_ptr<Dataset> ds;
    std::map<std::string, int64_t> by_id;
  };
  const Config& cfg_;
  std::map<std::string, Entry> sets_;
};

}  // namespace

int cmd_reward(int argc, char** argv) {
  std::string input, output;
  po::options_description desc("cgrpo reward options");
  desc.add_options()("input", po::value(&input), "JSONL of completions (see above)")
                    ("output", po::value(&output), "JSONL of {\"rewards\", \"total\", \"status\"}, one per input line")
                    ("config,c", po::value<std::string>(), "run config (INI): [reward] funcs, weights, limits");
  po::variables_map vm;
  std::vector<std::string> overrides;
  if (!parse_args(argc, argv,
                  "cgrpo reward [--config FILE] --input completions.jsonl --output rewards.jsonl [--reward.key VALUE]\n"
                  "  each input line: {\"completion\", \"tests\": [...]} | {\"completion\", \"dataset\", "
                  "\"problem_id\"} | {\"completion\", \"task\": \"toy:arith\", \"answer\"}",
                  desc, vm, &overrides))
    return 0;
  CGRPO_CHECK(!input.empty() && !output.empty(), "cgrpo reward: --input and --output are required",
              hint("see `cgrpo reward --help`"));
  const Config cfg = load_config(vm, overrides);
  const std::vector<std::string> names = cfg.reward.func_list();
  const std::vector<double> weights = cfg.reward.weight_list();
  CGRPO_CHECK(names.size() == weights.size(), "reward.funcs has ", names.size(), " functions but reward.weights has ",
              weights.size(), " weights", hint("give one weight per function"));
  std::vector<std::string> code_names;
  std::vector<float> code_weights, toy_weight;
  for (size_t k = 0; k < names.size(); ++k) {
    if (names[k] == "toy") toy_weight.push_back(float(weights[k]));
    else code_names.push_back(names[k]), code_weights.push_back(float(weights[k]));
  }

  const std::vector<JsonlRecord> records = read_jsonl(input);
  ProblemIndex problems(cfg);
  std::vector<RewardSample> code, toy;
  std::vector<std::pair<bool, size_t>> where;  // per line: (is toy, index in its batch)
  for (const JsonlRecord& r : records) {
    RewardSample s;
    s.completion = r.str("completion");
    if (r.has("tests")) {
      s.tests = r.str_list("tests");
      if (s.tests.empty()) r.fail("\"tests\" is empty", "give at least one test program");
    } else if (r.has("dataset")) {
      const Prompt& p = problems.find(r);
      if (p.is_toy()) s.task = toy_checker(r, p.kind), s.answer = p.meta_at("answer");
      else s.tests = p.tests;
    } else if (r.has("task")) {
      s.task = toy_checker(r, r.str("task"));
      s.answer = r.str_or_int("answer");
    } else {
      r.fail("no \"tests\", \"dataset\" or \"task\" field",
             "each line is {\"completion\", \"tests\"}, {\"completion\", \"dataset\", \"problem_id\"} or "
             "{\"completion\", \"task\", \"answer\"}");
    }
    const bool is_toy = !s.task.empty();
    if (is_toy && toy_weight.empty()) r.fail("a toy record, but reward.funcs has no toy", "add toy to reward.funcs");
    if (!is_toy && code_names.empty()) r.fail("a code record, but reward.funcs has only toy", "add code, code_format");
    where.emplace_back(is_toy, is_toy ? toy.size() : code.size());
    (is_toy ? toy : code).push_back(std::move(s));
  }

  RewardSetOutput code_out, toy_out;
  std::vector<std::string> code_fns, toy_fns;
  if (!code.empty()) {
    Sandbox sandbox(sandbox_config(cfg.reward));
    RewardSet set = RewardSet::make(code_names, code_weights, sandbox, code_exec_options(cfg.reward));
    code_out = set.score(code);
    code_fns = set.names();
  }
  if (!toy.empty()) {
    RewardSet set;  // the toy reward runs nothing in the sandbox
    set.add(std::make_unique<ToyReward>(), toy_weight[0]);
    toy_out = set.score(toy);
    toy_fns = set.names();
  }

  std::ofstream out(output);
  CGRPO_CHECK(out.good(), "cannot write ", output);
  StatusCounts statuses;
  for (const auto& [is_toy, i] : where) {
    const RewardSetOutput& o = is_toy ? toy_out : code_out;
    const std::vector<std::string>& fns = is_toy ? toy_fns : code_fns;
    nlohmann::json rewards = nlohmann::json::object();
    for (size_t k = 0; k < fns.size(); ++k) rewards[fns[k]] = o.per_fn[k][i];
    out << nlohmann::json{{"rewards", rewards}, {"total", o.total[i]}, {"status", run_status_name(o.status[i])}}.dump()
        << "\n";
    statuses.add(o.status[i]);
  }
  out.close();
  CGRPO_CHECK(!out.fail(), "write to ", output, " failed");
  std::printf("scored %zu completions (%zu code, %zu toy; %s) -> %s\n", records.size(), code.size(), toy.size(),
              statuses.str().c_str(), output.c_str());
  return 0;
}

}  // namespace cgrpo::cli
