// data module: loaders on the real shared files, toy tasks, Dataset from [data], GroupSampler invariance,
// and every bad-input error (ARCHITECTURE.md §3.7).
#include <zlib.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <set>

#include "cgrpo/comm/local_communicator.h"
#include "cgrpo/config/config.h"
#include "cgrpo/core/error.h"
#include "cgrpo/data/dataset.h"
#include "cgrpo/data/group_sampler.h"
#include "cgrpo/data/jsonl.h"
#include "cgrpo/data/loaders.h"
#include "cgrpo/data/toy_task.h"

using namespace cgrpo;
using Catch::Contains;
using Catch::StartsWith;
using Catch::EndsWith;

namespace {
const std::string kDatasets = CGRPO_SHARED_DIR "/data/datasets/";
const std::string kSamples = CGRPO_SOURCE_DIR "/data/samples/";

std::string write_file(const std::string& name, const std::string& text) {
  const auto dir = std::filesystem::temp_directory_path() / "cgrpo_test_data";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / name).string();
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

std::map<std::string, int> count_splits(const std::vector<Prompt>& ps) {
  std::map<std::string, int> n;
  for (const Prompt& p : ps) ++n[p.meta_at("split")];
  return n;
}
}  // namespace

TEST_CASE("data: HumanEval loads 164 problems with the official test program", "[unit][data]") {
  const auto ps = load_humaneval(kDatasets + "HumanEval.jsonl.gz");
  REQUIRE(ps.size() == 164);
  const Prompt& p = ps[0];
  CHECK(p.id == "HumanEval/0");
  CHECK(p.kind == "humaneval");
  CHECK(p.entry_point == "has_close_elements");
  const std::string code = p.meta_at("prompt_code");
  CHECK_THAT(code, StartsWith("from typing import List\n\n\ndef has_close_elements(numbers: List[float], threshold"));
  CHECK(p.text == "Please complete the following problem:\n```\n" + code.substr(0, code.size() - 1) + "\n```");
  REQUIRE(p.tests.size() == 1);
  CHECK_THAT(p.tests[0], StartsWith("\n\nMETADATA = {\n    'author': 'jt',"));
  CHECK_THAT(p.tests[0], EndsWith("assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 0.5) == False\n\n\ncheck(has_close_elements)\n"));
  CHECK(p.canonical_solution == code + "    for idx, elem in enumerate(numbers):\n"
                                       "        for idx2, elem2 in enumerate(numbers):\n"
                                       "            if idx != idx2:\n"
                                       "                distance = abs(elem - elem2)\n"
                                       "                if distance < threshold:\n"
                                       "                    return True\n\n    return False\n");
  CHECK(ps[163].id == "HumanEval/163");
  for (const Prompt& q : ps) {
    CHECK_THAT(q.tests.at(0), EndsWith("\ncheck(" + q.entry_point + ")\n"));
    CHECK_THAT(q.canonical_solution, StartsWith(q.meta_at("prompt_code")));
    CHECK(q.text.find("\n```\n") != std::string::npos);  // no "Test cases:" appended (spec §3.11)
  }
}

TEST_CASE("data: MBPP full loads 974 problems, first assert shown, setup code prefixed", "[unit][data]") {
  const auto ps = load_mbpp(kDatasets + "mbpp.jsonl.gz");
  REQUIRE(ps.size() == 974);
  const Prompt& p = ps[0];
  CHECK(p.id == "mbpp/1");
  CHECK(p.kind == "mbpp");
  CHECK(p.text == "Write a function to find the minimum cost path to reach (m, n) from (0, 0) for the given cost "
                  "matrix cost[][] and a position (m, n) in cost[][].\n"
                  "Test cases: assert min_cost([[1, 2, 3], [4, 8, 2], [1, 5, 3]], 2, 2) == 8");
  CHECK(p.tests == std::vector<std::string>{"assert min_cost([[1, 2, 3], [4, 8, 2], [1, 5, 3]], 2, 2) == 8",
                                            "assert min_cost([[2, 3, 4], [5, 9, 3], [2, 6, 4]], 2, 2) == 12",
                                            "assert min_cost([[3, 4, 5], [6, 10, 4], [3, 7, 5]], 2, 2) == 16"});
  CHECK(p.entry_point == "min_cost");
  CHECK_THAT(p.canonical_solution, StartsWith("R = 3\r\nC = 3\r\ndef min_cost(cost, m, n): \r\n"));
  CHECK(p.meta_at("split") == "prompt");
  const Prompt& t367 = ps[366];  // one of the two tasks with test_setup_code
  CHECK(t367.id == "mbpp/367");
  CHECK_THAT(t367.tests[0], StartsWith("root = Node(1) \r\n"));
  CHECK_THAT(t367.tests[0], EndsWith("Node(7)\nassert is_tree_balanced(root) == False"));
  CHECK(ps[125].entry_point == "sum");  // task 126 defines its own sum(); not mistaken for the builtin
  for (const Prompt& q : ps) {
    CHECK(q.tests.size() == 3);
    CHECK(q.canonical_solution.find("def " + q.entry_point) != std::string::npos);
  }
  CHECK(count_splits(ps) == std::map<std::string, int>{{"prompt", 10}, {"test", 500}, {"validation", 90}, {"train", 374}});
}

