// One row of spec §2.3 sample_tokens as a sequence of whole-row passes: the algorithm of the device path of
// Backend::sample_rows, written once over an executor X that runs the passes. The CUDA kernel's X is one thread
// block (every thread runs sample_row in lockstep; each pass returns the same values to all threads); the tests'
// X runs the same passes sequentially on the host in the same summation order (tests/common/sample_emulation.h),
// so the two give the same bits.
//
// Semantics are TokenSampler::sample (rollout/token_sampler.h), pass by pass:
//   1. temper (z /= T when T > 0, written back) and argmax m, lowest id on ties; NaN anywhere is an error.
//   2. e_v = exp_nonpos(z_v - m) (the CPU polynomial, same bits); S = sum e, EZ = sum fl(e (z - m)), second.
//   3. top-p (top_p < 1): the first rank (logit desc, id asc) whose cumulative mass exceeds top_p * S, found by
//      a mass radix select over the float keys (8 passes of 4 bits) and the position inside the tie group of
//      equal logits (tie_index, then an id-order search); kept = ranks up to it (a rank-key lower bound lo).
//   4. top-k (0 < top_k < kept): the k-th largest logit value among the kept by a count radix select over the
//      value keys; kept &= {z >= kth}. Both filters keep a prefix of the rank order, so kept = {rank_key >= lo}.
//   5. the draw (T > 0) walks the kept tokens in TokenSampler's order: by id when top-p removed nothing (an
//      id-order inverse-CDF search); otherwise in the order TokenSampler's top-p QUICKSELECT left them in, which is
//      neither rank nor id order. That arrangement is a function of the keys and of the crossing rank r* alone
//      (each level goes left / stops / goes right as r* is below / at / above the pivot's rank), so it is rebuilt
//      exactly: the same initial array (the ids with z >= m - 16 in id order when r* is among them, else all
//      ids), the same middle pivots, and each branchless-Lomuto level reproduced in closed form (qs_partition).
//   6. the confidence from the kept set's sums, as TokenSampler forms it.
// Sums are in double, in a fixed order of the executor's own (the CPU sums in its SIMD / quickselect order): a
// token can differ from TokenSampler's only when a cumulative sum lies within rounding (~1e-16 relative) of its
// target; see cuda_backend.h.
#pragma once

#include <cstdint>

#include "cgrpo/backend/sampling.h"
#include "cgrpo/backend/select_math.h"

