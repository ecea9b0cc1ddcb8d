#include "cgrpo/shard/zero_engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cgrpo/backend/cpu_backend.h"
#include "cgrpo/core/error.h"

namespace cgrpo {

namespace {
int64_t unit_numel_of(const UnitSpec& s) {
  int64_t n = 0;
  for (const TensorSpec& t : s.tensors) n += t.numel;
  return n;
}
int64_t round_up(int64_t n, int64_t w) { return (n + w - 1) / w * w; }
}  // namespace

TensorView ZeroEngine::flat(const float* p, int64_t n) const {
  return TensorView(const_cast<float*>(p), DType::F32, {n}, be_.device());
}
Buffer ZeroEngine::zeroed(int64_t numel, MemCategory cat) {
  Buffer b = be_.alloc(size_t(std::max<int64_t>(numel, 1) * 4), cat);
  be_.zero(flat(b.as<float>(), std::max<int64_t>(numel, 1)));
  return b;
}
TensorView ZeroEngine::pview(const void* p, int64_t n) const {
  return TensorView(const_cast<void*>(p), param_dtype_, {n}, be_.device());
}
Buffer ZeroEngine::zeroed_param(int64_t numel) {
  if (param_dtype_ == DType::F32) return zeroed(numel, MemCategory::Params);
  // zeroed as fp32 words (Backend::zero is fp32): round the bytes up to a multiple of 4
  const int64_t bytes = std::max<int64_t>(numel, 1) * int64_t(dtype_size(param_dtype_));
  const int64_t words = (bytes + 3) / 4;
  Buffer b = be_.alloc(size_t(words * 4), MemCategory::Params);
  be_.zero(flat(b.as<float>(), words));
  return b;
}
void ZeroEngine::zero(Buffer& b) {
  if (!b.empty()) be_.zero(flat(b.as<float>(), int64_t(b.bytes() / 4)));
}

ZeroPlan plan_zero(const std::vector<UnitSpec>& units, int W, int stage, int pb, int rb,
                   const std::vector<int>& gathered_once, bool overlap) {
  CGRPO_CHECK(stage >= 0 && stage <= 3, "ZeRO stage ", stage);
  ZeroPlan p;
  p.stage = stage;
  p.world = W;
  for (const UnitSpec& u : units) {
    const int64_t n = unit_numel_of(u);
    p.params_numel += n;
    p.padded_numel += round_up(n, W);
    p.max_unit_padded = std::max(p.max_unit_padded, round_up(n, W));
  }
  const int64_t psi = p.padded_numel, shard = psi / W;
  p.params_bytes = (stage == 3 ? shard : psi) * pb;
  p.gathered_bytes = stage == 3 ? p.max_unit_padded * pb : 0;
  const int64_t max_shard = p.max_unit_padded / W;
  p.grads_bytes = (stage == 0 ? psi : stage == 1 ? psi + shard : shard + p.max_unit_padded) * 4;  // always fp32
  p.master_bytes = pb == 4 ? 0 : (stage == 0 ? psi : shard) * 4;
  p.moments_bytes = (stage == 0 ? psi : shard) * 8;
  p.scratch_bytes = stage >= 2 ? max_shard * 4 : 0;
  p.staging_bytes = rb == 4 ? 0 : (p.max_unit_padded + (stage >= 1 ? max_shard : 0)) * rb;
  if (overlap) {
    if (stage >= 2 && rb == 4) p.grads_bytes += p.max_unit_padded * 4;  // the outstanding reduce-scatter's input
    p.scratch_bytes *= 2;
    p.gathered_bytes *= 2;
  }
  // per rank: (W-1) blocks of S elements per collective leg (direct exchange; Communicator accounting)
  const int64_t leg = (W - 1) * shard;
  p.sent_bytes_per_step = stage == 0 ? 2 * leg * rb : stage == 3 ? 2 * leg * pb + leg * rb : leg * rb + leg * pb;
  if (stage == 3)
    for (int u : gathered_once) p.sent_bytes_per_step -= (W - 1) * (round_up(unit_numel_of(units[size_t(u)]), W) / W) * pb;
  return p;
}

ZeroEngine::ZeroEngine(std::vector<UnitSpec> units, Communicator& comm, int stage, AdamWParams hp, bool trainable,
                       Backend* backend, DType param_dtype, DType reduce_dtype, bool keep_master)
    : be_(backend ? *backend : host_backend()), comm_(comm), stage_(stage), hp_(hp), trainable_(trainable),
      keep_master_(keep_master), param_dtype_(param_dtype), reduce_dtype_(reduce_dtype) {
  CGRPO_CHECK(stage >= 0 && stage <= 3, "ZeRO stage must be 0..3, got ", stage,
              hint("set parallel.zero_stage to 0, 1, 2, 3 or an FSDP name"));
  CGRPO_CHECK(param_dtype == DType::F32 || param_dtype == DType::BF16, "ZeroEngine: param dtype ",
              dtype_name(param_dtype), " is not supported (f32 or bf16 with fp32 master weights)",
              hint("set parallel.param_dtype = f32 or bf16"));
  CGRPO_CHECK(reduce_dtype == DType::F32 || reduce_dtype == DType::BF16, "ZeroEngine: reduce dtype ",
              dtype_name(reduce_dtype), " is not supported (f32 or bf16; gradients stay fp32)",
              hint("set parallel.reduce_dtype = f32 or bf16"));
  CGRPO_CHECK(keep_master || !trainable, "ZeroEngine: a trainable engine keeps its fp32 master (AdamW updates it)");
  const int W = comm.world_size(), r = comm.rank();
  units_.resize(units.size());
  int64_t max_shard = 0, max_padded = 0;
  for (size_t i = 0; i < units.size(); ++i) {
    Unit& x = units_[i];
    x.spec = std::move(units[i]);
    x.numel = unit_numel_of(x.spec);
    CGRPO_CHECK(x.numel > 0, "unit ", x.spec.name, " has no parameters");
    x.padded = round_up(x.numel, W);
    const int64_t S = x.padded / W;
    x.params = zeroed_param(stage == 3 ? S : x.padded);
    if (has_master()) x.master = zeroed(stage == 0 ? x.padded : S, MemCategory::Master);
    if (!trainable) continue;
    if (stage <= 1) x.grads = zeroed(x.padded, MemCategory::Grads);
    if (stage >= 1) x.grad_shard = zeroed(S, MemCategory::Grads);
    const int64_t owned = stage == 0 ? x.padded : S;
    x.m = zeroed(owned, MemCategory::Moments);
    x.v = zeroed(owned, MemCategory::Moments);
    x.decay = decay_segments(x.spec, stage == 0 ? 0 : r * S, owned);
    max_shard = std::max(max_shard, S);
    max_padded = std::max(max_padded, x.padded);
  }
  max_shard_ = max_shard;
  max_padded_ = max_padded;
  if (trainable && reduce_dtype_ != DType::F32)
    staging_ = be_.alloc(size_t(max_padded + (stage >= 1 ? max_shard : 0)) * dtype_size(reduce_dtype_),
                         MemCategory::Workspace);
  set_overlap(comm.overlaps());
}

std::vector<DecaySegment> ZeroEngine::decay_segments(const UnitSpec& s, int64_t begin, int64_t count) const {
  std::vector<DecaySegment> out;
  auto push = [&](int64_t lo, int64_t hi, bool decay) {  // [lo, hi) in unit coordinates
    lo = std::max(lo, begin);
    hi = std::min(hi, begin + count);
    if (hi <= lo) return;
    if (!out.empty() && out.back().decay == decay)
      out.back().count += hi - lo;
    else
      out.push_back({lo - begin, hi - lo, decay});
  };
  int64_t off = 0;
  for (const TensorSpec& t : s.tensors) {
    push(off, off + t.numel, t.decay);
    off += t.numel;
  }
  push(off, begin + count, false);  // padding
  return out;
}

int64_t ZeroEngine::total_numel() const {
  int64_t n = 0;
  for (const Unit& x : units_) n += x.numel;
  return n;
}
int64_t ZeroEngine::total_padded() const {
  int64_t n = 0;
  for (const Unit& x : units_) n += x.padded;
  return n;
}

void ZeroEngine::load_unit(int u, const float* full) { load_unit_range(u, full + load_range(u).offset); }

ShardRange ZeroEngine::load_range(int u) const {
  const Unit& x = units_[u];
  // bf16 at stages 1-2: the working copy is the full unit (below)
  if (param_dtype_ != DType::F32 && (stage_ == 1 || stage_ == 2)) return {0, x.numel};
  const ShardRange r = param_range(u);  // f32: the whole unit or the stage-3 shard; bf16: the master's range
  return {r.offset, std::max<int64_t>(0, std::min(r.offset + r.count, x.numel) - r.offset)};
}

void ZeroEngine::load_unit_range(int u, const float* values) {
  Unit& x = units_[u];
  // fp32 values of this rank's range of the master (f32: the parameters themselves); padding stays exactly zero
  const ShardRange r = param_range(u), in = load_range(u);
  const int64_t n = std::max<int64_t>(0, std::min(r.offset + r.count, x.numel) - r.offset);
  if (param_dtype_ == DType::F32 || has_master()) {
    Buffer& master = param_dtype_ == DType::F32 ? x.params : x.master;
    zero(master);
    if (n > 0) be_.upload(values + (r.offset - in.offset), master.data(), size_t(n) * 4);
    if (param_dtype_ == DType::F32) return;
    // bf16: the working copy from the same fp32 values
    if (stage_ == 0 || stage_ == 3) {  // the working copy covers exactly the master's range
      be_.cast(flat(x.master.as<float>(), r.count), pview(x.params.data(), r.count));
      return;
    }
  } else if (stage_ == 0 || stage_ == 3) {  // no master: the working copy from a transient fp32 copy of its range
    Buffer tmp = zeroed(r.count, MemCategory::Workspace);
    if (n > 0) be_.upload(values + (r.offset - in.offset), tmp.data(), size_t(n) * 4);
    be_.cast(flat(tmp.as<float>(), r.count), pview(x.params.data(), r.count));
    be_.synchronize();  // tmp is freed at scope exit
    return;
  }
  // stages 1-2: the working copy is the full unit; cast it from a transient fp32 copy (no communication)
  Buffer tmp = zeroed(x.padded, MemCategory::Workspace);
  be_.upload(values, tmp.data(), size_t(x.numel) * 4);
  be_.cast(flat(tmp.as<float>(), x.padded), pview(x.params.data(), x.padded));
  be_.synchronize();  // tmp is freed at scope exit
}

void ZeroEngine::read_unit(int u, float* full) {
  Unit& x = units_[u];
  if (param_dtype_ == DType::F32) {
    acquire(u);
    be_.download(params(u), full, size_t(x.numel) * 4);
    release(u);
    return;
  }
  if (!has_master()) {  // the bf16 working copy is the parameters: widen it (exact)
    std::vector<uint16_t> bits(size_t(x.numel));
    acquire(u);
    be_.download(param_data(u), bits.data(), bits.size() * 2);
    release(u);
    for (size_t i = 0; i < bits.size(); ++i) full[i] = bf16_to_f32(bits[i]);
    return;
  }
  if (stage_ == 0) {  // the master is the full unit
    be_.download(x.master.data(), full, size_t(x.numel) * 4);
    return;
  }
  Buffer tmp = be_.alloc(size_t(x.padded * 4), MemCategory::Workspace);
  comm_.all_gather(flat(x.master.as<float>(), x.padded / comm_.world_size()), flat(tmp.as<float>(), x.padded));
  be_.download(tmp.data(), full, size_t(x.numel) * 4);
}

ShardRange ZeroEngine::shard_of(int u) const {
  const int64_t S = units_[u].padded / comm_.world_size();
  return {comm_.rank() * S, S};
}
ShardRange ZeroEngine::param_range(int u) const {
  if (param_dtype_ != DType::F32) return moment_range(u);  // param_storage is the master
  return stage_ == 3 ? shard_of(u) : ShardRange{0, units_[u].padded};
}
ShardRange ZeroEngine::moment_range(int u) const { return stage_ == 0 ? ShardRange{0, units_[u].padded} : shard_of(u); }

int64_t ZeroEngine::stored_index(int u, int64_t lo, int64_t n, const char* what) const {
  const ShardRange r = param_range(u);
  CGRPO_CHECK(n >= 0 && lo >= r.offset && lo + n <= r.offset + r.count, what, ": [", lo, ", ", lo + n,
              ") is outside unit ", units_[u].spec.name, "'s stored range [", r.offset, ", ", r.offset + r.count, ")");
  return lo - r.offset;
}

void ZeroEngine::download_params(int u, int64_t lo, int64_t n, float* host) {
  const int64_t at = stored_index(u, lo, n, "download_params");
  if (n == 0) return;
  if (const float* p = param_storage(u)) return be_.download(p + at, host, size_t(n) * 4);
  std::vector<uint16_t> bits(static_cast<size_t>(n));  // no master: the owned part of the bf16 working copy, widened
  be_.download(static_cast<const uint16_t*>(owned_work(units_[u])) + at, bits.data(), size_t(n) * 2);
  for (int64_t i = 0; i < n; ++i) host[i] = bf16_to_f32(bits[size_t(i)]);
}

void ZeroEngine::upload_params(int u, int64_t lo, int64_t n, const float* host) {
  const int64_t at = stored_index(u, lo, n, "upload_params");
  if (n == 0) return;
  if (float* p = param_storage(u)) return be_.upload(host, p + at, size_t(n) * 4);
  std::vector<uint16_t> bits(static_cast<size_t>(n));  // no master: rounded into the owned part of the bf16 working copy
  for (int64_t i = 0; i < n; ++i) bits[size_t(i)] = f32_to_bf16(host[i]);
  be_.upload(bits.data(), static_cast<uint16_t*>(owned_work(units_[u])) + at, size_t(n) * 2);
}

void ZeroEngine::acquire(int u) {
  Unit& x = units_[u];
  if (stage_ < 3) return;
  if (x.acquired++ > 0) return;
  if (x.prefetched) {  // started by prefetch(u): complete it
    comm_.wait(x.gather_ticket);
    x.prefetched = false;
    return;
  }
  const int64_t S = x.padded / comm_.world_size();
  x.gathered = be_.alloc(size_t(x.padded) * dtype_size(param_dtype_), MemCategory::Params);
  comm_.all_gather(pview(x.params.data(), S), pview(x.gathered.data(), x.padded));
}

void ZeroEngine::prefetch(int u) {
  if (stage_ < 3 || !overlap_ || u < 0 || u >= num_units()) return;
  Unit& x = units_[u];
  if (x.acquired > 0 || x.prefetched) return;
  const int64_t S = x.padded / comm_.world_size();
  x.gathered = be_.alloc(size_t(x.padded) * dtype_size(param_dtype_), MemCategory::Params);
  x.gather_ticket = comm_.start_all_gather(pview(x.params.data(), S), pview(x.gathered.data(), x.padded));
  x.prefetched = true;
}

void ZeroEngine::drop_prefetches() {
  for (Unit& x : units_)
    if (x.prefetched) {
      comm_.wait(x.gather_ticket);
      x.prefetched = false;
      x.gathered.reset();
    }
}

void ZeroEngine::set_overlap(bool on) {
  finish_reduce();
  drop_prefetches();
  overlap_ = on;
  if (stage_ >= 2 && trainable_) scratch_ = zeroed(max_shard_ * (overlap_ ? 2 : 1), MemCategory::Workspace);
}

const void* ZeroEngine::param_data(int u) const {
  const Unit& x = units_[u];
  if (stage_ < 3) return x.params.data();
  CGRPO_CHECK(x.acquired > 0, "unit ", x.spec.name, " used while not acquired (ZeRO-3)");
  return x.gathered.data();
}

const float* ZeroEngine::params(int u) const {
  CGRPO_CHECK(param_dtype_ == DType::F32, "ZeroEngine::params(", units_[u].spec.name, "): the working parameters are ",
              dtype_name(param_dtype_), ", not fp32 (parallel.param_dtype = ", dtype_name(param_dtype_), ")",
              hint("read them with param_data(u) in their dtype, or the fp32 master values with read_unit(u)"));
  return static_cast<const float*>(param_data(u));
}

void ZeroEngine::release(int u) {
  Unit& x = units_[u];
  if (stage_ < 3) return;
  CGRPO_CHECK(x.acquired > 0, "unit ", x.spec.name, " released more often than acquired");
  if (--x.acquired == 0) x.gathered.reset();
}

float* ZeroEngine::grads(int u) {
  Unit& x = units_[u];
  CGRPO_CHECK(trainable_, "gradients requested from a frozen engine (unit ", x.spec.name, ")");
  if (x.grads.empty()) x.grads = zeroed(x.padded, MemCategory::Grads);
  return x.grads.as<float>();
}

void ZeroEngine::reduce_grads(int u) {
  Unit& x = units_[u];
  if (stage_ < 2) return;
  CGRPO_CHECK(!x.grads.empty(), "reduce_grads(", x.spec.name, ") without gradients");
  const int64_t S = x.padded / comm_.world_size();
  // reduce into the workspace, then accumulate: the shard sums over micro-batches
  if (!overlap_) {
    float* tmp = scratch_.as<float>();
    const TensorView out = reduce_recv(tmp, S);
    comm_.reduce_scatter(reduce_send(x), out);
    land(out, tmp);
    be_.axpby(S, 1.0f, tmp, 1.0f, x.grad_shard.as<float>());
    x.grads.reset();
    return;
  }
  // Overlapped: start unit u's reduce-scatter into the free half of the workspace and finish the previous
  // unit's (accumulate, free its full gradient), so u's collective runs during the next unit's backward.
  finish_reduce();
  slot_ ^= 1;
  float* tmp = scratch_.as<float>() + slot_ * max_shard_;
  rs_ticket_ = comm_.start_reduce_scatter(reduce_send(x), reduce_recv(tmp, S));
  if (reduce_dtype_ != DType::F32) x.grads.reset();  // the collective reads its bf16 copy (stream-ordered free)
  rs_unit_ = u;
}

void ZeroEngine::finish_reduce() {
  if (rs_unit_ < 0) return;
  Unit& x = units_[rs_unit_];
  comm_.wait(rs_ticket_);
  const int64_t S = x.padded / comm_.world_size();
  float* tmp = scratch_.as<float>() + slot_ * max_shard_;
  land(reduce_recv(tmp, S), tmp);
  be_.axpby(S, 1.0f, tmp, 1.0f, x.grad_shard.as<float>());
  x.grads.reset();  // stream-ordered after the wait on a device
  rs_unit_ = -1;
}

int64_t ZeroEngine::owned_numel(const Unit& x) const { return stage_ == 0 ? x.padded : x.padded / comm_.world_size(); }

void* ZeroEngine::owned_work(Unit& x) {
  if (stage_ == 0 || stage_ == 3) return x.params.data();
  return x.params.as<char>() + size_t(comm_.rank() * (x.padded / comm_.world_size())) * dtype_size(param_dtype_);
}

// f32: the working parameters are the master; bf16: the separate fp32 master
float* ZeroEngine::owned_master(Unit& x) {
  return static_cast<float*>(param_dtype_ == DType::F32 ? owned_work(x) : x.master.data());
}

void ZeroEngine::rebuild_working(Unit& x) {
  const int64_t n = owned_numel(x);
  if (has_master()) be_.cast(flat(x.master.as<float>(), n), pview(owned_work(x), n));
  if (stage_ == 1 || stage_ == 2) comm_.all_gather(pview(owned_work(x), n), pview(x.params.data(), x.padded));
}

void ZeroEngine::params_loaded() {
  if (param_dtype_ == DType::F32) return;
  finish_reduce();
  drop_prefetches();
  for (Unit& x : units_) rebuild_working(x);
}

double ZeroEngine::step(double lr, double max_norm) {
  CGRPO_CHECK(trainable_, "step() on a frozen engine");
  finish_reduce();
  drop_prefetches();
  const int W = comm_.world_size();
  // 1. finish the reduction
  for (Unit& x : units_) {
    if (stage_ == 0) {
      const TensorView g = reduce_send(x);
      comm_.all_reduce(g);
      land(g, x.grads.as<float>());
    } else if (stage_ == 1) {
      const TensorView out = reduce_recv(x.grad_shard.as<float>(), x.padded / W);
      comm_.reduce_scatter(reduce_send(x), out);
      land(out, x.grad_shard.as<float>());
    } else {
      CGRPO_CHECK(x.grads.empty(), "unit ", x.spec.name, " has gradients that were never reduced",
                  hint("call reduce_grads(u) after each unit's backward"));
    }
  }
  // 2. global gradient norm, computed identically at every stage: per shard q a partial sum of squares
  //    (double, then float), summed over q in rank order in float. Stage 0 holds every shard's gradient and
  //    sums the partials locally; stages 1-3 all-reduce them (the communicator also sums in rank order).
  //    Same inputs, same bits, whatever the stage.
  //    The per-unit sums are queued together and read back once (Backend::sumsq_many), then added in unit order.
  std::vector<float> partial(size_t(stage_ == 0 ? W : 1), 0.0f);
  std::vector<const float*> xs;
  std::vector<int64_t> ns;
  for (size_t q = 0; q < partial.size(); ++q)
    for (Unit& x : units_) {
      const int64_t S = x.padded / W;
      xs.push_back(stage_ == 0 ? x.grads.as<float>() + int64_t(q) * S : x.grad_shard.as<float>());
      ns.push_back(S);
    }
  std::vector<double> sums(xs.size());
  be_.sumsq_many(xs.data(), ns.data(), int64_t(xs.size()), sums.data());
  for (size_t q = 0, k = 0; q < partial.size(); ++q) {
    double acc = 0;
    for (size_t u = 0; u < units_.size(); ++u) acc += sums[k++];
    partial[q] = static_cast<float>(acc);
  }
  float total = partial[0];
  if (stage_ == 0)
    for (int q = 1; q < W; ++q) total += partial[size_t(q)];
  else
    all_reduce_scalar(total);
  const double norm = std::sqrt(double(total));
  // torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), applied only when < 1
  float scale = 1.0f;
  if (max_norm > 0 && norm > 0) scale = static_cast<float>(std::min(1.0, max_norm / (norm + 1e-6)));
  // 3. AdamW on what this rank owns
  ++t_;
  for (Unit& x : units_) {
    const float* g = stage_ == 0 ? x.grads.as<float>() : x.grad_shard.as<float>();
    be_.adamw(owned_master(x), g, x.m.as<float>(), x.v.as<float>(), owned_numel(x), x.decay, lr, t_, hp_, scale);
  }
  // 4. re-gather full params (stages 1-2; bf16: cast the master into the working copy first) and zero the
  //    gradients
  for (Unit& x : units_) {
    rebuild_working(x);
    zero(x.grads);
    zero(x.grad_shard);
  }
  return norm;
}

TensorView ZeroEngine::reduce_send(Unit& x) {
  const TensorView g = flat(x.grads.as<float>(), x.padded);
  if (reduce_dtype_ == DType::F32) return g;
  const TensorView staged(staging_.data(), reduce_dtype_, {x.padded}, be_.device());
  be_.cast(g, staged);
  return staged;
}

TensorView ZeroEngine::reduce_recv(float* landing, int64_t n) {
  if (reduce_dtype_ == DType::F32) return flat(landing, n);
  return TensorView(staging_.as<char>() + size_t(max_padded_) * dtype_size(reduce_dtype_), reduce_dtype_, {n},
                    be_.device());
}

void ZeroEngine::land(const TensorView& reduced, float* dst) {
  if (reduced.data != dst) be_.cast(reduced, flat(dst, reduced.numel()));
}

// The norm's scalar all-reduce goes through the communicator's memory: device memory for NCCL.
void ZeroEngine::all_reduce_scalar(float& v) {
  if (be_.device() == Device::CPU) {
    comm_.all_reduce(flat(&v, 1));
    return;
  }
  if (scalar_.empty()) scalar_ = be_.alloc(4, MemCategory::Workspace);
  be_.upload(&v, scalar_.data(), 4);
  comm_.all_reduce(flat(scalar_.as<float>(), 1));
  be_.download(scalar_.data(), &v, 4);
}

void ZeroEngine::reset_optimizer() {
  for (Unit& x : units_) {
    zero(x.m);
    zero(x.v);
  }
  t_ = 0;
}

void ZeroEngine::mix_from(const ZeroEngine& src, double alpha) {
  CGRPO_CHECK(src.units_.size() == units_.size() && src.comm_.world_size() == comm_.world_size(),
              "mix_from: engines differ in layout");
  CGRPO_CHECK(src.stage_ == stage_ || stage_ == 3, "mix_from: a stage-", stage_, " engine cannot mix from a stage-",
              src.stage_, " one (same stage, or this one fully sharded)");
  CGRPO_CHECK(src.param_dtype_ == param_dtype_, "mix_from: param dtypes differ (", dtype_name(src.param_dtype_),
              " into ", dtype_name(param_dtype_), ")");
  CGRPO_CHECK(src.param_dtype_ == DType::F32 || src.has_master(), "mix_from: the source has no fp32 master");
  const float a = static_cast<float>(alpha), b = static_cast<float>(1.0 - alpha);
  Buffer tmp;  // no master: [largest owned range] fp32 of the working copy, mixed, then rounded back
  for (size_t u = 0; u < units_.size(); ++u) {
    Unit& x = units_[u];
    CGRPO_CHECK(x.padded == src.units_[u].padded, "mix_from: unit ", x.spec.name, " differs");
    // the fp32 values both hold over this engine's range (f32 params: [padded] at stages 0-2, else the shard; bf16:
    // the moment range), which the source's covers (same stage, or this one's shard)
    const ShardRange r = param_range(int(u)), s = src.param_range(int(u));
    const float* from = src.param_storage(int(u)) + (r.offset - s.offset);
    if (float* own = param_storage(int(u))) {
      be_.axpby(r.count, a, from, b, own);
      continue;
    }
    if (tmp.bytes() < size_t(r.count) * 4) tmp = be_.alloc(size_t(r.count) * 4, MemCategory::Workspace);
    be_.cast(pview(owned_work(x), r.count), flat(tmp.as<float>(), r.count));
    be_.axpby(r.count, a, from, b, tmp.as<float>());
    be_.cast(flat(tmp.as<float>(), r.count), pview(owned_work(x), r.count));
  }
  be_.synchronize();  // tmp is freed at scope exit
  params_loaded();  // bf16: rebuild the working copy (collective at stages 1-2); f32: no-op
}

}  // namespace cgrpo
