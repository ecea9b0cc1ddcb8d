// The device executor of sel::sample_row (src/backend/cuda_sample.cu) simulated on the host: the same thread
// partition (kSampleThreads threads; strided for reductions and histograms, contiguous chunks for the id-order
// searches and compactions), the same warp trees and the same sequential combines, so every double sum has the
// device's bits and emulate_sample_row() returns exactly what the kernel returns for a row.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cgrpo/backend/sample_row.h"

namespace cgrpo::test {

class EmulatedBlock {
 public:
  static constexpr int NT = sel::kSampleThreads, NW = NT / 32, NB = sel::kRadixBuckets;

  EmulatedBlock(float* z, int64_t V) : z_(z), V_(V) {}

  sel::ArgMax temper_argmax(float temperature) {
    float best = -INFINITY;
    int32_t bi = -1;
    bool nan = false;
    for (int64_t v = 0; v < V_; ++v) {
      float x = z_[v];
      if (temperature > 0.0f) z_[v] = x = sel::div_rn(x, temperature);
      if (sel::is_nan_f32(x)) {
        nan = true;
      } else if (bi < 0 || x > best) {  // first of the maximum (ties keep the lower id)
        best = x;
        bi = int32_t(v);
      }
    }
    return {best, bi, nan};
  }

  sel::RowStats all_stats(float m, int32_t amax) { return stats(0, m, amax, false); }
  sel::RowStats kept_stats(uint64_t lo, float m, int32_t amax) { return stats(lo, m, amax, true); }

  const sel::RadixHist& histogram(const sel::RadixSelect& rs, uint64_t lo, bool value_keys, bool with_mass, float m) {
    std::vector<double> hm(size_t(NB) * NT, 0.0);
    std::vector<uint32_t> hc(size_t(NB) * NT, 0u);
    for (int t = 0; t < NT; ++t)
      for (int64_t v = t; v < V_; v += NT) {
        const float zv = z_[v];
        const int d = rs.bucket_of(zv, uint32_t(v), lo, value_keys);
        if (d < 0) continue;
        hc[size_t(d * NT + t)] += 1u;
        if (with_mass) hm[size_t(d * NT + t)] = sel::dadd(hm[size_t(d * NT + t)], double(e_of(zv, m)));
      }
    for (int b = 0; b < NB; ++b) {
      double ms[32];
      uint32_t cs = 0;
      for (int l = 0; l < 32; ++l) {
        ms[l] = 0.0;
        for (int i = 0; i < NW; ++i) {
          ms[l] = sel::dadd(ms[l], hm[size_t(b * NT + l + 32 * i)]);
          cs += hc[size_t(b * NT + l + 32 * i)];
        }
      }
      hist_.mass[b] = warp_tree(ms);
      hist_.count[b] = cs;
    }
    return hist_;
  }

  int32_t id_search(uint64_t lo, float m, double target, bool tie, uint32_t tie_key) {
    return search(nullptr, V_, lo, m, target, tie, tie_key);
  }
  int32_t list_search(int64_t count, uint64_t lo, float m, double target) {
    return search(arr_.data(), count, lo, m, target, false, 0u);
  }

  float logit(int32_t v) const { return z_[v]; }

  int64_t qs_init(float cut, int64_t rstar) {
    arr_.clear();
    for (int64_t v = 0; v < V_; ++v)
      if (z_[v] >= cut) arr_.push_back(int32_t(v));
    if (!(rstar < int64_t(arr_.size()))) {
      arr_.resize(size_t(V_));
      for (int64_t v = 0; v < V_; ++v) arr_[size_t(v)] = int32_t(v);
    }
    return int64_t(arr_.size());
  }
  uint64_t qs_pivot(int64_t lo, int64_t n) const { return key_of(arr_[size_t(lo + n / 2)]); }
  int64_t qs_count(int64_t lo, int64_t n, uint64_t pivot) const {
    int64_t na = 0;
    for (int64_t s = 0; s < n - 1; ++s) na += key_of(arr_[size_t(lo + sel::qs_scan_pos(s, n))]) > pivot;
    return na;
  }
  // The closed form of sample_row.h, path ends by a reverse sweep (phi(t) > t).
  void qs_partition(int64_t lo, int64_t n, uint64_t pivot, int64_t na, bool right) {
    const int64_t me = n - 1;
    std::vector<int32_t> out(size_t(n), -1), elem(size_t(std::max<int64_t>(me, 0)));
    std::vector<int64_t> above_at(size_t(na + 1), 0), end(size_t(n), 0);
    int64_t k = 0;
    for (int64_t s = 0; s < me; ++s) {
      elem[size_t(s)] = arr_[size_t(lo + sel::qs_scan_pos(s, n))];
      if (key_of(elem[size_t(s)]) > pivot) out[size_t(k)] = elem[size_t(s)], above_at[size_t(++k)] = s;
    }
    out[size_t(na)] = sel::rank_key_id(pivot);
    if (right) {
      for (int64_t t = me; t >= 1; --t) {
        const int64_t f = sel::qs_phi(t, na, t <= na ? above_at[size_t(t)] : 0, n);
        end[size_t(t)] = f == t ? t : end[size_t(f)];
      }
      for (int64_t s = 0; s < me; ++s)
        if (!(key_of(elem[size_t(s)]) > pivot))
          out[size_t(sel::qs_na_slot(end[size_t(s + 1)], na, n))] = elem[size_t(s)];
    }
    for (int64_t i = 0; i < (right ? n : na + 1); ++i) arr_[size_t(lo + i)] = out[size_t(i)];
  }
  const std::vector<int32_t>& arrangement() const { return arr_; }

