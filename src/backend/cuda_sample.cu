// CudaBackend::sample_rows: spec §2.3 sample_tokens on the device, one thread block per row. The algorithm is
// sel::sample_row (backend/sample_row.h); this file is its executor: the whole-row passes of one block of
// kSampleThreads threads, each reduced in a fixed order (so results are deterministic run to run and equal to
// the host emulation in tests/common/sample_emulation.h, which simulates the same partition and order).
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <string>
#include <vector>

#include "cgrpo/backend/cpu_backend.h"
#include "cgrpo/backend/cuda_backend.h"
#include "cgrpo/backend/sample_row.h"
#include "cgrpo/core/log_warning.h"
#include "cuda_check.h"

namespace cgrpo {

namespace {

constexpr int NT = sel::kSampleThreads;
constexpr int NW = NT / 32;
constexpr int NB = sel::kRadixBuckets;
constexpr unsigned kFull = 0xffffffffu;
static_assert(NT % 32 == 0 && NW <= 32, "sample block: whole warps, at most 32");
// dynamic shared memory: per-thread histogram columns, mass [NB][NT] double then count [NB][NT] uint32
constexpr size_t kColsBytes = size_t(NB) * NT * (sizeof(double) + sizeof(uint32_t));
static_assert(size_t(NT) * sizeof(double) <= kColsBytes, "search()'s scan reuses the columns");

struct SampleSmem {
  long long iscan[NT];  // exclusive_scan
  double red_a[NW], red_b[NW];
  float red_f[NW];
  int32_t red_i[NW];
  unsigned long long red_n[NW];
  sel::RadixHist hist;
  int32_t cross, last, result;
};

// lane 0 gets ((v0 + v16) + (v8 + v24)) + ...: a fixed tree
__device__ double warp_sum_f64(double v) {
  for (int o = 16; o > 0; o >>= 1) v = sel::dadd(v, __shfl_down_sync(kFull, v, o));
  return v;
}
__device__ unsigned long long warp_sum_u64(unsigned long long v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(kFull, v, o);
  return v;
}
__device__ uint32_t warp_sum_u32(uint32_t v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(kFull, v, o);
  return v;
}
__device__ float warp_max_f32(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(kFull, v, o));
  return v;
}
// (value desc, id asc): does (b, j) beat (a, i)? NaN never wins (never stored).
__device__ bool beats(float b, int32_t j, float a, int32_t i) { return b > a || (b == a && j < i); }

// The passes of sel::sample_row over one row, run by all NT threads of the block together. Every pass starts
// with a barrier (the previous pass's readers of the shared scratch are done) and returns the same value to
// every thread.
class BlockExec {
 public:
  // qs: this block's quickselect scratch, 4 V + 2 ints (nullptr when the draw never walks by rank)
  __device__ BlockExec(float* z, int32_t V, double* cols, SampleSmem& sm, int32_t* qs)
      : z_(z), V_(V), hm_(cols), hc_(reinterpret_cast<uint32_t*>(cols + NB * NT)), sm_(sm),
        arr_(qs), tmp_(qs ? qs + V : nullptr), p0_(qs ? qs + 2 * int64_t(V) : nullptr),
        p1_(qs ? qs + 3 * int64_t(V) + 1 : nullptr), tid_(int32_t(threadIdx.x)), lane_(int32_t(threadIdx.x) & 31),
        warp_(int32_t(threadIdx.x) >> 5) {}

