// The Dream model trained through the ZeRO engine: stages 0-3 at 1-4 ranks (threads) agree with a plain
// flat-buffer run; units carry HF names, shapes and decay flags.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cgrpo/backend/cpu_backend.h"
#include "cgrpo/backend/cuda_context.h"
#include "cgrpo/comm/local_communicator.h"
#include "cgrpo/model/dream_model.h"
#include "cgrpo/shard/model_units.h"
#include "cgrpo/train/memory_plan.h"
#include "cgrpo/train/model_denoiser.h"

using namespace cgrpo;

namespace {
// One step of a simple masked log-likelihood on a fixed global batch of 4 sequences: rank r of W takes
// sequences [r * 4/W, (r + 1) * 4/W); loss = -mean over all labelled tokens of the global batch.
constexpr int64_t kB = 4, kL = 9;
// Adam's first step is g / (|g| + eps): with eps 1e-8 an element whose gradient is ~1e-8 flips with the
// reduction order. eps 1e-3 makes the step a smooth function of the gradient, so the comparison measures the
// gradient reduction, not Adam's sign sensitivity.
const AdamWParams kHp{0.9, 0.99, 1e-3, 0.1};
void batch_tokens(int64_t seq, std::vector<int32_t>& ids, std::vector<int32_t>& tgt, const ModelConfig& c) {
  ids.resize(kL);
  tgt.resize(kL);
  for (int64_t i = 0; i < kL; ++i) {
    tgt[size_t(i)] = int32_t((seq * 31 + i * 7) % (c.vocab_size - 2));
    ids[size_t(i)] = (i % 3 == 1) ? int32_t(c.mask_token_id) : tgt[size_t(i)];
  }
}

void local_step(DreamModel& m, int rank, int W, const ModelConfig& c) {
  const int64_t per = kB / W;
  std::vector<int32_t> ids, tgt, all_ids, rows, targets;
  for (int64_t b = 0; b < per; ++b) {
    batch_tokens(rank * per + b, ids, tgt, c);
    all_ids.insert(all_ids.end(), ids.begin(), ids.end());
    for (int64_t i = 1; i < kL; ++i)
      if (ids[size_t(i)] == c.mask_token_id) {
        rows.push_back(int32_t(b * kL + i - 1));  // shift: raw logits at i-1 predict token i
        targets.push_back(tgt[size_t(i)]);
      }
  }
  const int64_t total_labelled = kB * 3;  // positions 1, 4, 7 of each sequence
  ModelInput in{per, kL, all_ids.data(), nullptr, nullptr};
  m.forward(in, true);
  std::vector<float> logp(rows.size()), dlogp(rows.size(), -1.0f / float(total_labelled));
  m.logprobs(int64_t(rows.size()), rows.data(), targets.data(), logp.data());
  m.backward(dlogp.data());
}
}  // namespace

TEST_CASE("model units: HF names, shapes and weight-decay flags", "[unit][shard][model]") {
  const ModelConfig c = ModelConfig::preset("tiny");
  const ParamLayout layout(c);
  const auto units = units_from_layout(layout, {"bias", "norm"});
  REQUIRE(units.size() == size_t(c.num_hidden_layers + 2));
  CHECK(units[0].tensors[0].name == "model.embed_tokens.weight");
  CHECK(units[0].tensors[0].shape == std::vector<int64_t>{c.vocab_size, c.hidden_size});
  CHECK(units[0].tensors[0].decay);
  int no_decay = 0;
  for (const auto& u : units)
    for (const auto& t : u.tensors) {
      const bool excluded = t.name.find("bias") != std::string::npos || t.name.find("norm") != std::string::npos;
      CHECK(t.decay == !excluded);
      no_decay += !t.decay;
    }
  CHECK(no_decay == 3 * 2 + 2 * 2 + 1);  // q/k/v biases and 2 norms per layer, final norm
}