 private:
  static float e_of(float zv, float m) { return sel::exp_nonpos(sel::sub_rn(zv, m)); }
  uint64_t key_of(int32_t v) const { return sel::rank_key(sel::float_key(z_[v]), uint32_t(v)); }

  // lane 0 of a shfl_down tree over 32 lanes
  static double warp_tree(double* v) {
    for (int o = 16; o > 0; o >>= 1)
      for (int l = 0; l < o; ++l) v[l] = sel::dadd(v[l], v[l + o]);
    return v[0];
  }

  sel::RowStats stats(uint64_t lo, float m, int32_t amax, bool kept) {
    double red_s[NW], red_ez[NW];
    float red_sec[NW];
    int64_t red_n[NW];
    for (int w = 0; w < NW; ++w) {
      double s[32], ez[32];
      float sec = 0.0f;
      int64_t n = 0;
      for (int l = 0; l < 32; ++l) {
        s[l] = ez[l] = 0.0;
        for (int64_t v = w * 32 + l; v < V_; v += NT) {
          const float zv = z_[v];
          if (kept && sel::rank_key(sel::float_key(zv), uint32_t(v)) < lo) continue;
          const float e = sel::add_stat_terms(zv, m, kept, s[l], ez[l]);
          if (v != amax && e > sec) sec = e;
          ++n;
        }
      }
      red_s[w] = warp_tree(s);
      red_ez[w] = warp_tree(ez);
      red_sec[w] = sec;
      red_n[w] = n;
    }
    sel::RowStats r{0.0, 0.0, 0.0f, 0};
    for (int w = 0; w < NW; ++w) {
      r.sum = sel::dadd(r.sum, red_s[w]);
      r.ez = sel::dadd(r.ez, red_ez[w]);
      r.second = std::max(r.second, red_sec[w]);
      r.count += red_n[w];
    }
    return r;
  }

  double weight(const int32_t* list, int64_t q, uint64_t lo, float m, bool tie, uint32_t tie_key) const {
    const int32_t v = list ? list[q] : int32_t(q);
    const float zv = z_[v];
    const uint32_t k = sel::float_key(zv);
    if (sel::rank_key(k, uint32_t(v)) < lo) return 0.0;
    if (tie) return k == tie_key ? 1.0 : 0.0;
    return double(e_of(zv, m));
  }

  int32_t search(const int32_t* list, int64_t count, uint64_t lo, float m, double target, bool tie, uint32_t tie_key) {
    const int64_t c = (count + NT - 1) / NT;
    std::vector<double> my(NT, 0.0), scan(NT, 0.0), incl(NT), excl(NT);
    for (int t = 0; t < NT; ++t)
      for (int64_t q = std::min(count, t * c); q < std::min(count, t * c + c); ++q) {
        const double w = weight(list, q, lo, m, tie, tie_key);
        if (w > 0.0) my[size_t(t)] = sel::dadd(my[size_t(t)], w);
      }
    double red[NW];
    for (int w = 0; w < NW; ++w) {
      double acc = 0.0;
      for (int i = 0; i < 32; ++i) acc = sel::dadd(acc, my[size_t(w * 32 + i)]), scan[size_t(w * 32 + i)] = acc;
      red[w] = acc;
    }
    int cross = -1, last = -1;
    for (int t = 0; t < NT; ++t) {
      const int w = t / 32, lane = t % 32;
      double off = 0.0;
      for (int i = 0; i < w; ++i) off = sel::dadd(off, red[i]);
      incl[size_t(t)] = sel::dadd(off, scan[size_t(t)]);
      excl[size_t(t)] = lane == 0 ? off : sel::dadd(off, scan[size_t(t - 1)]);
      if (cross < 0 && incl[size_t(t)] > target) cross = t;
      if (my[size_t(t)] > 0.0) last = t;
    }
    const int t = cross >= 0 ? cross : last;
    if (t < 0) return -1;
    double acc = excl[size_t(t)];
    int32_t lastv = -1;
    for (int64_t q = std::min(count, t * c); q < std::min(count, t * c + c); ++q) {
      const double w = weight(list, q, lo, m, tie, tie_key);
      if (!(w > 0.0)) continue;
      acc = sel::dadd(acc, w);
      lastv = list ? list[q] : int32_t(q);
      if (cross >= 0 && target < acc) return lastv;
    }
    return lastv;
  }

  float* z_;
  int64_t V_;
  sel::RadixHist hist_{};
  std::vector<int32_t> arr_;
};

// sel::sample_row on the emulated block: the kernel's result for this row, bit for bit. z is overwritten.
inline sel::SampleRowResult emulate_sample_row(float* z, int64_t V, const TokenSampling& p, Confidence kind, double u) {
  EmulatedBlock x(z, V);
  return sel::sample_row(x, V, p, kind, u);
}

}  // namespace cgrpo::test
