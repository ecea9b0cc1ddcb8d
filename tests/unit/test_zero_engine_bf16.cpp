// ZeroEngine with param dtype bf16: bf16 working parameters, fp32 master weights and moments, fp32 gradients.
#include <catch2/catch.hpp>
#include <cstring>

#include "../common/zero_harness.h"
#include "cgrpo/comm/local_communicator.h"

using namespace cgrpo;
using testing::max_rel_diff;
using testing::toy_units;

namespace {
using Params = std::vector<std::vector<float>>;
const AdamWParams kHp{0.9, 0.99, 1e-8, 0.1};

// Initialise, train `steps` steps one at a time, checking after the load and after every step that the working
// copy equals bf16(master) with zero padding (*bad counts violations); returns the fp32 master values.
Params run_bf16(int W, int stage, int steps, int micro, int batch, double max_norm, int64_t* bad = nullptr,
               bool overlap = false) {
  std::vector<Params> out(W);
  std::vector<int64_t> bads(W, 0);
  LocalCommunicator::run(W, [&](Communicator& c) {
    ZeroEngine e(toy_units(), c, stage, kHp, true, nullptr, DType::BF16);
    e.set_overlap(overlap);
    testing::toy_init_engine(e);
    bads[c.rank()] += testing::toy_working_mismatches(e);
    for (int s = 0; s < steps; ++s) {
      testing::toy_steps(e, s, 1, micro, batch, 0.05, max_norm);
      bads[c.rank()] += testing::toy_working_mismatches(e);
    }
    out[c.rank()] = testing::toy_read(e);
  });
  for (int r = 1; r < W; ++r) REQUIRE(out[r] == out[0]);  // every rank reads the same master values
  if (bad)
    for (int64_t b : bads) *bad += b;
  return out[0];
}

Params toy_init_values() {
  const std::vector<UnitSpec> units = toy_units();
  Params p(units.size());
  for (size_t u = 0; u < p.size(); ++u) {
    int64_t n = 0;
    for (const TensorSpec& t : units[u].tensors) n += t.numel;
    for (int64_t i = 0; i < n; ++i) p[u].push_back(testing::toy_init(int(u), i));
  }
  return p;
}
}  // namespace

TEST_CASE("zero engine bf16: stages 0-3 give bit-identical master weights at the same world size", "[unit][shard]") {
  for (int W : {1, 2, 3, 4}) {
    int64_t bad = 0;
    const Params ref = run_bf16(W, 0, 4, 1, 12, 0.0, &bad);
    for (int stage : {1, 2, 3}) {
      INFO("W = " << W << ", stage " << stage);
      CHECK(run_bf16(W, stage, 4, 1, 12, 0.0, &bad) == ref);
    }
    INFO("W = " << W);
    CHECK(bad == 0);  // working copy == bf16(master), padding zero, after the load and every step, every stage
  }
}

TEST_CASE("zero engine bf16: the master keeps fp32 precision and training moves it", "[unit][shard]") {
  const Params init = toy_init_values(), p = run_bf16(2, 2, 4, 1, 12, 0.0);
  CHECK(max_rel_diff(p, init) > 1e-2);
  int64_t not_bf16 = 0, n = 0;  // master values that a bf16 copy could not hold
  for (const auto& u : p)
    for (float v : u) {
      not_bf16 += bf16_to_f32(f32_to_bf16(v)) != v;
      ++n;
    }
  CHECK(not_bf16 > n / 2);
  // the bf16 run stays close to the fp32 run (its gradients see bf16-rounded parameters)
  Params f32;
  LocalCommunicator::run(2, [&](Communicator& c) {
    ZeroEngine e(toy_units(), c, 2, kHp);
    Params q = testing::toy_train(e, 4, 1, 12, 0.05, 0.0);
    if (c.rank() == 0) f32 = q;
  });
  CHECK(max_rel_diff(p, f32) < 0.1);
  CHECK(p != f32);
}

