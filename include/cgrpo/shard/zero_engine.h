// ZeroEngine: FSDP-style flat units with ZeRO stages 0-3 (ARCHITECTURE.md §3.2,
// spec/distributed_training.md §2.1-2.3).
//
// Each unit (embedding, each transformer block, final norm + head) is one flat fp32 buffer padded to a
// multiple of W, so rank r owns the contiguous shard [r * S, (r + 1) * S) with S = padded / W, at any W.
//
//   stage 0  params full, grads full, AdamW moments full.   step: all_reduce(grads) -> replicated update
//   stage 1  params full, grads full, moments sharded.      step: reduce_scatter(grads) -> update own shard
//                                                            -> all_gather(params)
//   stage 2  params full, grads sharded: reduce_grads(u) reduce-scatters unit u as soon as backward has
//            produced it and frees the full gradient.        step: update own shard -> all_gather(params)
//   stage 3  params sharded too: acquire(u) all-gathers unit u before its forward and again before its
//            backward, release(u) frees it.                  step: update own shard (no gather)
// Per-rank traffic per step in parameter elements (one micro-batch; Ψ = padded parameter count):
// 2Ψ(W-1)/W at stages 0-2 and 3Ψ(W-1)/W at stage 3 (plus one scalar all-reduce for the gradient norm at
// stages 1-3). Gradients are summed over ranks; the caller normalises the loss globally.
// Padding stays exactly zero: its gradient is 0, so AdamW moves nothing there.
//
// With param dtype f32 (the CPU path) the parameters are the fp32 master weights: no separate master copy.
//
// Param dtype bf16 (ARCHITECTURE.md §3 item 4, parallel.param_dtype = bf16): the working parameters the model
// reads are bf16 ([padded] at stages 0-2, [shard] at stage 3, the stage-3 gathered unit bf16 [padded]; all-gathers
// move 2-byte elements). An fp32 master copy covers what AdamW updates (the moment range: the full unit at
// stage 0, the shard at stages 1-3; a frozen engine keeps one too, over the same range). Gradients, their
// reduction and the moments stay fp32 exactly as with f32. step() runs AdamW on the master, then rebuilds the
// working copy: cast master -> bf16 (round to nearest even, Backend::cast) of the owned part, and at stages 1-2
// all-gathers the bf16 working parameters. Invariant: the working copy equals bf16(master) element for element
// after construction, load_unit, step, mix_from and params_loaded. Checkpoints store the master (param_storage,
// param_range expose it), never the bf16 copy.
//
// A frozen bf16 engine may do without the master (keep_master = false; the GRPO reference by default,
// grpo.ref_fp32_master): then its bf16 working copy is all it holds. It loads from fp32 values by rounding them
// (RNE), read_unit and checkpoints see those rounded values widened back (exact), and mix_from mixes into the bf16
// weights: θ <- bf16((1 - α) θ + α θ_src) in fp32 with θ_src the source's fp32 master, one rounding per sync, as
// TRL's SyncRefModelCallback mixes the bf16 reference in place. It saves the master's 4 bytes per owned element.
//
// Reduce dtype bf16 (parallel.reduce_dtype = bf16; llm.c reduces in bf16): gradients still accumulate in fp32
// (grads(u) is fp32, the model adds into it) and the shard gradient, norm, clipping and AdamW stay fp32; only the
// reduction moves 2-byte elements. At each reduction (stage 0: all_reduce in step; stage 1: reduce_scatter in
// step; stages 2-3: reduce_grads(u), overlapped or not) the fp32 gradient [padded] is cast to bf16 (Backend::cast,
// round to nearest even) into a staging buffer, reduced in bf16 (communicator.h: host communicators accumulate
// the widened inputs in fp32 in rank order and round once; NCCL rounds in its ring), and the bf16 result is
// widened back (exactly) to where the f32 reduction would have put its fp32 result: the full gradient (stage 0),
// the shard gradient (stage 1), the landing zone that is then added to the shard gradient (stages 2-3). So
// gradients whose per-rank values and sums are bf16-representable give bit-identical steps with f32 and bf16,
// and stages 0-3 give bit-identical results with one micro-batch (same inputs, same reduction order, one
// rounding each). The staging is allocated once: bf16 [max padded] (the cast gradient; all_reduce in place at
// stage 0) plus bf16 [max shard] at stages 1-3 (the reduce-scatter output), ZeroPlan::staging_bytes. With overlap
// one staging suffices: reduce_grads completes the outstanding reduce-scatter before casting the next unit, and
// the fp32 full gradient is freed as soon as it is cast (so overlap adds no second fp32 full gradient).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cgrpo/backend/backend.h"
#include "cgrpo/comm/communicator.h"
#include "cgrpo/core/buffer.h"
#include "cgrpo/optim/adamw.h"