TEST_CASE("model through the ZeRO engine: stages 0-3 at 1-4 ranks match the flat single-rank run", "[unit][shard][model]") {
  const ModelConfig c = ModelConfig::preset("tiny");
  const ParamLayout layout(c);
  std::vector<float> init(size_t(layout.total()));
  init_params(layout, init.data(), 7);

  // reference: flat buffers, one rank, one AdamW step through a 1-rank stage-0 engine
  std::vector<float> ref(init.size());
  LocalCommunicator::run(1, [&](Communicator& comm) {
    CpuBackend be(1);
    DreamModel m(c, be);
    std::vector<float> params = init, grads(init.size(), 0.0f);
    m.bind(params.data(), grads.data());
    local_step(m, 0, 1, c);
    ZeroEngine e(units_from_layout(layout, {"bias", "norm"}), comm, 0, kHp);
    load_flat(e, layout, init.data());
    for (int u = 0; u < e.num_units(); ++u) {
      const auto& pu = layout.units()[size_t(u)];
      std::copy(grads.begin() + pu.offset, grads.begin() + pu.offset + pu.numel, e.grads(u));
    }
    e.step(1e-2, 1.0);
    read_flat(e, layout, ref.data());
  });
  double moved = 0;
  for (size_t i = 0; i < ref.size(); ++i) moved = std::max(moved, double(std::fabs(ref[i] - init[i])));
  CHECK(moved > 1e-3);

  for (int W : {1, 2, 4})
    for (int stage : {0, 1, 2, 3}) {
      std::vector<std::vector<float>> out(size_t(W), std::vector<float>(init.size()));
      LocalCommunicator::run(W, [&](Communicator& comm) {
        CpuBackend be(1);
        DreamModel m(c, be);
        ZeroEngine e(units_from_layout(layout, {"bias", "norm"}), comm, stage, kHp);
        load_flat(e, layout, init.data());
        EngineParamSource src(e);
        m.bind(&src, true);
        local_step(m, comm.rank(), W, c);
        e.step(1e-2, 1.0);
        read_flat(e, layout, out[size_t(comm.rank())].data());
      });
      double diff = 0;
      for (size_t i = 0; i < ref.size(); ++i)
        diff = std::max(diff, std::fabs(double(out[0][i]) - ref[i]) / std::max(1e-2, std::fabs(double(ref[i]))));
      INFO("W = " << W << ", stage " << stage << ", max rel diff " << diff);
      CHECK(diff < 1e-4);
      for (int r = 1; r < W; ++r) CHECK(out[size_t(r)] == out[0]);
    }
}

TEST_CASE("load_units: each rank draws only what it stores, and the engines hold what load_flat puts there",
          "[unit][shard][model]") {
  const ModelConfig c = ModelConfig::preset("tiny");
  const ParamLayout layout(c);
  const int64_t T = layout.total();
  std::vector<float> init(static_cast<size_t>(T));
  init_params(layout, init.data(), 7);
  const auto units = units_from_layout(layout, {"bias", "norm"});
  for (DType pd : {DType::F32, DType::BF16})
    for (int W : {1, 2, 3})
      for (int stage = 0; stage <= 3; ++stage) {
        INFO(dtype_name(pd) << ", W = " << W << ", stage " << stage);
        std::vector<int64_t> asked(size_t(W), 0), largest(size_t(W), 0), expected(size_t(W), 0);
        std::vector<int> same(size_t(W), 1);
        LocalCommunicator::run(W, [&](Communicator& comm) {
          const size_t r = size_t(comm.rank());
          ZeroEngine a(units, comm, stage, kHp, true, nullptr, pd), a_ref(units, comm, stage, kHp, false, nullptr, pd);
          ZeroEngine b(units, comm, stage, kHp, true, nullptr, pd), b_ref(units, comm, stage, kHp, false, nullptr, pd);
          load_flat(a, layout, init.data());
          load_flat(a_ref, layout, init.data());
          load_units(b, layout, [&](int64_t first, int64_t count, float* out) {
            asked[r] += count;
            largest[r] = std::max(largest[r], count);
            init_params_range(layout, first, count, out, 7);
          }, &b_ref);
          for (int u = 0; u < b.num_units(); ++u) expected[r] += b.load_range(u).count;
          std::vector<float> fa(static_cast<size_t>(T)), fb(static_cast<size_t>(T));
          for (auto [x, y] : {std::pair{&a, &b}, std::pair{&a_ref, &b_ref}}) {
            read_flat(*x, layout, fa.data());  // the fp32 master (collective)
            read_flat(*y, layout, fb.data());
            same[r] &= fa == fb;
            for (int u = 0; u < x->num_units(); ++u) {  // the working copy in the parameter dtype
              x->acquire(u);
              y->acquire(u);
              same[r] &= std::memcmp(x->param_data(u), y->param_data(u),
                                     size_t(x->unit_padded(u)) * dtype_size(pd)) == 0;
              x->release(u);
              y->release(u);
            }
          }
        });
        int64_t all = 0;
        for (int r = 0; r < W; ++r) {
          CHECK(same[size_t(r)] == 1);
          CHECK(asked[size_t(r)] == expected[size_t(r)]);  // the reference engine reuses the policy's values
          all += asked[size_t(r)];
        }
        if (stage < 3) {
          CHECK(all == int64_t(W) * T);  // every rank holds every unit (bf16 at stages 1-2: the working copy)
        } else {
          CHECK(all == T);  // the shards: each value drawn by exactly one rank, at most ceil(unit / W) at a time
          int64_t max_unit = 0;
          for (const ParamUnit& u : layout.units()) max_unit = std::max(max_unit, u.numel);
          for (int r = 0; r < W; ++r) CHECK(largest[size_t(r)] <= (max_unit + W - 1) / W);
        }
      }
}