TEST_CASE("data: sanitized MBPP loads 427 problems with test imports prefixed", "[unit][data]") {
  const auto ps = load_mbpp(kDatasets + "mbpp_sanitized.jsonl.gz");
  REQUIRE(ps.size() == 427);
  const Prompt& p = ps[0];
  CHECK(p.id == "mbpp/2");
  CHECK(p.text == "Write a function to find the shared elements from the given two lists.\n"
                  "Test cases: assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))");
  CHECK(p.entry_point == "similar_elements");
  CHECK(p.tests.size() == 3);
  CHECK(p.canonical_solution == "def similar_elements(test_tup1, test_tup2):\n  res = tuple(set(test_tup1) & "
                                "set(test_tup2))\n  return (res) ");
  const auto it = std::find_if(ps.begin(), ps.end(), [](const Prompt& q) { return q.id == "mbpp/82"; });
  REQUIRE(it != ps.end());
  CHECK_THAT(it->tests[0], StartsWith("import math\nassert math.isclose(volume_sphere(10), 4188.790204786391"));
  CHECK(it->entry_point == "volume_sphere");
  for (const Prompt& q : ps) CHECK(q.canonical_solution.find("def " + q.entry_point) != std::string::npos);
  CHECK(count_splits(ps) == std::map<std::string, int>{{"prompt", 7}, {"test", 257}, {"validation", 43}, {"train", 120}});
}

TEST_CASE("data: AceCode-style records follow make_conversation, and format detection", "[unit][data]") {
  const auto ps = load_acecode(kSamples + "acecode_sample.jsonl");
  REQUIRE(ps.size() == 3);
  CHECK(ps[0].id == "cgrpo_sample_0");
  CHECK(ps[0].kind == "acecode");
  CHECK(ps[0].text == "Write a function `sum_list(xs)` that returns the sum of a list of integers.\n"
                      "Test cases: assert sum_list([1, 2, 3]) == 6");
  CHECK(ps[0].tests.size() == 3);
  CHECK(ps[0].entry_point == "sum_list");
  CHECK_THAT(ps[1].text, StartsWith("Please complete the following problem:\n```\ndef is_palindrome"));
  CHECK_THAT(ps[1].text, EndsWith("\n```"));  // fenced: no test case appended
  CHECK(ps[2].entry_point == "count_vowels");

  const std::string f = write_file("col.jsonl", R"({"id": 7, "task": "Add.", "test_cases": ["assert add(1, 2) == 3"]})" "\n");
  const auto q = load_acecode(f, "task");
  CHECK(q.at(0).id == "7");
  CHECK(q.at(0).text == "Add.\nTest cases: assert add(1, 2) == 3");
  CHECK(load_jsonl_any(f, "task").at(0).kind == "acecode");
  CHECK(load_jsonl_any(kDatasets + "HumanEval.jsonl.gz").size() == 164);
  CHECK(load_jsonl_any(kDatasets + "mbpp_sanitized.jsonl.gz").at(0).kind == "mbpp");
  CHECK(load_jsonl_any(kSamples + "toy_arith_sample.jsonl").at(0).kind == "toy:arith");
}