namespace cgrpo {

struct TensorSpec {
  std::string name;
  int64_t numel;
  bool decay;                  // weight decay applies
  std::vector<int64_t> shape;  // logical shape (empty = [numel])
};

struct UnitSpec {
  std::string name;
  std::vector<TensorSpec> tensors;  // contiguous, in order
};

// Per-rank bytes by category and traffic per step, predicted from the formulas (cgrpo plan), for the
// storage this engine allocates. A param dtype other than f32 adds an fp32 master (the GPU path); a reduce dtype
// other than f32 keeps the fp32 gradients and adds reduce-dtype staging, and the gradient traffic moves its size.
struct ZeroPlan {
  int stage = 0, world = 1;
  int64_t params_numel = 0, padded_numel = 0;  // Ψ logical, Ψ padded to W per unit
  int64_t max_unit_padded = 0;
  int64_t params_bytes = 0;    // resident parameters (stage 3: the shard)
  int64_t gathered_bytes = 0;  // stage 3: one gathered unit, transient
  int64_t grads_bytes = 0;     // fp32: persistent + one transient full unit at stages 2-3
  int64_t master_bytes = 0, moments_bytes = 0;
  int64_t scratch_bytes = 0;        // stages 2-3: the reduce-scatter landing zone (one shard of the largest unit)
  int64_t staging_bytes = 0;        // reduce dtype other than f32: the gradients' reduce-dtype copies (workspace)
  int64_t sent_bytes_per_step = 0;  // per rank, one micro-batch, excluding the grad-norm scalar
  int64_t total_bytes() const {
    return params_bytes + gathered_bytes + grads_bytes + master_bytes + moments_bytes + scratch_bytes + staging_bytes;
  }
};
// gathered_once: units all-gathered once per step at stage 3 instead of twice (the Dream model keeps its
// head unit from forward through backward, and its embedding backward needs no parameters); empty = none.
// overlap: the engine's overlapped mode (set_overlap; on with NCCL): one more transient full-unit gradient and a
// second scratch shard at stages 2-3, a second gathered unit at stage 3 (with reduce_bytes < 4 the first is not
// needed: the full gradient is freed once cast to the staging).
// param_bytes, reduce_bytes: the element sizes of parallel.param_dtype and parallel.reduce_dtype (4 or 2).
ZeroPlan plan_zero(const std::vector<UnitSpec>& units, int world, int stage, int param_bytes = 4,
                   int reduce_bytes = 4, const std::vector<int>& gathered_once = {}, bool overlap = false);

class ZeroEngine {
 public:
  // trainable = false: a frozen copy (the GRPO reference model): no gradients, no moments, no step().
  // keep_master = false (frozen bf16 engines only): no fp32 master, the working copy is the parameters (above).
  // All storage lives on `backend`'s device and every element-wise op runs there; nullptr = host memory
  // (host_backend()). The communicator must take that device's memory (mpi: host, nccl: CUDA).
  // param_dtype: the working parameters' dtype, F32 (they are the master weights) or BF16 (plus an fp32 master).
  // reduce_dtype: the dtype gradients are reduced in, F32 or BF16 (fp32 gradients cast for the collective; above).
  ZeroEngine(std::vector<UnitSpec> units, Communicator& comm, int stage, AdamWParams hp, bool trainable = true,
             Backend* backend = nullptr, DType param_dtype = DType::F32, DType reduce_dtype = DType::F32,
             bool keep_master = true);
  Backend& backend() { return be_; }
  bool trainable() const { return trainable_; }
  DType param_dtype() const { return param_dtype_; }
  DType reduce_dtype() const { return reduce_dtype_; }
  bool has_master() const { return param_dtype_ != DType::F32 && keep_master_; }  // a separate fp32 master

  int stage() const { return stage_; }
  int num_units() const { return static_cast<int>(units_.size()); }
  const UnitSpec& unit(int u) const { return units_[u].spec; }
  int64_t unit_numel(int u) const { return units_[u].numel; }      // logical
  int64_t unit_padded(int u) const { return units_[u].padded; }    // multiple of W
  int64_t shard_numel(int u) const { return units_[u].padded / comm_.world_size(); }
  int64_t total_numel() const;
  int64_t total_padded() const;