TEST_CASE("zero overlap: deferred reduce-scatters and ZeRO-3 prefetches give the same bits and bytes", "[unit][shard][model]") {
  const ModelConfig c = ModelConfig::preset("tiny");
  const ParamLayout layout(c);
  std::vector<float> init(size_t(layout.total()));
  init_params(layout, init.data(), 7);
  for (int stage : {2, 3}) {
    std::vector<float> out[2];
    int64_t sent[2] = {0, 0};
    for (int overlap = 0; overlap < 2; ++overlap) {
      out[overlap].resize(init.size());
      LocalCommunicator::run(2, [&](Communicator& comm) {
        CpuBackend be(1);
        DreamModel m(c, be);
        m.set_recompute(stage == 3);  // recompute re-acquires every layer in backward: prefetch must follow
        ZeroEngine e(units_from_layout(layout, {"bias", "norm"}), comm, stage, kHp);
        REQUIRE_FALSE(e.overlap());  // host communicators do not overlap by default
        e.set_overlap(overlap == 1);
        load_flat(e, layout, init.data());
        EngineParamSource src(e);
        m.bind(&src, true);
        comm.reset_stats();
        for (int step = 0; step < 2; ++step) {
          local_step(m, comm.rank(), 2, c);  // two micro-batches per step: outstanding work crosses them
          local_step(m, comm.rank(), 2, c);
          e.step(1e-2, 1.0);
        }
        if (comm.rank() == 0) sent[overlap] = comm.stats().bytes_sent();
        read_flat(e, layout, comm.rank() == 0 ? out[overlap].data() : std::vector<float>(init.size()).data());
      });
    }
    INFO("stage " << stage);
    CHECK(out[1] == out[0]);
    CHECK(sent[1] == sent[0]);
    CHECK(out[0] != init);
  }
}