TEST_CASE("data: the toy sample file is generate(42, i) in native form and round-trips", "[unit][data]") {
  const auto ps = load_native(kSamples + "toy_arith_sample.jsonl");
  const auto task = make_toy_task("toy:arith");
  REQUIRE(ps.size() == 5);
  for (size_t i = 0; i < ps.size(); ++i) {
    const Prompt g = task->generate(42, static_cast<int64_t>(i));
    CHECK(ps[i].id == g.id);
    CHECK(ps[i].text == g.text);
    CHECK(ps[i].meta == g.meta);
    CHECK(prompt_to_json_line(ps[i]) == prompt_to_json_line(g));
    CHECK(task->score(ps[i], ps[i].meta_at("answer")) == 1.0f);
  }
}

TEST_CASE("data: toy tasks are deterministic, small, and answer what they ask", "[unit][data]") {
  for (const std::string& name : toy_task_names()) {
    const auto task = make_toy_task(name);
    CHECK(task->name() == name);
    int same_other_seed = 0, minus = 0;
    std::set<size_t> lengths;
    std::set<std::string> texts;
    for (int64_t i = 0; i < 500; ++i) {
      const Prompt a = task->generate(7, i), b = task->generate(7, i);
      CHECK(a.text == b.text);
      CHECK(a.meta == b.meta);
      same_other_seed += task->generate(8, i).text == a.text;
      const std::string& ans = a.meta_at("answer");
      REQUIRE(!ans.empty());
      CHECK(ans.size() <= 4);
      lengths.insert(ans.size());
      texts.insert(a.text);
      CHECK(task->score(a, ans) == 1.0f);
      CHECK(task->score(a, " " + ans + "\n") == 1.0f);
      // recompute the answer from the question text
      const std::string& t = a.text;
      std::string want;
      if (name == "toy:arith") {
        int x = 0, y = 0;
        char op = 0;
        REQUIRE(std::sscanf(t.c_str(), "Compute %d%c%d.", &x, &op, &y) == 3);
        CHECK((x >= 0 && x <= 99 && y >= 0 && y <= 99));
        want = std::to_string(op == '+' ? x + y : x - y);
        CHECK((op == '+' || x >= y));
        minus += op == '-';
      } else if (name == "toy:reverse") {
        const std::string s = t.substr(19, t.find('.') - 19);
        CHECK(s.find_first_not_of("abcdefghijklmnopqrstuvwxyz") == std::string::npos);
        want.assign(s.rbegin(), s.rend());
      } else {
        for (char c : t.substr(0, t.find(" in "))) if (c >= '0' && c <= '9') want += c;
        std::sort(want.begin(), want.end());
      }
      CHECK(ans == want);
    }
    CHECK(same_other_seed < 50);   // the seed matters
    CHECK(texts.size() > 300);     // and so does the index
    CHECK(lengths.size() >= 2);    // both lengths / answer widths occur
    if (name == "toy:arith") CHECK((minus > 200 && minus < 300));  // + and - with p = 1/2
  }
  CHECK(make_toy_task("arith")->generate(42, 0).id == "toy:arith/0");
}

TEST_CASE("data: toy scorers give exact 1 and positional partial credit", "[unit][data]") {
  Prompt p;
  p.kind = "toy:arith";
  p.id = "x";
  p.meta["answer"] = "95";
  const auto arith = make_toy_task("toy:arith");
  CHECK(arith->score(p, "95") == 1.0f);
  CHECK(arith->score(p, "095") == 1.0f);
  CHECK(arith->score(p, "96") == 0.5f);
  CHECK(arith->score(p, "5") == 0.5f);
  CHECK(arith->score(p, "195") == Approx(2.0 / 3.0));
  CHECK(arith->score(p, "") == 0.0f);
  CHECK(arith->score(p, "ab") == 0.0f);
  p.meta["answer"] = "0";
  CHECK(arith->score(p, "00") == 1.0f);
  CHECK(arith->score(p, "10") == 0.5f);

  const auto rev = make_toy_task("toy:reverse");
  p.kind = "toy:reverse";
  p.meta["answer"] = "dcba";
  CHECK(rev->score(p, "dcba") == 1.0f);
  CHECK(rev->score(p, "dcbx") == 0.75f);
  CHECK(rev->score(p, "dcb") == 0.75f);
  CHECK(rev->score(p, "dcbaa") == 0.8f);
  CHECK(rev->score(p, "abcd") == 0.0f);

  const auto srt = make_toy_task("toy:sort");
  p.kind = "toy:sort";
  p.meta["answer"] = "1349";
  CHECK(srt->score(p, "1349") == 1.0f);
  CHECK(srt->score(p, "1 3 4 9") == Approx(1.0 / 7.0));  // spaces are wrong characters
  CHECK(srt->score(p, "134") == 0.75f);

  REQUIRE_THROWS_WITH(rev->score(p, "x"), Contains("of kind toy:sort scored by toy:reverse"));
  p.meta.clear();
  REQUIRE_THROWS_WITH(srt->score(p, "x"), Contains("has no meta field 'answer'"));
}