  __device__ sel::ArgMax temper_argmax(float temperature) {
    __syncthreads();
    float best = __int_as_float(int(0xff800000u));  // -inf
    int32_t bi = INT_MAX;
    int nan = 0;
    for (int32_t v = tid_; v < V_; v += NT) {
      float x = z_[v];
      if (temperature > 0.0f) {
        x = sel::div_rn(x, temperature);
        z_[v] = x;
      }
      if (sel::is_nan_f32(x)) {
        nan = 1;
      } else if (beats(x, v, best, bi)) {
        best = x;
        bi = v;
      }
    }
    for (int o = 16; o > 0; o >>= 1) {
      const float ob = __shfl_down_sync(kFull, best, o);
      const int32_t oi = __shfl_down_sync(kFull, bi, o);
      if (beats(ob, oi, best, bi)) best = ob, bi = oi;
    }
    if (lane_ == 0) sm_.red_f[warp_] = best, sm_.red_i[warp_] = bi;
    nan = __syncthreads_or(nan);
    best = sm_.red_f[0];
    bi = sm_.red_i[0];
    for (int w = 1; w < NW; ++w)
      if (beats(sm_.red_f[w], sm_.red_i[w], best, bi)) best = sm_.red_f[w], bi = sm_.red_i[w];
    return {best, bi == INT_MAX ? -1 : bi, nan != 0};
  }

  // the row statistics over every token, or (kept) over the tokens of rank key >= lo
  __device__ sel::RowStats stats(uint64_t lo, float m, int32_t amax, bool kept) {
    __syncthreads();
    double s = 0.0, ez = 0.0;
    float sec = 0.0f;
    unsigned long long n = 0;
    for (int32_t v = tid_; v < V_; v += NT) {
      const float zv = z_[v];
      if (kept && sel::rank_key(sel::float_key(zv), uint32_t(v)) < lo) continue;
      const float e = sel::add_stat_terms(zv, m, kept, s, ez);
      if (v != amax && e > sec) sec = e;
      ++n;
    }
    return reduce(s, ez, sec, n);
  }
  __device__ sel::RowStats all_stats(float m, int32_t amax) { return stats(0, m, amax, false); }
  __device__ sel::RowStats kept_stats(uint64_t lo, float m, int32_t amax) { return stats(lo, m, amax, true); }

  __device__ const sel::RadixHist& histogram(const sel::RadixSelect& rs, uint64_t lo, bool value_keys, bool with_mass,
                                             float m) {
    __syncthreads();
    for (int d = 0; d < NB; ++d) hm_[d * NT + tid_] = 0.0, hc_[d * NT + tid_] = 0u;  // this thread's column
    for (int32_t v = tid_; v < V_; v += NT) {
      const float zv = z_[v];
      const int d = rs.bucket_of(zv, uint32_t(v), lo, value_keys);
      if (d < 0) continue;
      hc_[d * NT + tid_] += 1u;
      if (with_mass) hm_[d * NT + tid_] = sel::dadd(hm_[d * NT + tid_], double(sel::exp_nonpos(sel::sub_rn(zv, m))));
    }
    __syncthreads();
    for (int b = warp_; b < NB; b += NW) {  // bucket b: lane l sums threads l, l + 32, ... in order, then the tree
      double ms = 0.0;
      uint32_t cs = 0;
      for (int i = 0; i < NW; ++i) {
        ms = sel::dadd(ms, hm_[b * NT + lane_ + 32 * i]);
        cs += hc_[b * NT + lane_ + 32 * i];
      }
      ms = warp_sum_f64(ms);
      cs = warp_sum_u32(cs);
      if (lane_ == 0) sm_.hist.mass[b] = ms, sm_.hist.count[b] = cs;
    }
    __syncthreads();
    return sm_.hist;
  }

  __device__ int32_t id_search(uint64_t lo, float m, double target, bool tie, uint32_t tie_key) {
    return search(nullptr, V_, lo, m, target, tie, tie_key);
  }
  __device__ int32_t list_search(int64_t count, uint64_t lo, float m, double target) {
    return search(arr_, int32_t(count), lo, m, target, false, 0u);
  }