namespace cgrpo::sel {

// Threads of the device block that runs one row (the reference executor simulates the same partition).
constexpr int kSampleThreads = 512;

enum SampleStatus : int32_t {
  kSampleOk = 0,
  kSampleNonFiniteMax = 1,  // the largest logit is +-inf (or every logit is NaN / -inf)
  kSampleNaN = 2,           // a NaN logit
  kSampleNonFiniteSum = 3,  // the softmax sum is not finite
  kSampleInternal = 4,      // no token found (cannot happen for finite logits)
};

struct SampleRowResult {
  int32_t token = 0;
  float confidence = 0.0f;
  int32_t status = kSampleOk;
  float max_logit = 0.0f;  // the (tempered) largest logit, for error messages
};

// What the executor's passes return (identical on every thread of a device block).
struct ArgMax {
  float m;       // the largest (tempered) logit
  int32_t amax;  // its lowest id; -1 when there is none (every logit NaN)
  bool nan;      // a NaN logit was seen
};
struct RowStats {
  double sum;     // sum e
  double ez;      // sum e (z - m): fl(e * (z - m)) per token (all tokens) or fma(e, z - m, acc) (kept tokens)
  float second;   // max e over tokens other than amax (0 if none)
  int64_t count;  // tokens summed
};
struct RadixHist {
  double mass[kRadixBuckets];
  uint32_t count[kRadixBuckets];
};

// Executor interface (see tests/common/sample_emulation.h for the reference, cuda_sample.cu for the device):
//   ArgMax temper_argmax(float temperature);
//   RowStats all_stats(float m, int32_t amax);                   // every token
//   RowStats kept_stats(uint64_t lo, float m, int32_t amax);     // tokens with rank_key >= lo
//   const RadixHist& histogram(const RadixSelect& s, uint64_t lo, bool value_keys, bool with_mass, float m);
//       tokens with rank_key >= lo whose key (value_key or float_key) matches s, by s.digit; mass = sum e
//   int32_t id_search(uint64_t lo, float m, double target, bool tie, uint32_t tie_key);
//       in id order over tokens with rank_key >= lo (and float_key == tie_key when tie) of weight w (e, or 1
//       when tie): the first token whose inclusive cumulative weight exceeds target; else the last with w > 0
//   float logit(int32_t v);                                       // the tempered logit
// and the replay of TokenSampler's top-p quickselect on an array arr of ids (the closed form below):
//   int64_t qs_init(float cut, int64_t rstar);   // arr = ids with z >= cut in id order if more than rstar, else
//                                                // 0..V-1; returns its length
//   uint64_t qs_pivot(int64_t lo, int64_t n);    // rank key of arr[lo + n / 2]
//   int64_t qs_count(int64_t lo, int64_t n, uint64_t pivot);  // tokens of the level ranked above the pivot
//   void qs_partition(int64_t lo, int64_t n, uint64_t pivot, int64_t na, bool right);
//       arr[lo, lo + n) as TokenSampler's level leaves it: the na above in order, the pivot, and (right) the rest
//   int32_t list_search(int64_t count, uint64_t lo, float m, double target);  // id_search over arr[0, count)

// One level of TokenSampler's top-p quickselect on arr[lo, lo + n) (pivot = the middle element, swapped with the
// last; branchless Lomuto "swap c[i] with c[g], g += above" over the n - 1 others; pivot swapped to g), in closed
// form. Scan order: element s (0 <= s < n - 1) is arr[lo + s], except s = n / 2 which is arr[lo + n - 1]. The
// above ones keep their order at [0, na); the pivot lands at na; a not-above element at scan index s ends where
// its path 1 + s -> phi(t) = a_t + 1 -> ... stops, a_t being the scan index of the t-th above element and phi(t)
// defined while t <= na and a_t + 1 <= n - 2 (an element at local position t is swapped onward at the first step
// whose g reaches t); a path stopping at na means the slot the pivot takes, so that element goes to n - 1.
// Scan index of element s, and the local end position of a path end e:
CGRPO_HD int64_t qs_scan_pos(int64_t s, int64_t n) { return (s == n / 2 && n / 2 < n - 1) ? n - 1 : s; }
CGRPO_HD int64_t qs_na_slot(int64_t end, int64_t na, int64_t n) { return end == na ? n - 1 : end; }
// phi for the path nodes t in [1, n - 1] (ends map to themselves); a_t = above_at[t] (1-based t <= na)
CGRPO_HD int64_t qs_phi(int64_t t, int64_t na, int64_t above_at_t, int64_t n) {
  return (t <= na && above_at_t + 1 <= n - 2) ? above_at_t + 1 : t;
}

struct RankCross {
  uint32_t key;         // float key of the tie group holding the crossing
  int64_t j;            // position of the crossing inside the group (id order)
  int64_t count_above;  // tokens ranked above the group
};

#ifdef __CUDACC__
// instantiated with a device-only executor in the kernel, a host one in tests
#pragma nv_exec_check_disable
#endif
template <class X>
CGRPO_HD RankCross rank_crossing(X& x, double target, uint64_t lo, float m) {
  RadixSelect s;
  while (!s.done()) {
    const RadixHist& h = x.histogram(s, lo, false, true, m);
    s.pick_mass(h.mass, h.count, target);
  }
  const float e = exp_nonpos(sub_rn(key_float(s.prefix), m));  // every token of the group has this mass
  return {s.prefix, tie_index(s.above, static_cast<double>(e), s.count, target), s.count_above};
}

#ifdef __CUDACC__
#pragma nv_exec_check_disable
#endif
template <class X>
CGRPO_HD SampleRowResult sample_row(X& x, int64_t V, const TokenSampling& p, Confidence kind, double u) {
  SampleRowResult out;
  const ArgMax a = x.temper_argmax(p.temperature);
  out.max_logit = a.m;
  if (a.nan) {
    out.status = kSampleNaN;
    return out;
  }
  if (a.amax < 0 || !finite_f32(a.m)) {
    out.status = kSampleNonFiniteMax;
    return out;
  }
  const float m = a.m;
  const RowStats all = x.all_stats(m, a.amax);
  if (!finite_f64(all.sum)) {
    out.status = kSampleNonFiniteSum;
    return out;
  }

  uint64_t lo = 0;  // kept = {rank_key >= lo}
  bool by_rank = false;
  int64_t nkeep = V;
  if (p.top_p < 1.0f) {
    const double target = dmul(static_cast<double>(p.top_p), all.sum);  // cum p > top_p <=> cum e > top_p S
    const RankCross c = rank_crossing(x, target, 0, m);
    nkeep = c.count_above + c.j + 1;
    if (nkeep < V) {
      by_rank = true;
      lo = rank_key(c.key, static_cast<uint32_t>(x.id_search(0, m, static_cast<double>(c.j), true, c.key)));
    } else {
      nkeep = V;
    }
  }
  bool filtered = by_rank;
  if (p.top_k > 0 && p.top_k < nkeep) {
    RadixSelect s;
    while (!s.done()) s.pick_count(x.histogram(s, lo, true, false, m).count, p.top_k);
    const uint64_t klo = rank_floor(value_key_floor(s.prefix));  // z >= kth, -0 == +0
    lo = lo > klo ? lo : klo;
    filtered = true;
  }
  RowStats kept = all;
  bool all_kept = true;
  if (filtered) {
    const RowStats k = x.kept_stats(lo, m, a.amax);
    all_kept = k.count == V;
    kept.sum = k.sum;  // TokenSampler: top-k always re-sums; top-p only when it removed tokens
    kept.count = k.count;
    if (!all_kept) {
      kept.ez = k.ez;
      kept.second = k.second;
    }
  }

  int32_t tok = a.amax;
  if (p.temperature > 0.0f) {
    const double target = dmul(u, kept.sum);
    if (by_rank) {  // replay the quickselect that left TokenSampler's kept tokens [0, r*] in their draw order
      const int64_t rstar = nkeep - 1;
      int64_t qlo = 0, n = x.qs_init(sub_rn(m, 16.0f), rstar);
      for (;;) {
        const uint64_t pivot = x.qs_pivot(qlo, n);
        const int64_t na = x.qs_count(qlo, n, pivot), g = qlo + na;
        x.qs_partition(qlo, n, pivot, na, rstar > g);
        if (rstar < g) {
          n = na;
        } else if (rstar == g) {
          break;
        } else {
          n = qlo + n - (g + 1);
          qlo = g + 1;
        }
      }
      tok = x.list_search(nkeep, lo, m, target);  // top-k (if any) drops tokens, order kept
    } else {
      tok = x.id_search(lo, m, target, false, 0u);
    }
  }
  if (tok < 0 || tok >= V) {
    out.status = kSampleInternal;
    return out;
  }
  out.token = tok;

  const double inv = 1.0 / kept.sum;
  switch (kind) {
    case Confidence::None:
      break;
    case Confidence::Prob:
      out.confidence = static_cast<float>(dmul(static_cast<double>(exp_nonpos(sub_rn(x.logit(tok), m))), inv));
      break;
    case Confidence::Margin:
      out.confidence = static_cast<float>(dmul(1.0 - static_cast<double>(kept.second), inv));
      break;
    case Confidence::NegEntropy:  // TokenSampler's expression as GCC contracts it: fma(1e-10, n, fma(ez, inv, -log S))
      out.confidence = static_cast<float>(fma_f64(1e-10, static_cast<double>(all_kept ? V : kept.count),
                                                  fma_f64(kept.ez, inv, -log_f64(kept.sum))));
      break;
  }
  return out;
}

}  // namespace cgrpo::sel
