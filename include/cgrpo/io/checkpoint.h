// Sharded HDF5 checkpoints (ARCHITECTURE.md §3.5, spec/distributed_training.md §5).
//
// One file per checkpoint, written collectively with parallel HDF5 (MPI-IO). Every parameter and AdamW
// moment is one dataset of its global, unpadded logical shape:
//   /params/<name>, /exp_avg/<name>, /exp_avg_sq/<name>   (and /ref/<name> for a reference model)
// Each rank writes and reads only the part of each tensor that its storage covers, so a checkpoint saved at
// any world size and ZeRO stage loads at any other: resharding is a hyperslab read.
// Root attributes: format and writer version, the resolved config, step, tokens seen, LR-schedule position,
// data cursor (epoch, index in global units), seed, world size and stage at save, the AdamW step count,
// and per dataset an order-independent checksum (sum over elements of splitmix64(index, bits), mod 2^64).
//
// Commit protocol: write step_N.h5.tmp, close, fsync (rank 0), rename to step_N.h5, fsync the directory,
// then replace `latest` (write latest.tmp, fsync, rename). Keep the newest keep_last. A crash at any point
// leaves the previous checkpoint or the new one, both complete; a *.tmp is never loaded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cgrpo/shard/zero_engine.h"

namespace cgrpo {

struct CheckpointMeta {
  int64_t step = 0;           // optimizer steps completed
  int64_t tokens_seen = 0;
  int64_t lr_step = 0;        // LR-schedule position
  int64_t data_epoch = 0;     // data cursor, global units (GroupSampler cursor)
  int64_t data_index = 0;     //   prompt index within the epoch's order
  int64_t data_batch = 0;     //   batches handed out
  int64_t data_position = 0;  //   prompts handed out
  std::string phase = "grpo"; // sft | grpo: which loop the step counts belong to
  int64_t seed = 0;
  std::string config_ini;     // the resolved config
  std::string ref_model = "none";  // none | datasets (/ref/...) | rebuild:<how>
  // filled by save/read:
  int64_t world_size = 0, zero_stage = 0, adam_step = 0;
  int64_t format_version = 0;
  std::string writer;
};

constexpr int64_t kCheckpointFormatVersion = 1;

// Collective. Writes <dir>/step_<N>.h5 (N = meta.step; sft_step_<N>.h5 for meta.phase "sft") and updates
// <dir>/latest. `ref` may be nullptr. Listing order (resume auto, keep_last): GRPO by step, then SFT by step.
// Returns the checkpoint path.
std::string save_checkpoint(const std::string& dir, const CheckpointMeta& meta, ZeroEngine& policy, ZeroEngine* ref,
                            int keep_last);

// The best checkpoint (checkpoint.keep_best with run.eval_every_steps): <dir>/best.h5 is a hard link to (where
// the filesystem refuses links, a copy of) the checkpoint with the highest held-out reward so far, replaced
// atomically (best.h5.tmp, fsync, rename), and <dir>/best.json records {"step", "eval_reward", "file"}. keep_last
// never removes it (it is not a step_N.h5) and resume auto never picks it; `cgrpo convert --from best.h5` exports it.
struct BestCheckpoint {
  int64_t step = -1;  // -1: none recorded
  double eval_reward = 0;
  std::string file;   // the step_N.h5 it was linked from
};
// Collective (rank 0 links and writes, then a barrier).
void mark_best_checkpoint(const std::string& dir, const std::string& path, int64_t step, double eval_reward);
// <dir>/best.json, read on the calling rank; step -1 when there is none. A malformed file is fatal.
BestCheckpoint read_best_checkpoint(const std::string& dir);

// Collective. Loads `path` into the engines (any world size / stage), verifying shapes and checksums.
// Fatal with a clear message on any problem.
CheckpointMeta load_checkpoint(const std::string& path, ZeroEngine& policy, ZeroEngine* ref);

// Whether resolve_resume(dir, resume, ...) will load a checkpoint or end the run trying (an explicit path; "auto"
// with checkpoint files under dir): either way the engines' initial values are overwritten or never used, so the
// trainer skips loading its initial weights (at a requeue, every rank re-read the HF model before). Not collective.
bool resume_will_load(const std::string& dir, const std::string& resume);

// Collective. "auto": the newest complete checkpoint under dir that verifies; a damaged one is skipped with a
// warning. Returns "" when there is none. Any other value is returned as is. *loaded (if given) receives the
// metadata of the checkpoint that was loaded.
std::string resolve_resume(const std::string& dir, const std::string& resume, ZeroEngine& policy, ZeroEngine* ref,
                           CheckpointMeta* loaded = nullptr);

// Not collective: metadata and dataset list of a checkpoint, with an independent checksum verification
// (serial HDF5 read of every dataset). For `cgrpo inspect`.
struct CheckpointInfo {
  CheckpointMeta meta;
  struct Dataset {
    std::string name;
    std::vector<int64_t> shape;
    bool checksum_ok;
  };
  std::vector<Dataset> datasets;
};
// verify = false skips reading the data (checksum_ok is then true for every dataset).
CheckpointInfo inspect_checkpoint(const std::string& path, bool verify = true);
// Not collective: one dataset's values, flattened (serial HDF5). Fatal when missing.
std::vector<float> read_checkpoint_dataset(const std::string& path, const std::string& name);

// Order-independent checksum of a tensor's elements [begin, begin + n) (partial sums add up mod 2^64).
uint64_t tensor_checksum(const float* x, int64_t begin, int64_t n);

}  // namespace cgrpo