  // --- the replay of TokenSampler's top-p quickselect (sel::sample_row, the closed form in sample_row.h)
  __device__ int64_t qs_init(float cut, int64_t rstar) {
    __syncthreads();
    int32_t b0, b1;
    chunk(V_, b0, b1);
    int64_t cnt = 0;
    for (int32_t v = b0; v < b1; ++v) cnt += z_[v] >= cut;
    int64_t total;
    const int64_t base = exclusive_scan(cnt, total);
    if (rstar < total) {
      int64_t k = base;
      for (int32_t v = b0; v < b1; ++v)
        if (z_[v] >= cut) arr_[k++] = v;
    } else {
      total = V_;
      for (int32_t v = tid_; v < V_; v += NT) arr_[v] = v;
    }
    return total;
  }

  __device__ uint64_t qs_pivot(int64_t lo, int64_t n) {
    __syncthreads();
    return key_of(arr_[lo + n / 2]);
  }

  __device__ int64_t qs_count(int64_t lo, int64_t n, uint64_t pivot) {
    __syncthreads();
    unsigned long long na = 0;
    for (int64_t s = tid_; s < n - 1; s += NT) na += key_of(arr_[lo + sel::qs_scan_pos(s, n)]) > pivot;
    na = warp_sum_u64(na);
    if (lane_ == 0) sm_.red_n[warp_] = na;
    __syncthreads();
    int64_t r = 0;
    for (int w = 0; w < NW; ++w) r += int64_t(sm_.red_n[w]);
    return r;
  }

  // tmp = the level's result (above in scan order, pivot, and when `right` the not-above at their slots), then
  // copied back to arr[lo, lo + n). Above: a contiguous-chunk compaction; not-above: path ends by pointer jumping
  // over phi (p0 <-> p1), ceil(log2(n)) rounds.
  __device__ void qs_partition(int64_t lo, int64_t n, uint64_t pivot, int64_t na, bool right) {
    __syncthreads();
    const int32_t me = int32_t(n - 1);
    const int32_t* a = arr_ + lo;
    int32_t s0, s1;
    chunk(me, s0, s1);
    int64_t cnt = 0;
    for (int32_t s = s0; s < s1; ++s) cnt += key_of(a[sel::qs_scan_pos(s, n)]) > pivot;
    int64_t total;
    int64_t k = exclusive_scan(cnt, total);
    for (int32_t s = s0; s < s1; ++s) {
      const int32_t id = a[sel::qs_scan_pos(s, n)];
      if (key_of(id) > pivot) {
        tmp_[k] = id;
        p1_[k + 1] = s;  // a_t, 1-based
        ++k;
      }
    }
    if (tid_ == 0) tmp_[na] = int32_t(sel::rank_key_id(pivot));
    if (right) {
      __syncthreads();
      for (int32_t t = 1 + tid_; t <= me; t += NT) p0_[t] = int32_t(sel::qs_phi(t, na, t <= na ? p1_[t] : 0, n));
      __syncthreads();
      int32_t *src = p0_, *dst = p1_;
      for (int64_t len = 1; len < me; len *= 2) {
        for (int32_t t = 1 + tid_; t <= me; t += NT) dst[t] = src[src[t]];
        __syncthreads();
        int32_t* w = src;
        src = dst;
        dst = w;
      }
      for (int32_t s = tid_; s < me; s += NT) {
        const int32_t id = a[sel::qs_scan_pos(s, n)];
        if (!(key_of(id) > pivot)) tmp_[sel::qs_na_slot(src[s + 1], na, n)] = id;
      }
    }
    __syncthreads();
    const int64_t copy = right ? n : na + 1;
    for (int64_t i = tid_; i < copy; i += NT) arr_[lo + i] = tmp_[i];
  }

  __device__ float logit(int32_t v) const { return z_[v]; }

 private:
  __device__ uint64_t key_of(int32_t v) const { return sel::rank_key(sel::float_key(z_[v]), uint32_t(v)); }

  // thread t's contiguous chunk [t c, (t + 1) c) of [0, count), c = ceil(count / NT)
  __device__ void chunk(int32_t count, int32_t& b0, int32_t& b1) const {
    const int64_t c = (int64_t(count) + NT - 1) / NT, s0 = int64_t(tid_) * c;
    b0 = int32_t(s0 < count ? s0 : count);
    b1 = int32_t(s0 + c < count ? s0 + c : count);
  }