TEST_CASE("plan: GRPO counts the frozen reference and ZeRO-3's pinned rollout parameters as the engines allocate them",
          "[unit][shard][model]") {
  const ModelConfig c = ModelConfig::preset("tiny");
  const ParamLayout layout(c);
  const auto units = units_from_layout(layout, {"bias", "norm"});
  constexpr int W = 2;
  for (const char* pdt : {"f32", "bf16"})
    for (const char* full_shard : {"true", "false"})
      for (const char* fp32_master : {"true", "false"})
        for (int stage = 0; stage <= 3; ++stage) {
          const Config cfg = Config::load("", {"--parallel.param_dtype", pdt, "--parallel.ref_full_shard", full_shard,
                                               "--parallel.ref_fp32_master", fp32_master});
          const MemoryPlan plan = plan_run(cfg, c, W, stage, "grpo");
          const int ref_stage = cfg.parallel.ref_stage(W, stage);
          INFO(pdt << ", stage " << stage << ", ref_full_shard " << full_shard << ", ref_fp32_master " << fp32_master);
          CHECK(plan.ref_bytes > 0);
          CHECK((plan.ref_gathered_bytes > 0) == (ref_stage == 3));
          CHECK((plan.rollout_pinned_bytes > 0) == (stage == 3));
          CHECK(plan_run(Config::load("", {"--grpo.beta", "0"}), c, W, stage, "grpo").ref_bytes == 0);
          CHECK(plan_run(cfg, c, W, stage, "sft").ref_bytes == 0);
          // summed over the W ranks (threads of this process)
          int64_t ref_grew = 0, ref_gather_peak = 0, pinned_grew = 0, ref_sent = 0;
          LocalCommunicator::run(W, [&](Communicator& comm) {
            auto live = [] {
              const MemoryStats m = memory_stats();
              int64_t b = 0;
              for (int64_t x : m.live_bytes[0]) b += x;  // host memory, every category
              return b;
            };
            ZeroEngine policy(units, comm, stage, kHp, true, nullptr, parse_dtype(pdt));
            comm.barrier();
            const int64_t before = live();
            comm.barrier();
            ZeroEngine ref(units, comm, ref_stage, kHp, false, nullptr, parse_dtype(pdt), DType::F32,
                           cfg.parallel.ref_fp32_master);  // as Trainer::init_model
            comm.barrier();
            const int64_t with_ref = live();
            comm.barrier();
            const int64_t sent0 = comm.stats().bytes_sent();
            for (int u = 0; u < ref.num_units(); ++u) {  // its forward: one unit gathered at a time
              ref.acquire(u);
              comm.barrier();
              if (comm.rank() == 0) ref_gather_peak = std::max(ref_gather_peak, live() - with_ref);
              comm.barrier();
              ref.release(u);
            }
            if (comm.rank() == 0) ref_sent = comm.stats().bytes_sent() - sent0;
            {
              PinnedSource pinned(policy);  // the rollout's "once" gather
              comm.barrier();
              if (comm.rank() == 0) pinned_grew = live() - with_ref;
              comm.barrier();
            }
            if (comm.rank() == 0) ref_grew = with_ref - before;
          });
          CHECK(ref_grew == W * plan.ref_bytes);
          CHECK(ref_gather_peak == W * plan.ref_gathered_bytes);
          CHECK(ref_sent == plan.ref_sent_bytes_per_forward);
          CHECK((ref_sent > 0) == (ref_stage == 3));
          CHECK(pinned_grew == (stage == 3 ? W * plan.rollout_pinned_bytes : 0));
        }
  // bf16 at ZeRO-2 (the recipe's stage), by default: the reference holds 2 bytes per parameter over W ranks, where
  // the policy's stage and an fp32 master would hold 2 per parameter on each rank plus 4 over W
  const Config bf16 = Config::load("", {"--parallel.param_dtype", "bf16"});
  const Config old_way = Config::load("", {"--parallel.param_dtype", "bf16", "--parallel.ref_full_shard", "false",
                                           "--parallel.ref_fp32_master", "true"});
  const int64_t psi = plan_run(bf16, c, W, 2, "grpo").zero.padded_numel;
  CHECK(plan_run(bf16, c, W, 2, "grpo").ref_bytes == 2 * psi / W);
  CHECK(plan_run(old_way, c, W, 2, "grpo").ref_bytes == 2 * psi + 4 * psi / W);
  CHECK(plan_run(bf16, c, 1, 2, "grpo").ref_gathered_bytes == 0);  // one rank: nothing to shard, nothing gathered
  CHECK(bf16.parallel.ref_stage(1, bf16.parallel.stage()) == 2);
  CHECK(bf16.parallel.ref_stage(2, bf16.parallel.stage()) == 3);
}

