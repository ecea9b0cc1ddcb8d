// ZeroEngine with reduce dtype bf16: fp32 gradients cast to bf16 for the collective, widened back after it.
#include <catch2/catch.hpp>
#include <cmath>

#include "../common/zero_harness.h"
#include "cgrpo/comm/local_communicator.h"

using namespace cgrpo;
using testing::toy_units;

namespace {
using Params = std::vector<std::vector<float>>;
const AdamWParams kHp{0.9, 0.99, 1e-8, 0.1};

struct Run {
  Params params;
  std::vector<double> norms;
  CommStats stats;  // rank 0's, over the whole run
};

// `steps` steps of `micro` micro-batches on a 24-sample batch; every rank must end with the same parameters.
Run run(int W, int stage, DType param_dtype, DType reduce_dtype, bool overlap, int micro,
        testing::ToyGrad grad = testing::toy_quadratic_grad, int steps = 3) {
  std::vector<Run> out(W);
  LocalCommunicator::run(W, [&](Communicator& c) {
    ZeroEngine e(toy_units(), c, stage, kHp, true, nullptr, param_dtype, reduce_dtype);
    e.set_overlap(overlap);
    Run& o = out[c.rank()];
    o.params = testing::toy_train(e, steps, micro, 24, 0.05, 0.0, &o.norms, grad);
    o.stats = c.stats();
  });
  for (int r = 1; r < W; ++r) REQUIRE(out[r].params == out[0].params);
  return out[0];
}
}  // namespace

TEST_CASE("zero engine reduce bf16: bf16-exact gradients give the f32-reduce step bit for bit", "[unit][shard]") {
  for (DType pd : {DType::F32, DType::BF16})
    for (int W : {1, 2, 3, 4})
      for (int stage : {0, 1, 2, 3})
        for (bool overlap : {false, true})
          for (int micro : {1, 2}) {
            INFO("param " << dtype_name(pd) << ", W = " << W << ", stage " << stage << ", overlap " << overlap
                          << ", micro " << micro);
            const Run f32 = run(W, stage, pd, DType::F32, overlap, micro, testing::toy_bf16_exact_grad);
            const Run bf16 = run(W, stage, pd, DType::BF16, overlap, micro, testing::toy_bf16_exact_grad);
            CHECK(bf16.params == f32.params);
            CHECK(bf16.norms == f32.norms);
            CHECK(f32.norms[0] > 0);
            // and the reduction really moved 2-byte gradients
            const CommOp op = stage == 0 ? CommOp::AllReduce : CommOp::ReduceScatter;
            CHECK(2 * bf16.stats[op].bytes_sent == f32.stats[op].bytes_sent);
          }
}

TEST_CASE("zero engine reduce bf16: stages 0-3 and overlap agree bit for bit, within bf16 rounding of f32 reduce",
          "[unit][shard]") {
  for (DType pd : {DType::F32, DType::BF16})
    for (int W : {1, 2, 3, 4}) {
      INFO("param " << dtype_name(pd) << ", W = " << W);
      const Run ref = run(W, 0, pd, DType::BF16, false, 1);
      for (int stage : {0, 1, 2, 3})
        for (bool overlap : {false, true}) {
          INFO("stage " << stage << ", overlap " << overlap);
          const Run r = run(W, stage, pd, DType::BF16, overlap, 1);
          CHECK(r.params == ref.params);  // same fp32 inputs, same rank order, one rounding each
          CHECK(r.norms == ref.norms);
        }
      // Each reduced gradient is rounded once (2^-9 relative), so the first norm is within 2^-9 of the f32 one. The
      // parameters then differ, and Adam's m / sqrt(v) amplifies small gradient changes where successive gradients
      // cancel (a parameter oscillating about its target): each step moves a parameter by up to about lr, and the
      // trajectories part by at most 1% of the 3 lr moved (measured 0.5%).
      const Run f32 = run(W, 0, pd, DType::F32, false, 1);
      double max_abs = 0;
      for (size_t u = 0; u < f32.params.size(); ++u)
        for (size_t i = 0; i < f32.params[u].size(); ++i)
          max_abs = std::max(max_abs, std::fabs(double(ref.params[u][i]) - f32.params[u][i]));
      CHECK(max_abs < 0.01 * 3 * 0.05);
      CHECK(ref.params != f32.params);  // the rounding happened
      CHECK(std::fabs(ref.norms[0] - f32.norms[0]) <= std::ldexp(1.0, -9) * f32.norms[0]);
      for (size_t s = 1; s < ref.norms.size(); ++s) CHECK(ref.norms[s] == Approx(f32.norms[s]).epsilon(4e-3));
    }
}