  // exclusive prefix of v over threads in order; total of all (integers: any order is exact)
  __device__ int64_t exclusive_scan(int64_t v, int64_t& total) {
    long long* scan = sm_.iscan;
    scan[tid_] = v;
    __syncthreads();
    if (lane_ == 0) {
      long long acc = 0;
      for (int i = 0; i < 32; ++i) {
        const long long x = scan[tid_ + i];
        scan[tid_ + i] = acc;  // exclusive within the warp
        acc += x;
      }
      sm_.red_n[warp_] = static_cast<unsigned long long>(acc);
    }
    __syncthreads();
    int64_t off = 0, all = 0;
    for (int w = 0; w < NW; ++w) {
      if (w < warp_) off += int64_t(sm_.red_n[w]);
      all += int64_t(sm_.red_n[w]);
    }
    total = all;
    const int64_t r = off + scan[tid_];
    __syncthreads();  // scan and red_n free again
    return r;
  }

  // Over positions [0, count) (token ids, or arr[q] when list): thread t owns a contiguous chunk; its sum, an
  // inclusive scan of the NT sums (each warp's 32 in order by its lane 0, then the warps in order: a monotone
  // scan), and the first thread whose inclusive sum exceeds target walks its chunk. None: the last thread with
  // weight walks to its last weighted token.
  __device__ int32_t search(const int32_t* list, int32_t count, uint64_t lo, float m, double target, bool tie,
                            uint32_t tie_key) {
    __syncthreads();
    if (tid_ == 0) sm_.cross = INT_MAX, sm_.last = -1;
    int32_t b0, b1;
    chunk(count, b0, b1);
    double my = 0.0;
    for (int32_t q = b0; q < b1; ++q) {
      const double w = weight(list ? list[q] : q, lo, m, tie, tie_key);
      if (w > 0.0) my = sel::dadd(my, w);
    }
    double* scan = hm_;
    scan[tid_] = my;
    __syncthreads();
    if (lane_ == 0) {
      double acc = 0.0;
      for (int i = 0; i < 32; ++i) acc = sel::dadd(acc, scan[tid_ + i]), scan[tid_ + i] = acc;
      sm_.red_a[warp_] = acc;
    }
    __syncthreads();
    double off = 0.0;
    for (int w = 0; w < warp_; ++w) off = sel::dadd(off, sm_.red_a[w]);
    const double incl = sel::dadd(off, scan[tid_]);
    const double excl = lane_ == 0 ? off : sel::dadd(off, scan[tid_ - 1]);
    if (incl > target) atomicMin(&sm_.cross, tid_);
    if (my > 0.0) atomicMax(&sm_.last, tid_);
    __syncthreads();
    const bool crossed = sm_.cross != INT_MAX;
    const int32_t t = crossed ? sm_.cross : sm_.last;
    if (tid_ == t) {
      double acc = excl;
      int32_t last = -1, res = -1;
      for (int32_t q = b0; q < b1; ++q) {
        const int32_t v = list ? list[q] : q;
        const double w = weight(v, lo, m, tie, tie_key);
        if (!(w > 0.0)) continue;
        acc = sel::dadd(acc, w);
        last = v;
        if (crossed && target < acc) {
          res = v;
          break;
        }
      }
      sm_.result = res >= 0 ? res : last;
    }
    if (t < 0 && tid_ == 0) sm_.result = -1;
    __syncthreads();
    return sm_.result;
  }

  __device__ double weight(int32_t v, uint64_t lo, float m, bool tie, uint32_t tie_key) const {
    const float zv = z_[v];
    const uint32_t k = sel::float_key(zv);
    if (sel::rank_key(k, uint32_t(v)) < lo) return 0.0;
    if (tie) return k == tie_key ? 1.0 : 0.0;
    return double(sel::exp_nonpos(sel::sub_rn(zv, m)));
  }