TEST_CASE("zero engine bf16: 1, 2, 3 and 4 ranks agree on the same global batch", "[unit][shard]") {
  int64_t bad = 0;
  const Params ref = run_bf16(1, 0, 5, 2, 24, 0.0, &bad);
  for (int W : {2, 3, 4})
    for (int stage : {0, 1, 2, 3}) {
      INFO("W = " << W << ", stage " << stage);
      // fp32 gradient sums in another order; a master differing in its last bits can round to the neighbouring
      // bf16 working value, which the next gradients see: measured 2.3e-5, stated tolerance 1e-4 (as fp32)
      CHECK(max_rel_diff(run_bf16(W, stage, 5, 2, 24, 0.0, &bad), ref) < 1e-4);
    }
  CHECK(bad == 0);
}

TEST_CASE("zero engine bf16: load_unit and read_unit round-trip the fp32 values exactly", "[unit][shard]") {
  const Params init = toy_init_values();
  for (int W : {1, 3})
    for (int stage : {0, 1, 2, 3}) {
      std::vector<Params> out(W);
      std::vector<int64_t> bad(W);
      LocalCommunicator::run(W, [&](Communicator& c) {
        ZeroEngine e(toy_units(), c, stage, kHp, true, nullptr, DType::BF16);
        testing::toy_init_engine(e);
        out[c.rank()] = testing::toy_read(e);
        bad[c.rank()] = testing::toy_working_mismatches(e);
      });
      INFO("W = " << W << ", stage " << stage);
      for (int r = 0; r < W; ++r) {
        CHECK(out[r] == init);
        CHECK(bad[r] == 0);
      }
    }
}

TEST_CASE("zero engine bf16: traffic per step is 2-byte all-gathers and 4-byte gradients", "[unit][shard]") {
  for (int W : {2, 4})
    for (int stage : {0, 1, 2, 3}) {
      std::vector<CommStats> stats(W);
      LocalCommunicator::run(W, [&](Communicator& c) {
        ZeroEngine e(toy_units(), c, stage, kHp, true, nullptr, DType::BF16);
        testing::toy_init_engine(e);
        testing::toy_steps(e, 0, 1, 1, 8, 0.05, 0.0);  // warm
        c.reset_stats();
        testing::toy_steps(e, 1, 1, 1, 8, 0.05, 0.0);
        stats[c.rank()] = c.stats();
      });
      const ZeroPlan plan = plan_zero(toy_units(), W, stage, 2, 4);
      const int64_t leg = (W - 1) * plan.padded_numel / W;  // elements per rank per collective leg
      INFO("W = " << W << ", stage " << stage);
      CHECK(plan.sent_bytes_per_step == (stage == 0 ? 2 * leg * 4 : stage == 3 ? 2 * leg * 2 + leg * 4 : leg * 2 + leg * 4));
      for (int r = 0; r < W; ++r) {
        const CommStats& s = stats[r];
        CHECK(s[CommOp::AllGather].bytes_sent == (stage == 0 ? 0 : stage == 3 ? 2 * leg * 2 : leg * 2));
        CHECK(s[CommOp::ReduceScatter].bytes_sent == (stage == 0 ? 0 : leg * 4));
        CHECK(s[CommOp::AllGather].bytes_sent + s[CommOp::ReduceScatter].bytes_sent +
                  (stage == 0 ? s[CommOp::AllReduce].bytes_sent : 0) ==
              plan.sent_bytes_per_step);
        if (stage > 0) CHECK(s[CommOp::AllReduce].calls == 1);  // only the grad-norm scalar
      }
    }
}