TEST_CASE("zero engine reduce bf16: gradient traffic is 2 bytes per element, as plan_zero says", "[unit][shard]") {
  for (DType pd : {DType::F32, DType::BF16})
    for (int W : {2, 4})
      for (int stage : {0, 1, 2, 3}) {
        std::vector<CommStats> stats(W);
        LocalCommunicator::run(W, [&](Communicator& c) {
          ZeroEngine e(toy_units(), c, stage, kHp, true, nullptr, pd, DType::BF16);
          testing::toy_init_engine(e);
          testing::toy_steps(e, 0, 1, 1, 8, 0.05, 0.0);  // warm
          c.reset_stats();
          testing::toy_steps(e, 1, 1, 1, 8, 0.05, 0.0);
          stats[c.rank()] = c.stats();
        });
        const int pb = int(dtype_size(pd));
        const ZeroPlan plan = plan_zero(toy_units(), W, stage, pb, 2), f32 = plan_zero(toy_units(), W, stage, pb, 4);
        const int64_t leg = (W - 1) * plan.padded_numel / W;  // elements per rank per collective leg
        INFO("param " << dtype_name(pd) << ", W = " << W << ", stage " << stage);
        CHECK(plan.sent_bytes_per_step ==
              (stage == 0 ? 2 * leg * 2 : stage == 3 ? 2 * leg * pb + leg * 2 : leg * pb + leg * 2));
        CHECK(f32.sent_bytes_per_step - plan.sent_bytes_per_step == (stage == 0 ? 2 : 1) * leg * 2);
        for (int r = 0; r < W; ++r) {
          const CommStats& s = stats[r];
          CHECK(s[CommOp::ReduceScatter].bytes_sent == (stage == 0 ? 0 : leg * 2));
          CHECK(s[CommOp::AllGather].bytes_sent + s[CommOp::ReduceScatter].bytes_sent +
                    (stage == 0 ? s[CommOp::AllReduce].bytes_sent : 0) ==
                plan.sent_bytes_per_step);
          if (stage > 0) CHECK(s[CommOp::AllReduce].calls == 1);  // only the grad-norm scalar, fp32
        }
      }
}

TEST_CASE("zero engine reduce bf16: staging and gradient bytes match plan_zero, overlap on and off", "[unit][shard]") {
  for (DType rd : {DType::F32, DType::BF16})
    for (DType pd : {DType::F32, DType::BF16})
      for (int W : {1, 2})
        for (int stage : {0, 1, 2, 3})
          for (bool overlap : {false, true}) {
            const int rb = int(dtype_size(rd));
            const ZeroPlan plan = plan_zero(toy_units(), W, stage, int(dtype_size(pd)), rb, {}, overlap);
            MemoryStats before{}, built{}, after{};
            LocalCommunicator::run(W, [&](Communicator& c) {
              testing::memory_snapshot(c, before, true);
              ZeroEngine e(toy_units(), c, stage, kHp, true, nullptr, pd, rd);
              e.set_overlap(overlap);
              // set_overlap reallocated the landing zone: the peaks count from here
              testing::memory_snapshot(c, built, true);
              testing::toy_init_engine(e);
              testing::toy_steps(e, 0, 2, 2, 12, 0.05, 0.0);
              testing::memory_snapshot(c, after, false);
            });
            auto live = [&](const MemoryStats& m, MemCategory k) {
              return (m.live_bytes[0][int(k)] - before.live_bytes[0][int(k)]) / W;
            };
            INFO("reduce " << dtype_name(rd) << ", param " << dtype_name(pd) << ", W = " << W << ", stage " << stage
                           << ", overlap " << overlap);
            CHECK(plan.staging_bytes == (rd == DType::F32 ? 0 : (plan.max_unit_padded + (stage >= 1 ? plan.max_unit_padded / W : 0)) * 2));
            // the engine's workspace is exactly the landing zone and the staging, allocated once
            CHECK(live(built, MemCategory::Workspace) == plan.scratch_bytes + plan.staging_bytes);
            CHECK(live(after, MemCategory::Workspace) == plan.scratch_bytes + plan.staging_bytes);
            CHECK(plan.total_bytes() - plan_zero(toy_units(), W, stage, int(dtype_size(pd)), 4, {}, overlap).total_bytes() ==
                  plan.staging_bytes - (overlap && stage >= 2 && rb == 2 ? plan.max_unit_padded * 4 : 0));
            if (W == 1) {  // one thread: the peak is this rank's own; fp32 gradients whatever the reduce dtype
              const int64_t grads_peak =
                  after.peak_bytes[0][int(MemCategory::Grads)] - before.live_bytes[0][int(MemCategory::Grads)];
              if (overlap && stage >= 2 && rd == DType::F32)  // two full gradients of adjacent units: plan bounds it
                CHECK((grads_peak <= plan.grads_bytes && grads_peak >= plan.grads_bytes * 0.9));
              else
                CHECK(grads_peak == plan.grads_bytes);
              if (pd == DType::F32)  // (bf16 params: load_unit / read_unit take transient workspace of their own)
                CHECK(after.peak_bytes[0][int(MemCategory::Workspace)] -
                          before.live_bytes[0][int(MemCategory::Workspace)] ==
                      plan.scratch_bytes + plan.staging_bytes);
            }
          }
}

TEST_CASE("zero engine reduce bf16: reduce dtype f16 is a clear error", "[unit][shard]") {
  LocalCommunicator::run(1, [](Communicator& c) {
    ZeroEngine e(toy_units(), c, 2, kHp, true, nullptr, DType::F32, DType::BF16);
    CHECK(e.reduce_dtype() == DType::BF16);
    CHECK(ZeroEngine(toy_units(), c, 2, kHp).reduce_dtype() == DType::F32);
    REQUIRE_THROWS_WITH(ZeroEngine(toy_units(), c, 2, kHp, true, nullptr, DType::F32, DType::F16),
                        Catch::Contains("reduce dtype f16 is not supported"));
  });
}
