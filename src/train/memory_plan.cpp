#include "cgrpo/train/memory_plan.h"

#include <algorithm>
#include <filesystem>

#include "cgrpo/backend/cpu_backend.h"
#include "cgrpo/backend/cuda_context.h"
#include "cgrpo/backend/flash_tile.h"
#include "cgrpo/config/config.h"
#include "cgrpo/model/dream_model.h"
#include "cgrpo/shard/model_units.h"

namespace cgrpo {

ModelConfig model_config_of(const Config& cfg) {
  if (!cfg.model.path.empty()) return ModelConfig::load((std::filesystem::path(cfg.model.path) / "config.json").string());
  return ModelConfig::preset(cfg.model.preset);
}

MemoryPlan plan_run(const Config& cfg, const ModelConfig& mc, int world, int stage, const std::string& mode,
                    int64_t rows) {
  CGRPO_CHECK(mode == "grpo" || mode == "sft", "plan mode must be grpo or sft, got '", mode, "'");
  MemoryPlan p;
  const int pb = int(dtype_size(parse_dtype(cfg.parallel.param_dtype)));
  const int rb = int(dtype_size(parse_dtype(cfg.parallel.reduce_dtype)));
  const ParamLayout layout(mc);
  // DreamModel gathers its embedding (unit 0) and head unit (last) once per step (model/param_source.h)
  const int last = int(layout.units().size()) - 1;
  const bool overlap = cfg.parallel.backend == "cuda";  // NCCL overlaps: ZeroEngine::set_overlap
  const std::vector<UnitSpec> units = units_from_layout(layout, {});
  p.zero = plan_zero(units, world, stage, pb, rb, {0, last}, overlap);
  int64_t max_unit = 0;  // ZeroEngine::load_range's largest: a whole unit, or its shard at stage 3
  for (const ParamUnit& u : layout.units()) max_unit = std::max(max_unit, u.numel);
  p.host_load_bytes = (stage == 3 ? (max_unit + world - 1) / world : max_unit) * 4;
  if (mode == "grpo") {
    p.seq_len = cfg.grpo.max_prompt_length + cfg.rollout.max_new_tokens;
    p.micro_rows = rows > 0 ? rows : 3 * cfg.grpo.per_device_batch;
    if (cfg.grpo.beta != 0.0) {  // Trainer::init_model's reference engine
      const int ref_stage = cfg.parallel.ref_stage(world, stage);
      const ZeroPlan r = plan_zero(units, world, ref_stage, pb, rb, {0, last}, overlap);
      p.ref_bytes = r.params_bytes + (cfg.parallel.ref_fp32_master ? r.master_bytes : 0);
      p.ref_gathered_bytes = r.gathered_bytes;
      if (ref_stage == 3) p.ref_sent_bytes_per_forward = (world - 1) * (r.padded_numel / world) * pb;
    }
    if (stage == 3 && cfg.parallel.zero3_rollout_gather == "once") p.rollout_pinned_bytes = p.zero.padded_numel * pb;
  } else {
    p.seq_len = cfg.sft.max_length;
    p.micro_rows = rows > 0 ? rows : cfg.sft.batch_size;
  }
  DreamModel model(mc, host_backend());  // only for the size formulas; nothing is allocated
  model.set_recompute(cfg.model.gradient_checkpointing);
  if (parse_dtype(cfg.parallel.param_dtype) == DType::BF16) model.set_param_dtype(DType::BF16);
  model.set_compute_dtype(parse_dtype(cfg.parallel.compute_dtype));
  const int64_t L = p.seq_len, B = p.micro_rows, R = B * L;  // log-probs at (at most) every position
  p.activations_bytes = int64_t(model.activation_bytes(B, L, true) + model.selection_bytes(R));
  // The backend's scratch at the model's default vocabulary chunk (4096). CpuBackend keeps one buffer grown to the
  // largest need: attention backward's 2 [L, L] or the log-softmax gather's [R, chunk] (+ 2R). CudaBackend keeps
  // the log-softmax chunk ([R, chunk] fp32, running sum fp64 and max fp32 per row forward, [R, chunk] bf16 dz backward
  // under bf16 activations) and, apart from it, the
  // attention backward's workspace: D [B, heads, L] fp32, and on the tensor-core path (bf16 activations, a
  // tc_supported_head_dim) bf16(dO) as well (flash_tile.h), and, fixed for the process, its CudaContext's
  // cuBLASLt workspace (kCublasLtWorkspaceBytes). Not counted: the CUDA context itself.
  const int64_t chunk = std::min<int64_t>(4096, mc.vocab_size);
  int64_t backend_scratch = std::max<int64_t>(2 * L * L, R * chunk + 2 * R) * 4;
  if (cfg.parallel.backend == "cuda") {
    const int64_t heads = mc.num_attention_heads, hd = mc.head_dim();
    const bool bf16_acts = parse_dtype(cfg.parallel.compute_dtype) == DType::BF16;  // also the head's operands
    const bool tc = bf16_acts && flash::tc_supported_head_dim(hd);
    const int64_t attention_floats = tc ? flash::tc_bwd_workspace_floats(B, heads, L, hd) : B * heads * L;
    const int64_t lsg = R * chunk * 4 + std::max<int64_t>(R * 12, bf16_acts ? R * chunk * 2 : 0);  // bwd: bf16 dz
    backend_scratch = lsg + attention_floats * 4 + int64_t(kCublasLtWorkspaceBytes);
  }
  p.backend_scratch_bytes = backend_scratch;
  // + with bf16 parameters: the model's bf16 matmul operands and fp32 weight copies (the [V, H] table)
  p.workspace_bytes = int64_t(model.backward_workspace_bytes(B, L)) + backend_scratch +
                      int64_t(model.param_dtype_scratch_bytes(B, L, true));
  return p;
}

int64_t largest_micro_batch(const Config& cfg, const ModelConfig& mc, int world, int stage, const std::string& mode,
                            int64_t device_bytes) {
  const int64_t per = mode == "grpo" ? 3 : 1;
  int64_t lo = 0, hi = 1;
  while (hi < (1 << 20) && plan_run(cfg, mc, world, stage, mode, hi * per).total_bytes() <= device_bytes) lo = hi, hi *= 2;
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (plan_run(cfg, mc, world, stage, mode, mid * per).total_bytes() <= device_bytes)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

}  // namespace cgrpo
