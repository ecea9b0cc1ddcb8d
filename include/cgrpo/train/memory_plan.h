// Memory and traffic plan of a run (cgrpo plan; ARCHITECTURE.md §3.8): per-rank bytes by category for a
// ZeRO stage and world size, from the same formulas the engine and the model allocate with, plus the largest
// micro-batch that fits a device.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "cgrpo/config/config.h"
#include "cgrpo/model/model_config.h"
#include "cgrpo/shard/zero_engine.h"

namespace cgrpo {

struct MemoryPlan {
  ZeroPlan zero;                 // params, gathered, grads, master, moments, traffic
  int64_t seq_len = 0;           // tokens per sequence of the training forward
  int64_t micro_rows = 0;        // sequences per training forward (3 coupled passes x per_device_batch for GRPO)
  int64_t activations_bytes = 0; // model activations for micro_rows x seq_len
  int64_t workspace_bytes = 0;   // backward scratch + backend scratch
  int64_t backend_scratch_bytes = 0;  // of which the backend's own (attention, log-softmax chunks; cuda: + cuBLASLt's)
  // GRPO only. ref_bytes: the frozen reference model (grpo.beta != 0), an engine at parallel.ref_stage() holding
  // parameters (+ with bf16 parameters and parallel.ref_fp32_master their fp32 master), no gradients or moments;
  // ref_gathered_bytes: at stage 3 the unit(s) its forward has gathered, transient like the policy's gathered
  // units and never at the same time, so the total counts the larger of the two. rollout_pinned_bytes:
  // ZeRO-3 with zero3_rollout_gather = once holds every unit gathered while it samples ([Ψ] in the parameter
  // dtype); the activation buffers, grown by training, stay allocated meanwhile, so both count.
  int64_t ref_bytes = 0, ref_gathered_bytes = 0;
  int64_t ref_sent_bytes_per_forward = 0;  // per rank: the reference's all-gathers in one scoring forward (stage 3)
  int64_t rollout_pinned_bytes = 0;
  // Host memory to load the initial weights (load_units): one unit's range of fp32 values at a time, the
  // largest unit at stages 0-2 (and bf16 at 1-2), its shard at stage 3. Not device memory: not in the total.
  int64_t host_load_bytes = 0;
  int64_t total_bytes() const {
    return zero.total_bytes() + std::max<int64_t>(0, ref_gathered_bytes - zero.gathered_bytes) + ref_bytes +
           rollout_pinned_bytes + activations_bytes + workspace_bytes;
  }
};

// mode: "grpo" (rows = 3 * grpo.per_device_batch, L = max_prompt_length + max_new_tokens) or
// "sft" (rows = sft.batch_size, L = sft.max_length). `rows` > 0 overrides the row count.
MemoryPlan plan_run(const Config& cfg, const ModelConfig& model, int world, int stage, const std::string& mode,
                    int64_t rows = 0);

// Largest per_device_batch (GRPO) or batch_size (SFT) whose plan fits device_bytes; 0 if none.
int64_t largest_micro_batch(const Config& cfg, const ModelConfig& model, int world, int stage, const std::string& mode,
                            int64_t device_bytes);

// The model a config describes: config.json under model.path, else the preset.
ModelConfig model_config_of(const Config& cfg);

}  // namespace cgrpo
