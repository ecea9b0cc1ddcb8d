#include <catch2/catch.hpp>

#include "../common/zero_harness.h"
#include "cgrpo/comm/local_communicator.h"

using namespace cgrpo;
using testing::max_rel_diff;
using testing::toy_train;
using testing::toy_units;

namespace {
using Params = std::vector<std::vector<float>>;
Params run(int W, int stage, int steps, int micro, int batch, double max_norm, std::vector<double>* norms = nullptr) {
  std::vector<Params> out(W);
  std::vector<std::vector<double>> ns(W);
  LocalCommunicator::run(W, [&](Communicator& c) {
    ZeroEngine e(toy_units(), c, stage, AdamWParams{0.9, 0.99, 1e-8, 0.1});
    out[c.rank()] = toy_train(e, steps, micro, batch, 0.05, max_norm, &ns[c.rank()]);
  });
  for (int r = 1; r < W; ++r) REQUIRE(out[r] == out[0]);  // every rank holds the same parameters
  if (norms) *norms = ns[0];
  return out[0];
}
}  // namespace

TEST_CASE("zero engine: stages 0-3 give bit-identical parameters at the same world size", "[unit][shard]") {
  for (int W : {1, 2, 3, 4}) {
    const Params ref = run(W, 0, 4, 1, 12, 0.0);
    for (int stage : {1, 2, 3}) {
      INFO("W = " << W << ", stage " << stage);
      CHECK(run(W, stage, 4, 1, 12, 0.0) == ref);
    }
  }
}

TEST_CASE("zero engine: 1, 2, 3 and 4 ranks agree on the same global batch", "[unit][shard]") {
  const Params ref = run(1, 0, 5, 2, 24, 0.0);
  for (int W : {2, 3, 4})
    for (int stage : {0, 1, 2, 3}) {
      INFO("W = " << W << ", stage " << stage);
      // fp32 sums in another order (per-rank partials), amplified by Adam's g / sqrt(v): stated tolerance 1e-4
      CHECK(max_rel_diff(run(W, stage, 5, 2, 24, 0.0), ref) < 1e-4);
    }
  // and the loss actually moved the parameters
  const Params init = run(1, 0, 0, 1, 24, 0.0);
  CHECK(max_rel_diff(ref, init) > 1e-2);
}

TEST_CASE("zero engine: global-norm clipping agrees across stages and ranks", "[unit][shard]") {
  std::vector<double> n1, n4;
  const Params a = run(1, 0, 3, 1, 12, 0.05, &n1);
  const Params b = run(4, 3, 3, 1, 12, 0.05, &n4);
  CHECK(max_rel_diff(a, b) < 1e-5);
  for (size_t i = 0; i < n1.size(); ++i) CHECK(n4[i] == Approx(n1[i]).epsilon(1e-5));
  CHECK(n1[0] > 0.05);  // clipping was active
  const Params unclipped = run(1, 0, 3, 1, 12, 0.0);
  CHECK(max_rel_diff(a, unclipped) > 1e-3);
}

TEST_CASE("zero engine: padding never leaks into the parameters", "[unit][shard]") {
  LocalCommunicator::run(3, [&](Communicator& c) {
    for (int stage : {0, 1, 2, 3}) {
      ZeroEngine e(toy_units(), c, stage, AdamWParams{});
      toy_train(e, 3, 1, 12, 0.05, 1.0);
      for (int u = 0; u < e.num_units(); ++u) {
        e.acquire(u);
        const float* p = e.params(u);
        for (int64_t i = e.unit_numel(u); i < e.unit_padded(u); ++i)
          if (p[i] != 0.0f) throw std::runtime_error("padding leaked");
        e.release(u);
      }
    }
  });
}

TEST_CASE("zero engine: traffic per step equals the ZeRO formulas (2Ψ, 2Ψ, 2Ψ, 3Ψ)", "[unit][shard]") {
  for (int W : {2, 4})
    for (int stage : {0, 1, 2, 3}) {
      std::vector<CommStats> stats(W);
      LocalCommunicator::run(W, [&](Communicator& c) {
        ZeroEngine e(toy_units(), c, stage, AdamWParams{});
        toy_train(e, 1, 1, 8, 0.05, 0.0);  // warm: loads and one step
        c.reset_stats();
        toy_train(e, 1, 1, 8, 0.05, 0.0);  // includes read_unit at the end (stage 3: one more gather)
        stats[c.rank()] = c.stats();
      });
      const ZeroPlan plan = plan_zero(toy_units(), W, stage);
      const int64_t S = plan.padded_numel / W;  // elements per rank per leg
      INFO("W = " << W << ", stage " << stage);
      for (int r = 0; r < W; ++r) {
        const CommStats& s = stats[r];
        const int64_t read_back = stage == 3 ? (W - 1) * S * 4 : 0;  // toy_train's final read_unit
        CHECK(s[CommOp::AllGather].bytes_sent + s[CommOp::ReduceScatter].bytes_sent +
                  (stage == 0 ? s[CommOp::AllReduce].bytes_sent : 0) ==
              plan.sent_bytes_per_step + read_back);
        if (stage > 0) CHECK(s[CommOp::AllReduce].calls == 1);  // only the grad-norm scalar
        CHECK(plan.sent_bytes_per_step == (stage == 3 ? 3 : 2) * (W - 1) * S * 4);
      }
    }
}

TEST_CASE("zero engine: bad stage is a clear error", "[unit][shard]") {
  LocalCommunicator::run(1, [](Communicator& c) {
    REQUIRE_THROWS_WITH(ZeroEngine(toy_units(), c, 4, AdamWParams{}), Catch::Contains("ZeRO stage must be 0..3"));
  });
}