  // Initialise unit u from its full logical values (host memory, identical on every rank). Not collective.
  // bf16: fills the master (its range) and the working copy (RNE cast of the same fp32 values).
  void load_unit(int u, const float* full);
  // The part of unit u's logical values load_unit reads on this rank (unit coordinates, clipped to the logical
  // size): the stage-3 shard, the master's range with bf16 parameters, else the whole unit. load_unit_range
  // takes exactly those values ([load_range(u).count]), so a rank need not hold the rest.
  ShardRange load_range(int u) const;
  void load_unit_range(int u, const float* values);
  // Full logical fp32 values of unit u on every rank, into host memory. Collective at stage 3; with param dtype
  // bf16 collective at stages 1-3 (all-gathers the fp32 master shards): call it on every rank.
  void read_unit(int u, float* full);
  // Storage this rank holds, in unit coordinates (checkpoints read and write exactly these ranges):
  //   params: [0, padded) at stages 0-2, the shard at stage 3;  moments: [0, padded) at stage 0, else the shard.
  //   With param dtype bf16 the params storage is the fp32 master (or, without one, the owned part of the bf16
  //   working copy): param_range = moment_range.
  ShardRange shard_of(int u) const;       // [r * S, (r + 1) * S)
  ShardRange param_range(int u) const;
  ShardRange moment_range(int u) const;
  // Device memory (the backend's); host code copies through backend().download / upload.
  // The fp32 parameters checkpoints store: the params (f32) or the master (bf16); nullptr for a bf16 engine without
  // a master, whose values only download_params / upload_params reach.
  float* param_storage(int u) {
    return param_dtype_ == DType::F32 ? units_[u].params.as<float>()
                                      : keep_master_ ? units_[u].master.as<float>() : nullptr;
  }
  const float* param_storage(int u) const { return const_cast<ZeroEngine*>(this)->param_storage(u); }
  // fp32 values of [lo, lo + n) (unit coordinates, inside param_range(u)) to / from host memory: a copy of the fp32
  // storage, or without a master the bf16 working copy widened (exact) / rounded to it (RNE). Not collective; after
  // uploading, params_loaded() as after writing param_storage.
  void download_params(int u, int64_t lo, int64_t n, float* host);
  void upload_params(int u, int64_t lo, int64_t n, const float* host);
  // After param_storage was written directly (a checkpoint load): rebuild the working copy from the master.
  // Collective at stages 1-2 with param dtype bf16 (all-gather); a no-op with f32. Call it on every rank.
  void params_loaded();
  float* moment1(int u) { return units_[u].m.as<float>(); }
  float* moment2(int u) { return units_[u].v.as<float>(); }

  // --- compute side, called by the training loop around each unit's forward / backward
  void acquire(int u);                   // stage 3: all-gather unit u (or complete its prefetch); no-op otherwise
  void prefetch(int u);                  // stage 3 with overlap: start gathering unit u for a coming acquire(u)
  const float* params(int u) const;      // full params [unit_padded], valid while acquired (always at stage < 3);
                                         // f32 only: fatal with param dtype bf16 (use param_data or read_unit)
  const void* param_data(int u) const;   // the working params in param dtype (what the model reads), same validity
  void release(int u);                   // stage 3: free the gathered unit
  float* grads(int u);                   // full gradient accumulator [unit_padded] (allocated zeroed at stage >= 2)
  void reduce_grads(int u);              // stage >= 2: reduce-scatter unit u into its shard, free the full grad

  // Overlap (default: comm.overlaps(), i.e. on for NCCL): reduce_grads(u) starts u's reduce-scatter and completes
  // the previous unit's, and prefetch() starts gathers early; step() completes whatever is outstanding. Costs one
  // more transient full-unit gradient, a second workspace shard and (stage 3) a second gathered unit. Results are
  // bit-identical either way; on a host communicator it only reorders the same work (tests use that).
  void set_overlap(bool on);
  bool overlap() const { return overlap_; }

  // --- optimizer step: finishes the gradient reduction (stages 0/1), clips by the global norm (max_norm <= 0:
  // no clipping), runs AdamW on the local shards, re-gathers params (stages 0-2), zeroes gradients.
  // Returns the global gradient norm before clipping.
  double step(double lr, double max_norm);
  int64_t steps_taken() const { return t_; }
  void reset_optimizer();  // zero moments and the step count (a new training phase)
  void set_steps_taken(int64_t t) { t_ = t; }