TEST_CASE("zero engine bf16: allocated bytes by category match plan_zero with 2-byte params", "[unit][shard]") {
  auto within = [](int64_t measured, int64_t predicted) {
    return measured >= predicted * 0.9 && measured <= predicted * 1.1 + 64;
  };
  for (int W : {1, 2})
    for (int stage : {0, 1, 2, 3}) {
      const ZeroPlan plan = plan_zero(toy_units(), W, stage, 2, 4);
      MemoryStats before{}, after{};
      LocalCommunicator::run(W, [&](Communicator& c) {
        testing::memory_snapshot(c, before, true);
        ZeroEngine e(toy_units(), c, stage, kHp, true, nullptr, DType::BF16);
        testing::toy_init_engine(e);
        testing::toy_steps(e, 0, 1, 1, 12, 0.05, 0.0);
        testing::memory_snapshot(c, after, false);
      });
      auto live = [&](MemCategory k) { return (after.live_bytes[0][int(k)] - before.live_bytes[0][int(k)]) / W; };
      INFO("W = " << W << ", stage " << stage);
      CHECK(plan.master_bytes == (stage == 0 ? plan.padded_numel : plan.padded_numel / W) * 4);
      CHECK(live(MemCategory::Master) == plan.master_bytes);
      CHECK(within(live(MemCategory::Params), plan.params_bytes));
      CHECK(within(live(MemCategory::Moments), plan.moments_bytes));
      if (W == 1) {  // one thread: the peaks are this rank's own
        CHECK(within(after.peak_bytes[0][int(MemCategory::Params)] - before.live_bytes[0][int(MemCategory::Params)],
                     plan.params_bytes + plan.gathered_bytes));
        CHECK(within(after.peak_bytes[0][int(MemCategory::Grads)] - before.live_bytes[0][int(MemCategory::Grads)],
                     plan.grads_bytes));
      }
      CHECK(memory_stats().live_bytes[0][int(MemCategory::Master)] == before.live_bytes[0][int(MemCategory::Master)]);
    }
}

TEST_CASE("zero engine bf16: params(u) is a clear error, param_data(u) is the bf16 working copy", "[unit][shard]") {
  LocalCommunicator::run(1, [](Communicator& c) {
    for (int stage : {0, 3}) {
      ZeroEngine e(toy_units(), c, stage, kHp, true, nullptr, DType::BF16);
      CHECK(e.param_dtype() == DType::BF16);
      testing::toy_init_engine(e);
      REQUIRE_THROWS_WITH(e.params(1), Catch::Contains("working parameters are bf16") && Catch::Contains("param_data"));
      e.acquire(1);
      const uint16_t* w = static_cast<const uint16_t*>(e.param_data(1));
      CHECK(w[3] == f32_to_bf16(testing::toy_init(1, 3)));
      e.release(1);
    }
    ZeroEngine f(toy_units(), c, 0, kHp);
    CHECK(f.param_dtype() == DType::F32);
    CHECK(f.params(0) == f.param_data(0));
  });
}

TEST_CASE("zero engine bf16: mix_from mixes the masters and rebuilds the working copy", "[unit][shard]") {
  for (int stage : {0, 1, 2, 3}) {
    std::vector<int64_t> bad(2, 0), differ(2, 0);
    LocalCommunicator::run(2, [&](Communicator& c) {
      ZeroEngine policy(toy_units(), c, stage, kHp, true, nullptr, DType::BF16);
      ZeroEngine ref(toy_units(), c, stage, kHp, false, nullptr, DType::BF16);  // frozen: keeps a master too
      testing::toy_init_engine(policy);
      testing::toy_init_engine(ref);
      testing::toy_steps(policy, 0, 2, 1, 12, 0.05, 0.0);
      const Params p = testing::toy_read(policy), before = testing::toy_read(ref);
      ref.mix_from(policy, 0.5);
      const Params half = testing::toy_read(ref);
      bad[c.rank()] += testing::toy_working_mismatches(ref);
      for (size_t u = 0; u < p.size(); ++u)
        for (size_t i = 0; i < p[u].size(); ++i)
          differ[c.rank()] += std::fabs(half[u][i] - 0.5f * (p[u][i] + before[u][i])) > 1e-6f;
      ref.mix_from(policy, 1.0);
      differ[c.rank()] += testing::toy_read(ref) != p;  // alpha 1: exactly the policy's master
      bad[c.rank()] += testing::toy_working_mismatches(ref);
    });
    INFO("stage " << stage);
    CHECK(bad == std::vector<int64_t>{0, 0});
    CHECK(differ == std::vector<int64_t>{0, 0});
  }
}