  // per-thread partials -> warp trees -> warps in order; every thread returns the same
  __device__ sel::RowStats reduce(double s, double ez, float sec, unsigned long long n) {
    s = warp_sum_f64(s);
    ez = warp_sum_f64(ez);
    sec = warp_max_f32(sec);
    n = warp_sum_u64(n);
    if (lane_ == 0) sm_.red_a[warp_] = s, sm_.red_b[warp_] = ez, sm_.red_f[warp_] = sec, sm_.red_n[warp_] = n;
    __syncthreads();
    sel::RowStats r{0.0, 0.0, 0.0f, 0};
    for (int w = 0; w < NW; ++w) {
      r.sum = sel::dadd(r.sum, sm_.red_a[w]);
      r.ez = sel::dadd(r.ez, sm_.red_b[w]);
      r.second = fmaxf(r.second, sm_.red_f[w]);
      r.count += int64_t(sm_.red_n[w]);
    }
    return r;
  }

  float* z_;
  int32_t V_;
  double* hm_;
  uint32_t* hc_;
  SampleSmem& sm_;
  int32_t *arr_, *tmp_, *p0_, *p1_;
  int32_t tid_, lane_, warp_;
};

// Rows blockIdx.x, blockIdx.x + gridDim.x, ...; qs: gridDim.x slices of qs_stride ints (or nullptr).
__global__ void __launch_bounds__(NT, 1) sample_rows_kernel(float* logits, int64_t ld, int32_t R, int32_t V,
                                                         TokenSampling p, Confidence kind, const double* u,
                                                         int32_t* qs, int64_t qs_stride, sel::SampleRowResult* out) {
  extern __shared__ double cols[];
  __shared__ SampleSmem sm;
  int32_t* scratch = qs ? qs + int64_t(blockIdx.x) * qs_stride : nullptr;
  for (int32_t row = int32_t(blockIdx.x); row < R; row += int32_t(gridDim.x)) {
    BlockExec x(logits + int64_t(row) * ld, V, cols, sm, scratch);
    const sel::SampleRowResult r = sel::sample_row(x, V, p, kind, p.temperature > 0.0f ? u[row] : 0.0);
    if (threadIdx.x == 0) out[row] = r;
  }
}

}  // namespace

bool CudaBackend::sample_kernel_fits() const {
  if (sample_fits_ < 0) {
    cudaFuncAttributes fa{};
    CGRPO_CUDA(cudaFuncGetAttributes(&fa, sample_rows_kernel));
    int optin = 0;
    CGRPO_CUDA(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, ctx_.device()));
    sample_fits_ = fa.sharedSizeBytes + kColsBytes <= size_t(optin) ? 1 : 0;
    if (!sample_fits_)
      log_warning("sample_rows runs on the host: the sampler kernel needs " +
                  std::to_string(fa.sharedSizeBytes + kColsBytes) + " bytes of shared memory per block, device " +
                  std::to_string(ctx_.device()) + " allows " + std::to_string(optin));
  }
  return sample_fits_ == 1;
}