TEST_CASE("data: Dataset from the data section", "[unit][data]") {
  DataSection d;
  d.dataset = "toy:sort";
  d.max_samples = 7;
  const Dataset toy = Dataset::from_config(d, 5);
  CHECK(toy.name() == "toy:sort");
  REQUIRE(toy.size() == 7);
  CHECK(toy[6].text == make_toy_task("sort")->generate(5, 6).text);
  d.max_samples = 0;
  CHECK(Dataset::from_config(d, 5).size() == Dataset::kToyDefaultSize);

  d.dataset = "humaneval";
  CHECK(Dataset::from_config(d, 0).size() == 164);
  d.dataset = "mbpp";
  d.max_samples = 5;
  const Dataset m = Dataset::from_config(d, 0);
  CHECK(m.size() == 5);
  CHECK(m[4].id == "mbpp/5");
  d.dataset = "mbpp_sanitized";
  d.max_samples = 0;
  CHECK(Dataset::from_config(d, 0).size() == 427);
  d.dataset = "acecode";
  d.path = kSamples + "acecode_sample.jsonl";
  CHECK(Dataset::from_config(d, 0).size() == 3);
  d.dataset = kSamples + "toy_arith_sample.jsonl";
  d.path.clear();
  CHECK(Dataset::from_config(d, 0)[0].kind == "toy:arith");
  CHECK_THAT(default_dataset_path("humaneval"), EndsWith("HumanEval.jsonl.gz"));
  REQUIRE_THROWS_WITH(toy[7], Contains("prompt index 7 out of range for dataset toy:sort of 7"));
}