// θ <- bf16((1 - α) θ + α θ_src): one fp32 fma over the source's master and the widened bf16 value, one rounding
float mixed_bf16(float policy_master, float ref_bf16, float alpha) {
  return bf16_to_f32(f32_to_bf16(std::fma(alpha, policy_master, (1.0f - alpha) * ref_bf16)));
}

TEST_CASE("zero engine bf16: a frozen engine without a master holds, reads, stores and mixes the bf16 values",
          "[unit][shard]") {
  const Params init = toy_init_values();
  for (int W : {2, 3})
    for (int stage = 0; stage <= 3; ++stage)
      for (int ref_stage : stage == 3 ? std::vector<int>{3} : std::vector<int>{stage, 3}) {
        std::vector<int64_t> bad(size_t(W), 0), differ(size_t(W), 0);
        int64_t master_grew = -1;
        LocalCommunicator::run(W, [&](Communicator& c) {
          ZeroEngine policy(toy_units(), c, stage, kHp, true, nullptr, DType::BF16);
          MemoryStats before, after;
          testing::memory_snapshot(c, before, false);
          ZeroEngine ref(toy_units(), c, ref_stage, kHp, false, nullptr, DType::BF16, DType::F32, false);
          testing::memory_snapshot(c, after, false);
          const size_t master = size_t(MemCategory::Master);
          if (c.rank() == 0) master_grew = after.live_bytes[0][master] - before.live_bytes[0][master];
          CHECK(!ref.has_master());
          CHECK(ref.param_storage(0) == nullptr);
          testing::toy_init_engine(policy);
          testing::toy_init_engine(ref);
          const size_t r = size_t(c.rank());
          // loaded: the fp32 values rounded once, read back widened; padding zero
          Params got = testing::toy_read(ref);
          for (size_t u = 0; u < init.size(); ++u)
            for (size_t i = 0; i < init[u].size(); ++i) differ[r] += got[u][i] != bf16_to_f32(f32_to_bf16(init[u][i]));
          bad[r] += testing::toy_working_mismatches(ref);
          // mixed: into the bf16 weights from the policy's fp32 master
          testing::toy_steps(policy, 0, 2, 1, 12, 0.05, 0.0);
          const Params p = testing::toy_read(policy);
          ref.mix_from(policy, 0.6);
          const Params mixed = testing::toy_read(ref);
          for (size_t u = 0; u < p.size(); ++u)
            for (size_t i = 0; i < p[u].size(); ++i) differ[r] += mixed[u][i] != mixed_bf16(p[u][i], got[u][i], 0.6f);
          bad[r] += testing::toy_working_mismatches(ref);
          ref.mix_from(policy, 1.0);  // reset: exactly the policy's working copy
          got = testing::toy_read(ref);
          for (size_t u = 0; u < p.size(); ++u)
            for (size_t i = 0; i < p[u].size(); ++i) differ[r] += got[u][i] != bf16_to_f32(f32_to_bf16(p[u][i]));
          // what checkpoints store: download_params over the stored range, upload it back after clobbering
          for (int u = 0; u < ref.num_units(); ++u) {
            const ShardRange sr = ref.param_range(u);
            std::vector<float> kept(size_t(sr.count)), junk(size_t(sr.count), 3.0f);
            ref.download_params(u, sr.offset, sr.count, kept.data());
            for (int64_t i = 0; i < sr.count; ++i)
              differ[r] += kept[size_t(i)] != (sr.offset + i < ref.unit_numel(u) ? got[size_t(u)][size_t(sr.offset + i)] : 0.0f);
            ref.upload_params(u, sr.offset, sr.count, junk.data());
            ref.params_loaded();
            differ[r] += testing::toy_read(ref)[size_t(u)] == got[size_t(u)];  // the junk landed
            ref.upload_params(u, sr.offset, sr.count, kept.data());
            ref.params_loaded();
          }
          differ[r] += testing::toy_read(ref) != got;
          REQUIRE_THROWS_WITH(ref.download_params(0, ref.param_range(0).offset, ref.param_range(0).count + 1,
                                                  std::vector<float>(size_t(ref.unit_padded(0)) + 1).data()),
                              Catch::Contains("outside unit"));
        });
        INFO("W = " << W << ", policy stage " << stage << ", reference stage " << ref_stage);
        CHECK(master_grew == 0);
        CHECK(bad == std::vector<int64_t>(size_t(W), 0));
        CHECK(differ == std::vector<int64_t>(size_t(W), 0));
      }
}

