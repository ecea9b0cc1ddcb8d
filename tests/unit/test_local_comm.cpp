#include <catch2/catch.hpp>

#include "../common/collective_checks.h"
#include "cgrpo/comm/local_communicator.h"

using namespace cgrpo;

TEST_CASE("shard_range tiles 0..N exactly for any N and W", "[unit][comm]") {
  for (int W = 1; W <= 9; ++W)
    for (int64_t n : {0, 1, 2, 5, 8, 9, 100, 101}) {
      int64_t next = 0;
      for (int r = 0; r < W; ++r) {
        const ShardRange s = shard_range(n, W, r);
        REQUIRE(s.offset == next);
        REQUIRE(s.count >= 0);
        REQUIRE(s.count <= (n + W - 1) / W);
        next += s.count;
      }
      REQUIRE(next == n);
    }
}

TEST_CASE("local communicator: collectives are exact at 1, 2, 3 and 4 ranks", "[unit][comm]") {
  for (int W : {1, 2, 3, 4}) {
    std::vector<std::vector<std::string>> fails(W);
    LocalCommunicator::run(W, [&](Communicator& c) { fails[c.rank()] = testing::check_collectives(c); });
    for (const auto& f : fails) CHECK(f == std::vector<std::string>{});
  }
}

TEST_CASE("local communicator: bf16 reductions accumulate in fp32 in rank order and round once, W = 1..4",
          "[unit][comm]") {
  for (int W : {1, 2, 3, 4}) {
    std::vector<std::vector<std::string>> fails(W);
    LocalCommunicator::run(W, [&](Communicator& c) { fails[c.rank()] = testing::check_bf16_reductions(c); });
    for (const auto& f : fails) CHECK(f == std::vector<std::string>{});
  }
}

TEST_CASE("local communicator: byte counters follow the direct-exchange formulas", "[unit][comm]") {
  for (int W : {1, 2, 3, 4}) {
    std::vector<std::vector<std::string>> fails(W);
    LocalCommunicator::run(W, [&](Communicator& c) { fails[c.rank()] = testing::check_byte_counters(c); });
    for (const auto& f : fails) CHECK(f == std::vector<std::string>{});
  }
}

TEST_CASE("communicator: a wrong shard size is a clear error", "[unit][comm]") {
  auto group = std::make_shared<LocalGroup>(1);
  LocalCommunicator c(group, 0);
  std::vector<float> a(4), b(3);
  REQUIRE_THROWS_WITH(c.all_gather(TensorView::of(b.data(), {3}), TensorView::of(a.data(), {4})),
                      Catch::Contains("sends 3 elements but owns 4"));
  std::vector<uint16_t> h(4);
  REQUIRE_THROWS_WITH(c.all_reduce(TensorView(h.data(), DType::F16, {4})), Catch::Contains("must be f32 or bf16"));
  REQUIRE_THROWS_WITH(c.reduce_scatter(TensorView(h.data(), DType::BF16, {4}), TensorView::of(a.data(), {4})),
                      Catch::Contains("of one dtype"));
}