TEST_CASE("data: bad input is a clear error naming file:line and the field", "[unit][data]") {
  const std::string good = R"({"id": "a", "question": "Q", "test_cases": ["assert f() == 1"]})";
  const std::string bad_json = write_file("bad.jsonl", good + "\n\n{\"id\": \"b\", \"question\": \n");
  REQUIRE_THROWS_WITH(load_acecode(bad_json), Contains("bad.jsonl:3: malformed JSON"));
  const std::string not_obj = write_file("arr.jsonl", "[1, 2]\n");
  REQUIRE_THROWS_WITH(load_acecode(not_obj), Contains("arr.jsonl:1: record must be a JSON object, got array"));
  const std::string missing = write_file("missing.jsonl", good + "\n" + R"({"id": "b", "question": "Q"})" "\n");
  REQUIRE_THROWS_WITH(load_acecode(missing), Contains("missing.jsonl:2: missing field 'test_cases'"));
  const std::string no_col = write_file("nocol.jsonl", good + "\n");
  REQUIRE_THROWS_WITH(load_acecode(no_col, "prompt"), Contains("nocol.jsonl:1: missing field 'prompt'"));
  const std::string type = write_file("type.jsonl", R"({"id": "a", "question": 3, "test_cases": []})" "\n");
  REQUIRE_THROWS_WITH(load_acecode(type), Contains("type.jsonl:1: field 'test_cases' is empty"));
  const std::string type2 = write_file("type2.jsonl", R"({"id": "a", "question": 3, "test_cases": ["x"]})" "\n");
  REQUIRE_THROWS_WITH(load_acecode(type2), Contains("type2.jsonl:1: field 'question' must be a string, got number"));
  const std::string elem = write_file("elem.jsonl", R"({"id": "a", "question": "Q", "test_cases": ["x", 5]})" "\n");
  REQUIRE_THROWS_WITH(load_acecode(elem), Contains("elem.jsonl:1: field 'test_cases[1]' must be a string, got number"));
  const std::string id = write_file("id.jsonl", R"({"id": [1], "question": "Q", "test_cases": ["x"]})" "\n");
  REQUIRE_THROWS_WITH(load_acecode(id), Contains("id.jsonl:1: field 'id' must be a string or an integer, got array"));
  const std::string he = write_file("he.jsonl", R"({"task_id": "H/0", "prompt": "def f():\n", "entry_point": "f"})" "\n");
  REQUIRE_THROWS_WITH(load_humaneval(he), Contains("he.jsonl:1: missing field 'test'"));
  const std::string mb = write_file("mb.jsonl", R"({"task_id": "1", "text": "t", "code": "c", "test_list": []})" "\n");
  REQUIRE_THROWS_WITH(load_mbpp(mb), Contains("mb.jsonl:1: field 'task_id' must be an integer, got string"));
  const std::string toy = write_file("toy.jsonl", R"({"id": "t", "kind": "toy:arith", "prompt": "p", "tests": []})" "\n");
  REQUIRE_THROWS_WITH(load_native(toy), Contains("toy.jsonl:1: missing field 'meta.answer'"));

  const std::string empty = write_file("empty.jsonl", "\n  \n");
  REQUIRE_THROWS_WITH(load_acecode(empty), Contains("empty.jsonl has no records"));
  REQUIRE_THROWS_WITH(load_acecode("/nonexistent/x.jsonl"), Contains("cannot open dataset file /nonexistent/x.jsonl"));
  // a gzip file cut in half
  std::string gz = read_maybe_gzip(kDatasets + "HumanEval.jsonl.gz");
  CHECK(gz.size() == 214438);
  std::ifstream in(kDatasets + "HumanEval.jsonl.gz", std::ios::binary);
  const std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string cut = write_file("cut.jsonl.gz", raw.substr(0, raw.size() / 2));
  REQUIRE_THROWS_WITH(read_maybe_gzip(cut), Contains("cut.jsonl.gz"));

  DataSection d;
  d.dataset = "humanevil";
  REQUIRE_THROWS_WITH(Dataset::from_config(d, 0), Contains("unknown data.dataset 'humanevil'"));
  d.dataset = "toy:add";
  REQUIRE_THROWS_WITH(Dataset::from_config(d, 0), Contains("unknown toy task 'toy:add'"));
  d.dataset = "acecode";
  REQUIRE_THROWS_WITH(Dataset::from_config(d, 0), Contains("set data.path to the AceCode JSONL"));
  d.dataset = "mbpp";
  d.path = "/nonexistent/mbpp.jsonl.gz";
  REQUIRE_THROWS_WITH(Dataset::from_config(d, 0), Contains("cannot open dataset file /nonexistent/mbpp.jsonl.gz"));
  REQUIRE_THROWS_WITH(Dataset("nothing", {}), Contains("dataset nothing is empty"));
}

// ------------------------------------------------------------------------------------------ sampler

namespace {
// The spec §3.2 sequence written out directly: per epoch, the shuffled order cut to whole batches.
std::vector<int64_t> reference_prompts(const GroupSampler& s, int64_t N, int64_t P, int64_t batches) {
  std::vector<int64_t> out;
  for (int64_t e = 0; static_cast<int64_t>(out.size()) < batches * P; ++e) {
    const auto order = s.epoch_order(e);
    out.insert(out.end(), order.begin(), order.begin() + (N / P) * P);
  }
  out.resize(static_cast<size_t>(batches * P));
  return out;
}
}  // namespace

TEST_CASE("data: epoch orders are Philox permutations, new per epoch, identity without shuffle", "[unit][data]") {
  const GroupSampler s(50, 10, 4, 1, 0, 42);
  const auto o0 = s.epoch_order(0), o1 = s.epoch_order(1);
  std::vector<int64_t> id(50);
  for (int64_t i = 0; i < 50; ++i) id[static_cast<size_t>(i)] = i;
  CHECK(std::is_permutation(o0.begin(), o0.end(), id.begin()));
  CHECK(std::is_permutation(o1.begin(), o1.end(), id.begin()));
  CHECK(o0 != o1);
  CHECK(o0 != id);
  CHECK(o0 == GroupSampler(50, 10, 4, 2, 1, 42).epoch_order(0));  // independent of W and rank
  CHECK(o0 != GroupSampler(50, 10, 4, 1, 0, 43).epoch_order(0));
  CHECK(GroupSampler(50, 10, 4, 1, 0, 42, false).epoch_order(3) == id);
}