TEST_CASE("zero engine: a fully sharded reference mixes bit-identically to one at the policy's stage", "[unit][shard]") {
  for (DType dt : {DType::F32, DType::BF16})
    for (bool keep_master : {true, false}) {
      if (dt == DType::F32 && !keep_master) continue;
      for (int stage = 0; stage <= 2; ++stage) {
        Params out[2];  // [same stage, stage 3]
        for (int full_shard : {0, 1})
          LocalCommunicator::run(3, [&](Communicator& c) {
            ZeroEngine policy(toy_units(), c, stage, kHp, true, nullptr, dt);
            ZeroEngine ref(toy_units(), c, full_shard ? 3 : stage, kHp, false, nullptr, dt, DType::F32, keep_master);
            testing::toy_init_engine(policy);
            testing::toy_init_engine(ref);
            testing::toy_steps(policy, 0, 2, 1, 12, 0.05, 0.0);
            ref.mix_from(policy, 0.6);
            const Params got = testing::toy_read(ref);
            if (c.rank() == 0) out[full_shard] = got;
          });
        INFO(dtype_name(dt) << ", master " << keep_master << ", policy stage " << stage);
        CHECK(out[1] == out[0]);
        CHECK(out[0] != toy_init_values());
      }
    }
  std::vector<std::string> errors(2);
  LocalCommunicator::run(2, [&](Communicator& c) {  // a replicated reference of a stage-3 policy would need a gather
    ZeroEngine policy(toy_units(), c, 3, kHp, true, nullptr, DType::BF16);
    ZeroEngine ref(toy_units(), c, 0, kHp, false, nullptr, DType::BF16);
    try {
      ref.mix_from(policy, 0.6);
    } catch (const std::exception& e) {
      errors[size_t(c.rank())] = e.what();
    }
  });
  for (const std::string& e : errors) CHECK_THAT(e, Catch::Contains("cannot mix from a stage-3"));
  LocalCommunicator::run(1, [&](Communicator& c) {
    REQUIRE_THROWS_WITH(ZeroEngine(toy_units(), c, 0, kHp, true, nullptr, DType::BF16, DType::F32, false),
                        Catch::Contains("trainable engine keeps its fp32 master"));
  });
}

TEST_CASE("zero engine bf16: overlap and prefetched gathers give the same bits", "[unit][shard]") {
  int64_t bad = 0;
  for (int stage : {2, 3})
    CHECK(run_bf16(3, stage, 3, 2, 12, 0.0, &bad, true) == run_bf16(3, stage, 3, 2, 12, 0.0, &bad, false));
  CHECK(bad == 0);
  std::vector<int64_t> differ(3, 0);
  LocalCommunicator::run(3, [&](Communicator& c) {
    ZeroEngine e(toy_units(), c, 3, kHp, true, nullptr, DType::BF16);
    e.set_overlap(true);
    testing::toy_init_engine(e);
    testing::toy_steps(e, 0, 1, 1, 12, 0.05, 0.0);
    for (int u = 0; u < e.num_units(); ++u) {
      e.acquire(u);
      const std::vector<float> plain = testing::toy_working(e, u);
      e.release(u);
      e.prefetch(u);  // a started bf16 all-gather, completed by acquire
      e.acquire(u);
      differ[c.rank()] += testing::toy_working(e, u) != plain;
      e.release(u);
    }
  });
  CHECK(differ == std::vector<int64_t>{0, 0, 0});
}