void CudaBackend::sample_rows(const TensorView& logits, const double* u, const TokenSampling& s, Confidence kind,
                              int32_t* tokens, float* confidence) {
  CGRPO_CHECK(logits.device == Device::CUDA, "CudaBackend::sample_rows needs device logits, got ",
              device_name(logits.device), " memory");
  CGRPO_CHECK(logits.ndim == 2, "sample_rows: logits ", logits.str(), " must be [R, V]");
  const int64_t R = logits.dim(0), V = logits.dim(1);
  const int64_t ld = row_stride(logits, R, V, "sample_rows: logits");
  CGRPO_CHECK(V >= 1 && V <= INT32_MAX, "sample_rows: vocabulary ", V, " outside [1, 2^31)");
  CGRPO_CHECK(R <= INT32_MAX, "sample_rows: ", R, " rows exceed one launch");
  if (R == 0) return;
  if (sample_impl_ == SampleImpl::Host || !sample_kernel_fits()) {  // the oracle on a host copy of the rows
    sample_host_.resize(size_t(R * V));
    CGRPO_CUDA(cudaMemcpy2DAsync(sample_host_.data(), size_t(V) * 4, logits.data, size_t(ld) * 4, size_t(V) * 4,
                                 size_t(R), cudaMemcpyDeviceToHost, static_cast<cudaStream_t>(ctx_.stream())));
    sync_and_check();
    host_backend().sample_rows(TensorView::of(sample_host_.data(), {R, V}), u, s, kind, tokens, confidence);
    return;
  }
  const bool draw = s.temperature > 0.0f;
  CGRPO_CHECK(!draw || u != nullptr, "sample_rows: temperature ", s.temperature, " needs the uniforms u");
  // A draw after a top-p that removed tokens replays the quickselect: 4 V + 2 ints per resident block, blocks
  // capped by the SM count and a 256 MiB budget (a block then runs several rows in turn).
  const bool replay = draw && s.top_p < 1.0f;
  const int64_t qs_stride = replay ? 4 * V + 2 : 0;
  int64_t blocks = R;
  if (replay) {
    int sms = 0;
    CGRPO_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, ctx_.device()));
    const int64_t budget = std::max<int64_t>(1, (int64_t(256) << 20) / (qs_stride * 4));
    blocks = std::max<int64_t>(1, std::min<int64_t>({R, int64_t(sms), budget}));
  }
  const size_t ubytes = size_t(R) * sizeof(double), obytes = size_t(R) * sizeof(sel::SampleRowResult);
  const size_t qbytes = size_t(blocks * qs_stride) * sizeof(int32_t);
  if (sample_io_.bytes() < ubytes + obytes + qbytes)
    sample_io_ = alloc(ubytes + obytes + qbytes, MemCategory::Workspace);
  char* io = static_cast<char*>(sample_io_.data());
  double* d_u = reinterpret_cast<double*>(io);
  auto* d_out = reinterpret_cast<sel::SampleRowResult*>(io + ubytes);
  int32_t* d_qs = replay ? reinterpret_cast<int32_t*>(io + ubytes + obytes) : nullptr;
  cudaStream_t stream = static_cast<cudaStream_t>(ctx_.stream());
  // pageable source: returns once staged; the download below orders the kernel after it anyway
  if (draw) CGRPO_CUDA(cudaMemcpyAsync(d_u, u, ubytes, cudaMemcpyHostToDevice, stream));
  CGRPO_CUDA(cudaFuncSetAttribute(sample_rows_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kColsBytes)));
  sample_rows_kernel<<<unsigned(blocks), NT, kColsBytes, stream>>>(static_cast<float*>(logits.data), ld, int32_t(R),
                                                                    int32_t(V), s, kind, d_u, d_qs, qs_stride, d_out);
  CGRPO_CUDA(cudaGetLastError());
  std::vector<sel::SampleRowResult> out(static_cast<size_t>(R));
  download(d_out, out.data(), obytes);
  for (int64_t r = 0; r < R; ++r) {
    const sel::SampleRowResult& o = out[size_t(r)];
    CGRPO_CHECK(o.status != sel::kSampleNaN, "token sampler: row ", r, " of ", R, " has NaN logits",
                hint("the model produced NaN logits"));
    CGRPO_CHECK(o.status != sel::kSampleNonFiniteMax, "token sampler: the largest logit is ", o.max_logit, " (row ",
                r, " of ", R, ")", hint("the model produced non-finite logits"));
    CGRPO_CHECK(o.status != sel::kSampleNonFiniteSum, "token sampler: softmax sum is not finite (row ", r, " of ",
                R, ")", hint("the model produced NaN logits"));
    CGRPO_CHECK(o.status == sel::kSampleOk && o.token >= 0 && o.token < V, "CudaBackend::sample_rows: row ", r,
                " gave token ", o.token, " with status ", o.status, " (internal error)");
    tokens[r] = o.token;
    confidence[r] = o.confidence;
  }
}

}  // namespace cgrpo