TEST_CASE("data: group sampler gives the same global sequence at W = 1, 2, 3, 4", "[unit][data]") {
  const int64_t N = 53, P = 12, G = 3, B = 11;  // 4 batches per epoch, tail of 5 dropped; crosses 2 epochs
  const auto ref = reference_prompts(GroupSampler(N, P, G, 1, 0, 42), N, P, B);
  for (int W : {1, 2, 3, 4}) {
    std::vector<std::vector<RankBatch>> got(W);
    LocalCommunicator::run(W, [&](Communicator& c) {
      GroupSampler s(N, P, G, c.world_size(), c.rank(), 42);
      for (int64_t b = 0; b < B; ++b) got[c.rank()].push_back(s.next());
    });
    std::vector<int64_t> prompts, samples, ids;
    for (int64_t b = 0; b < B; ++b)
      for (int r = 0; r < W; ++r) {
        const RankBatch& rb = got[r][b];
        CHECK(rb.batch == b);
        CHECK(rb.epoch == b / 4);
        CHECK(static_cast<int64_t>(rb.prompts.size()) == P / W);
        prompts.insert(prompts.end(), rb.prompts.begin(), rb.prompts.end());
        const auto s = rb.samples();
        samples.insert(samples.end(), s.begin(), s.end());
        for (size_t k = 0; k < rb.prompts.size(); ++k)
          for (int64_t j = 0; j < G; ++j) ids.push_back(rb.sample_id(static_cast<int64_t>(k), j));
      }
    CHECK(prompts == ref);
    REQUIRE(samples.size() == ref.size() * G);
    for (size_t i = 0; i < samples.size(); ++i) CHECK(samples[i] == ref[i / G]);  // groups of G, in order
    for (size_t i = 0; i < ids.size(); ++i) CHECK(ids[i] == static_cast<int64_t>(i));
  }
  // within an epoch no prompt repeats
  const std::set<int64_t> e0(ref.begin(), ref.begin() + 48);
  CHECK(e0.size() == 48);
}

TEST_CASE("data: sampler cursor save/restore continues identically, at another world size too", "[unit][data]") {
  const int64_t N = 40, P = 12, G = 2;  // 3 batches per epoch
  GroupSampler full(N, P, G, 1, 0, 9);
  std::vector<RankBatch> want;
  for (int b = 0; b < 8; ++b) want.push_back(full.next());

  GroupSampler a(N, P, G, 2, 1, 9);
  for (int b = 0; b < 4; ++b) a.next();  // mid-epoch 1
  const SamplerCursor saved = a.cursor();
  CHECK(saved == SamplerCursor{1, 12, 4, 48});
  for (int W : {1, 2, 3, 4}) {
    std::vector<std::vector<RankBatch>> got(W);
    LocalCommunicator::run(W, [&](Communicator& c) {
      GroupSampler s(N, P, G, c.world_size(), c.rank(), 9);
      s.restore(saved);
      for (int b = 4; b < 8; ++b) got[c.rank()].push_back(s.next());
    });
    for (int b = 4; b < 8; ++b) {
      std::vector<int64_t> cat;
      for (int r = 0; r < W; ++r) {
        const RankBatch& rb = got[r][b - 4];
        CHECK(rb.batch == want[b].batch);
        CHECK(rb.epoch == want[b].epoch);
        CHECK(rb.first_position == want[b].first_position + r * (P / W));
        cat.insert(cat.end(), rb.prompts.begin(), rb.prompts.end());
      }
      CHECK(cat == want[b].prompts);
    }
  }
}

TEST_CASE("data: sampler geometry errors", "[unit][data]") {
  REQUIRE_THROWS_WITH(GroupSampler(100, 10, 4, 3, 0, 1), Contains("prompts per step 10 is not a positive multiple of the world size 3"));
  REQUIRE_THROWS_WITH(GroupSampler(5, 8, 4, 2, 0, 1), Contains("the dataset has 5 prompts, fewer than the 8"));
  REQUIRE_THROWS_WITH(GroupSampler(10, 8, 0, 2, 0, 1), Contains("group size G = 0"));
  REQUIRE_THROWS_WITH(GroupSampler(10, 8, 2, 2, 2, 1), Contains("rank 2 of world size 2"));
  GroupSampler s(10, 8, 2, 2, 0, 1);
  REQUIRE_THROWS_WITH(s.restore(SamplerCursor{0, 11, 0, 0}), Contains("does not fit a dataset of 10 prompts"));
}