  // θ <- (1 - alpha) θ + alpha θ_src on the storage this rank holds (spec §3.9 reference sync; TRL
  // SyncRefModelCallback). src: trainable (fp32 storage), same units, world size and param dtype, and its
  // param_range must cover this engine's: the same stage, or this engine at stage 3 (a fully sharded reference of a
  // policy at any stage). f32: no communication. bf16: mixes into the fp32 master (without one: into the bf16
  // working copy, above), then rebuilds the working copy (params_loaded): collective at stages 1-2 (one all-gather
  // of the bf16 working params per unit).
  void mix_from(const ZeroEngine& src, double alpha);

  Communicator& comm() { return comm_; }

 private:
  struct Unit {
    UnitSpec spec;
    int64_t numel = 0, padded = 0;
    Buffer params;   // working params in param dtype: [padded] at stages 0-2; [shard] at stage 3
    Buffer gathered; // stage 3 while acquired: [padded], param dtype
    Buffer master;   // bf16 with keep_master: fp32 master over the moment range ([padded] at stage 0, else [shard])
    Buffer grads;    // full [padded]: persistent at stages 0-1, per backward at 2-3
    Buffer grad_shard;  // [shard] at stages >= 1 (stage 1: filled at step)
    Buffer m, v;     // [padded] at stage 0, [shard] otherwise
    std::vector<DecaySegment> decay;  // over the part AdamW updates (full or shard)
    int acquired = 0;
    bool prefetched = false;      // gathered is being filled by a started all-gather
    Communicator::Ticket gather_ticket = 0;
  };
  int64_t stored_index(int u, int64_t lo, int64_t n, const char* what) const;  // [lo, lo + n) in param_range(u)
  float* owned_master(Unit& x);  // the fp32 values AdamW updates: the owned working params (f32) or the master (bf16)
  void* owned_work(Unit& x);     // the working params this rank's master covers (param dtype)
  void rebuild_working(Unit& x); // after the master changed: working <- bf16(master) on the owned part (bf16; f32
                                 // or no master: the owned part is already it), then the all-gather at stages 1-2
  TensorView pview(const void* p, int64_t n) const;  // [n] view in param dtype
  int64_t owned_numel(const Unit& x) const;
  std::vector<DecaySegment> decay_segments(const UnitSpec& s, int64_t begin, int64_t count) const;
  TensorView flat(const float* p, int64_t n) const;  // [n] view in the backend's memory
  Buffer zeroed(int64_t numel, MemCategory cat);
  Buffer zeroed_param(int64_t numel);  // [numel] in param dtype (Params), zeroed
  void zero(Buffer& b);
  void all_reduce_scalar(float& v);
  // The reduction's input for x's fp32 gradient [padded]: the gradient itself (f32), or (bf16) its RNE cast into the
  // staging, which is returned.
  TensorView reduce_send(Unit& x);
  // Where a reduce-scatter whose fp32 result belongs in landing [n] receives: landing itself, or the bf16 staging.
  TensorView reduce_recv(float* landing, int64_t n);
  // After the reduction: its fp32 result into dst [reduced.numel()] (bf16: widened exactly; f32: it is already there).
  void land(const TensorView& reduced, float* dst);
  void finish_reduce();    // complete the outstanding overlapped reduce-scatter, if any
  void drop_prefetches();  // complete and free gathers that were started but never acquired

  Buffer scalar_;  // device staging for the norm's all-reduce
  Backend& be_;
  std::vector<Unit> units_;
  Buffer scratch_;  // [max shard] reduce-scatter landing zone (stages 2-3); two halves when overlapping
  Buffer staging_;  // reduce dtype bf16: [max padded] the cast gradient, + [max shard] the result at stages 1-3
  int64_t max_shard_ = 0, max_padded_ = 0;
  bool overlap_ = false;
  int slot_ = 0;                        // half of scratch_ the outstanding reduce-scatter lands in
  int rs_unit_ = -1;                    // unit whose reduce-scatter is outstanding, -1 = none
  Communicator::Ticket rs_ticket_ = 0;
  Communicator& comm_;
  int stage_;
  AdamWParams hp_;
  bool trainable_ = true;
  bool keep_master_ = true;
  DType param_dtype_ = DType::F32;
  DType reduce_dtype_ = DType::F32;
  int64_t t_ = 0;
};

}  // namespace cgrpo