TEST_CASE("plan: the tiny model's predicted bytes match what a training step allocates (within 10%)", "[unit][shard][model]") {
  Config cfg = Config::load("", {"--sft.batch_size", "3", "--sft.max_length", "24", "--model.gradient_checkpointing",
                                 "false"});
  const ModelConfig c = ModelConfig::preset("tiny");
  const ParamLayout layout(c);
  std::vector<float> init(size_t(layout.total()));
  init_params(layout, init.data(), 7);
  for (int stage : {0, 2, 3}) {
    const MemoryPlan plan = plan_run(cfg, c, 1, stage, "sft");
    MemoryStats before{}, peak{};
    LocalCommunicator::run(1, [&](Communicator& comm) {
      before = memory_stats();
      reset_peak_memory();
      {
        CpuBackend be(1);
        DreamModel m(c, be);
        ZeroEngine e(units_from_layout(layout, {"bias", "norm"}), comm, stage, kHp);
        load_flat(e, layout, init.data());
        EngineParamSource src(e);
        m.bind(&src, true);
        const int64_t B = 3, L = 24, N = B * L;
        std::vector<int32_t> ids(static_cast<size_t>(N)), rows(static_cast<size_t>(N)), tgt(static_cast<size_t>(N));
        for (int64_t i = 0; i < N; ++i) ids[size_t(i)] = rows[size_t(i)] = tgt[size_t(i)] = int32_t(i % 300);
        for (int64_t i = 0; i < N; ++i) rows[size_t(i)] = int32_t(i);
        ModelInput in{B, L, ids.data(), nullptr, nullptr};
        m.forward(in, true);
        std::vector<float> logp(static_cast<size_t>(N)), dlogp(static_cast<size_t>(N), -1.0f / float(N));
        m.logprobs(N, rows.data(), tgt.data(), logp.data());
        m.backward(dlogp.data());
        e.step(1e-3, 1.0);
        peak = memory_stats();
      }
    });
    auto grew = [&](MemCategory k) { return peak.peak_bytes[0][int(k)] - before.live_bytes[0][int(k)]; };
    auto within = [](int64_t measured, int64_t predicted) {
      return double(measured) >= 0.9 * double(predicted) && double(measured) <= 1.1 * double(predicted);
    };
    INFO("stage " << stage << ": workspace measured " << grew(MemCategory::Workspace) << " predicted "
                  << plan.workspace_bytes << "; activations " << grew(MemCategory::Activations) << " vs "
                  << plan.activations_bytes);
    CHECK(within(grew(MemCategory::Params), plan.zero.params_bytes + plan.zero.gathered_bytes));
    CHECK(within(grew(MemCategory::Grads), plan.zero.grads_bytes));
    CHECK(within(grew(MemCategory::Moments), plan.zero.moments_bytes));
    CHECK(within(grew(MemCategory::Activations), plan.activations_bytes));
    CHECK(within(grew(MemCategory::Workspace), plan.workspace_bytes + plan.zero.scratch_bytes));
  }
}

// What the GPU test (tests/gpu/test_gpu_model.cpp) measures on a CudaBackend, here on the plan alone: for
// parallel.backend = cuda the backend scratch is the log-softmax chunk ([R, chunk] fp32, fp64 sum and fp32 max
// per row), the fp32 attention's D [B, heads, L] and the context's fixed cuBLASLt workspace; the rest of the
// workspace (the model's) is the CPU plan's.
TEST_CASE("plan: backend = cuda counts CudaBackend's scratch and its cuBLASLt workspace", "[unit][shard][model]") {
  const std::vector<std::string> o = {"--sft.batch_size", "3", "--sft.max_length", "24"};
  std::vector<std::string> oc = o;
  oc.insert(oc.end(), {"--parallel.backend", "cuda"});
  const ModelConfig c = ModelConfig::preset("tiny");
  const MemoryPlan cpu = plan_run(Config::load("", o), c, 1, 2, "sft");
  const MemoryPlan cuda = plan_run(Config::load("", oc), c, 1, 2, "sft");
  const int64_t B = 3, L = 24, R = B * L, chunk = std::min<int64_t>(4096, c.vocab_size);
  CHECK(cuda.backend_scratch_bytes ==
        R * chunk * 4 + R * 12 + B * c.num_attention_heads * L * 4 + int64_t(kCublasLtWorkspaceBytes));
  CHECK(cuda.workspace_bytes - cuda.backend_scratch_bytes == cpu.workspace_bytes - cpu.backend_scratch_bytes);
}
