// Helpers behind `cgrpo generate` / `cgrpo eval`: pass@k, the rank split and the gather order, and the
// Generator on a tiny random model (batch-invariant completions, truncation at the end token).
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "cgrpo/cli/gen_common.h"
#include "cgrpo/core/error.h"
#include "cgrpo/io/safetensors.h"

using namespace cgrpo;
using namespace cgrpo::cli;
namespace fs = std::filesystem;

namespace {
double binom(int64_t n, int64_t k) {
  if (k < 0 || k > n) return 0;
  double r = 1;
  for (int64_t i = 1; i <= k; ++i) r = r * double(n - k + i) / double(i);
  return r;
}
}  // namespace

TEST_CASE("pass_at_k: the unbiased estimator 1 - C(n-c, k) / C(n, k)", "[unit][cli]") {
  CHECK(pass_at_k(10, 3, 1) == Approx(0.3));
  CHECK(pass_at_k(4, 2, 2) == Approx(1.0 - 1.0 / 6.0));
  CHECK(pass_at_k(5, 0, 3) == 0.0);
  CHECK(pass_at_k(5, 5, 1) == 1.0);
  CHECK(pass_at_k(5, 3, 3) == 1.0);  // n - c < k: every k-subset holds a pass
  for (int64_t n = 1; n <= 12; ++n)
    for (int64_t c = 0; c <= n; ++c)
      for (int64_t k = 1; k <= n; ++k) CHECK(pass_at_k(n, c, k) == Approx(1.0 - binom(n - c, k) / binom(n, k)));
  CHECK_THROWS_AS(pass_at_k(3, 4, 1), Error);
  CHECK_THROWS_AS(pass_at_k(3, 1, 4), Error);
}

TEST_CASE("rank split i % W and interleave_rank_lines restore input order at any world size", "[unit][cli]") {
  for (int world = 1; world <= 4; ++world)
    for (int64_t n = 0; n <= 9; ++n) {
      std::vector<std::vector<std::string>> per_rank(static_cast<size_t>(world));
      int64_t seen = 0;
      for (int r = 0; r < world; ++r)
        for (const int64_t i : rank_items(n, r, world)) {
          CHECK(i % world == r);
          per_rank[size_t(r)].push_back("line " + std::to_string(i));
          ++seen;
        }
      CHECK(seen == n);
      const std::vector<std::string> all = interleave_rank_lines(per_rank, n);
      REQUIRE(int64_t(all.size()) == n);
      for (int64_t i = 0; i < n; ++i) CHECK(all[size_t(i)] == "line " + std::to_string(i));
      if (n > 0) {
        per_rank[size_t((n - 1) % world)].pop_back();  // a rank that returned too few lines is an error
        CHECK_THROWS_AS(interleave_rank_lines(per_rank, n), Error);
      }
    }
}

TEST_CASE("Generator: completions do not depend on the batch, end at the end token, follow the seed", "[unit][cli]") {
  const fs::path dir = fs::temp_directory_path() / ("cgrpo_cli_gen_" + std::to_string(getpid()));
  const ModelConfig mc = ModelConfig::preset("tiny");
  {
    const ParamLayout layout(mc);
    std::vector<float> params(size_t(layout.total()));
    init_params(layout, params.data(), 5);
    save_model(dir.string(), mc, params.data(), DType::F32, 0);
  }
  Config cfg;
  cfg.rollout.max_new_tokens = 12;
  cfg.rollout.steps = 6;
  cfg.rollout.batch_size = 3;
  Generator gen(dir.string(), cfg);
  CHECK(gen.codec().end_id == mc.eos_token_id);
  const std::vector<std::string> texts = {"Compute 1+2.", "ab", "Reverse the string xyz.", "q"};
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& t : texts) prompts.push_back(gen.prompt_ids(t, true, "test"));
  const std::vector<uint32_t> ids = {7, 3, 11, 0};
  const auto batched = gen.generate(prompts, ids);  // batches {0, 1, 2}, {3}: left padding in the first
  REQUIRE(batched.size() == 4);
  for (size_t k = 0; k < 4; ++k) {
    CHECK(batched[k].size() == 12);
    CHECK(gen.generate({prompts[k]}, {ids[k]})[0] == batched[k]);  // alone, unpadded
  }
  CHECK(gen.generate({prompts[0]}, {8u})[0] != batched[0]);  // the sample id is the RNG key
  cfg.run.seed = 43;
  Generator other(dir.string(), cfg);
  CHECK(other.generate({prompts[0]}, {7u})[0] != batched[0]);

  const int32_t end = gen.codec().end_id;
  CHECK(gen.until_end({5, 6, end, 7, end}) == std::vector<int32_t>{5, 6});
  CHECK(gen.until_end({5, 6}) == std::vector<int32_t>{5, 6});
  CHECK(gen.until_end({end}).empty());
  CHECK_THROWS_AS(gen.prompt_ids("", false, "test"), Error);
  cfg.rollout.max_new_tokens = mc.max_position_embeddings;
  Generator too_long(dir.string(), cfg);
  CHECK_THROWS_AS(too_long.prompt_ids("abc", false, "test"), Error);
  CHECK_THROWS_AS(model_dir_of((dir / "missing").string(), cfg), Error);
  fs::remove_all(dir);
}
