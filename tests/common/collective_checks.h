// Collective correctness checks shared by the threaded LocalCommunicator tests (unit) and the real
// mpirun tests (mpi). Inputs are small integers, so every sum is exact in fp32 and results compare with ==.
// The checks never throw and never call Catch2 (which is not thread-safe): they return the failures, so every
// rank runs the whole sequence of collectives and the caller asserts on one thread.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cgrpo/comm/communicator.h"
#include "cgrpo/core/dtype.h"

namespace cgrpo::testing {

inline float val(int rank, int64_t i) { return static_cast<float>((rank + 1) * 1000 + (i % 977)); }

inline std::vector<std::string> check_collectives(Communicator& c) {
  std::vector<std::string> fails;
  auto expect = [&](bool ok, const std::string& what) {
    if (!ok) fails.push_back("rank " + std::to_string(c.rank()) + "/" + std::to_string(c.world_size()) + ": " + what);
  };
  const int W = c.world_size(), r = c.rank();
  const std::vector<int64_t> sizes = {1, 2, 3, 5, 7, 8, 13, 64, 1000, 4099, (int64_t(1) << 20) + 3};
  for (int64_t n : sizes) {
    const ShardRange mine = shard_range(n, W, r);
    const std::string at = " (n = " + std::to_string(n) + ")";

    // all_gather: every rank contributes val(q, i) for i in its block
    std::vector<float> send(mine.count), recv(n, -1.0f);
    for (int64_t i = 0; i < mine.count; ++i) send[i] = val(r, mine.offset + i);
    c.all_gather(TensorView::of(send.data(), {mine.count}), TensorView::of(recv.data(), {n}));
    int64_t bad = 0;
    for (int q = 0; q < W; ++q) {
      const ShardRange s = shard_range(n, W, q);
      for (int64_t i = 0; i < s.count; ++i) bad += recv[s.offset + i] != val(q, s.offset + i);
    }
    expect(bad == 0, "all_gather" + at);

    // all_gather of 2-byte elements (bf16 bit patterns, distinct per rank and index), separate and in place
    // (send is this rank's block of recv, as the ZeRO engine's re-gather of bf16 working parameters does)
    auto bits = [](int q, int64_t i) { return static_cast<uint16_t>((q + 1) * 4099 + i * 7); };
    std::vector<uint16_t> hsend(mine.count), hrecv(n, 0xFFFF), hinplace(n, 0xFFFF);
    for (int64_t i = 0; i < mine.count; ++i) hsend[i] = hinplace[mine.offset + i] = bits(r, mine.offset + i);
    c.all_gather(TensorView(hsend.data(), DType::BF16, {mine.count}), TensorView(hrecv.data(), DType::BF16, {n}));
    c.all_gather(TensorView(hinplace.data() + mine.offset, DType::BF16, {mine.count}),
                 TensorView(hinplace.data(), DType::BF16, {n}));
    bad = 0;
    for (int q = 0; q < W; ++q) {
      const ShardRange s = shard_range(n, W, q);
      for (int64_t i = 0; i < s.count; ++i)
        bad += (hrecv[s.offset + i] != bits(q, s.offset + i)) + (hinplace[s.offset + i] != bits(q, s.offset + i));
    }
    expect(bad == 0, "all_gather bf16" + at);

    // reduce_scatter sum / avg / max over full buffers
    std::vector<float> full(n);
    for (int64_t i = 0; i < n; ++i) full[i] = val(r, i);
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max}) {
      std::vector<float> out(mine.count, -1.0f);
      c.reduce_scatter(TensorView::of(full.data(), {n}), TensorView::of(out.data(), {mine.count}), op);
      bad = 0;
      for (int64_t i = 0; i < mine.count; ++i) {
        float sum = 0, mx = val(0, mine.offset + i);
        for (int q = 0; q < W; ++q) {
          sum += val(q, mine.offset + i);
          mx = std::max(mx, val(q, mine.offset + i));
        }
        const float want = op == ReduceOp::Sum ? sum : op == ReduceOp::Avg ? sum / static_cast<float>(W) : mx;
        bad += out[i] != want;
      }
      expect(bad == 0, "reduce_scatter op " + std::to_string(static_cast<int>(op)) + at);
    }

    // all_reduce in place
    std::vector<float> buf = full;
    c.all_reduce(TensorView::of(buf.data(), {n}));
    bad = 0;
    for (int64_t i = 0; i < n; ++i) {
      float sum = 0;
      for (int q = 0; q < W; ++q) sum += val(q, i);
      bad += buf[i] != sum;
    }
    expect(bad == 0, "all_reduce" + at);
  }

  // broadcast from every root, including a 2-byte dtype
  for (int root = 0; root < W; ++root) {
    std::vector<uint16_t> b(1001);
    for (size_t i = 0; i < b.size(); ++i) b[i] = r == root ? f32_to_bf16(val(root, i)) : 0;
    c.broadcast(TensorView(b.data(), DType::BF16, {1001}), root);
    int64_t bad = 0;
    for (size_t i = 0; i < b.size(); ++i) bad += b[i] != f32_to_bf16(val(root, i));
    expect(bad == 0, "broadcast from " + std::to_string(root));
  }
  c.barrier();
  return fails;
}

// bf16 reductions (communicator.h): rank q's input at i is k * 2^e with |k| <= 15 and e depending on i only, so
// every sum over <= 4 ranks is exact in bf16 and Sum and Max compare with ==; Avg must be the one rounding of the
// fp32 quotient. Then the rule itself: rank 0 gives 1, every other rank 2^-8. Accumulated in fp32 and rounded
// once that is bf16(1 + (W-1) 2^-8), which at W >= 3 is not what rounding after each addition gives (1: every
// step 1 + 2^-8 is a tie that rounds to even).
inline std::vector<std::string> check_bf16_reductions(Communicator& c) {
  std::vector<std::string> fails;
  auto expect = [&](bool ok, const std::string& what) {
    if (!ok) fails.push_back("rank " + std::to_string(c.rank()) + "/" + std::to_string(c.world_size()) + ": " + what);
  };
  const int W = c.world_size(), r = c.rank();
  auto exact = [](int q, int64_t i) { return std::ldexp(float((q * 7 + i * 3) % 31 - 15), int(i % 9) - 4); };
  auto want = [&](ReduceOp op, int64_t i) {
    float sum = 0, mx = exact(0, i);
    for (int q = 0; q < W; ++q) {
      sum += exact(q, i);
      mx = std::max(mx, exact(q, i));
    }
    return f32_to_bf16(op == ReduceOp::Sum ? sum : op == ReduceOp::Avg ? sum / float(W) : mx);
  };
  auto bf16_view = [](std::vector<uint16_t>& v) { return TensorView(v.data(), DType::BF16, {int64_t(v.size())}); };
  for (int64_t n : {1, 3, 7, 64, 1000, 4099}) {
    const ShardRange mine = shard_range(n, W, r);
    const std::string at = " (n = " + std::to_string(n) + ")";
    std::vector<uint16_t> full(n);
    for (int64_t i = 0; i < n; ++i) full[i] = f32_to_bf16(exact(r, i));
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max}) {
      const std::string what = " op " + std::to_string(static_cast<int>(op)) + at;
      std::vector<uint16_t> out(mine.count, 0xFFFF), buf = full;
      c.reduce_scatter(bf16_view(full), bf16_view(out), op);
      c.all_reduce(bf16_view(buf), op);
      int64_t bad = 0;
      for (int64_t i = 0; i < mine.count; ++i) bad += out[i] != want(op, mine.offset + i);
      expect(bad == 0, "bf16 reduce_scatter" + what);
      bad = 0;
      for (int64_t i = 0; i < n; ++i) bad += buf[i] != want(op, i);
      expect(bad == 0, "bf16 all_reduce" + what);
    }
  }
  const int64_t n = 2 * W + 1;
  const float tiny = std::ldexp(1.0f, -8);
  std::vector<uint16_t> in(n, f32_to_bf16(r == 0 ? 1.0f : tiny)), out(shard_range(n, W, r).count), buf = in;
  c.reduce_scatter(bf16_view(in), bf16_view(out));
  c.all_reduce(bf16_view(buf));
  const uint16_t once = f32_to_bf16(1.0f + float(W - 1) * tiny);
  uint16_t pairwise = f32_to_bf16(1.0f);
  for (int q = 1; q < W; ++q) pairwise = f32_to_bf16(bf16_to_f32(pairwise) + tiny);
  if (W >= 3) expect(once != pairwise, "the rounding case discriminates");
  int64_t bad = 0;
  for (uint16_t h : out) bad += h != once;
  for (uint16_t h : buf) bad += h != once;
  expect(bad == 0, "bf16 sums accumulate in fp32 in rank order and round once");
  return fails;
}

// Byte counters against the direct-exchange formulas, for an N that W divides and one it does not.
inline std::vector<std::string> check_byte_counters(Communicator& c) {
  std::vector<std::string> fails;
  auto expect = [&](bool ok, const char* what) {
    if (!ok) fails.push_back("rank " + std::to_string(c.rank()) + "/" + std::to_string(c.world_size()) + ": " + what);
  };
  const int W = c.world_size(), r = c.rank();
  for (int64_t n : {int64_t(12) * 1024, int64_t(12) * 1024 + 5}) {
    const ShardRange mine = shard_range(n, W, r);
    std::vector<float> full(n, 1.0f), shard(mine.count, 1.0f);
    c.reset_stats();
    c.all_gather(TensorView::of(shard.data(), {mine.count}), TensorView::of(full.data(), {n}));
    c.reduce_scatter(TensorView::of(full.data(), {n}), TensorView::of(shard.data(), {mine.count}));
    c.all_reduce(TensorView::of(full.data(), {n}));
    const CommStats& s = c.stats();
    expect(s[CommOp::AllGather].calls == 1, "s[CommOp::AllGather].calls == 1");
    expect(s[CommOp::AllGather].bytes_sent == (W - 1) * mine.count * 4, "s[CommOp::AllGather].bytes_sent == (W - 1) * mine.count * 4");
    expect(s[CommOp::AllGather].bytes_recv == (n - mine.count) * 4, "s[CommOp::AllGather].bytes_recv == (n - mine.count) * 4");
    expect(s[CommOp::ReduceScatter].bytes_sent == (n - mine.count) * 4, "s[CommOp::ReduceScatter].bytes_sent == (n - mine.count) * 4");
    expect(s[CommOp::ReduceScatter].bytes_recv == (W - 1) * mine.count * 4, "s[CommOp::ReduceScatter].bytes_recv == (W - 1) * mine.count * 4");
    expect(s[CommOp::AllReduce].bytes_sent == s[CommOp::AllGather].bytes_sent + s[CommOp::ReduceScatter].bytes_sent, "s[CommOp::AllReduce].bytes_sent == s[CommOp::AllGather].bytes_sent + s[CommOp::ReduceScatter].bytes_sent");
    if (n % W == 0) {  // the ZeRO paper's per-rank volumes: Ψ(W-1)/W per leg, 2Ψ(W-1)/W for all-reduce
      expect(s[CommOp::AllGather].bytes_sent == n * (W - 1) / W * 4, "s[CommOp::AllGather].bytes_sent == n * (W - 1) / W * 4");
      expect(s[CommOp::AllReduce].bytes_sent == 2 * n * (W - 1) / W * 4, "s[CommOp::AllReduce].bytes_sent == 2 * n * (W - 1) / W * 4");
    }
    {  // a 2-byte all-gather counts 2-byte elements
      std::vector<uint16_t> hfull(n), hshard(mine.count);
      const CommOpStats ag = s[CommOp::AllGather];
      c.all_gather(TensorView(hshard.data(), DType::BF16, {mine.count}), TensorView(hfull.data(), DType::BF16, {n}));
      expect(s[CommOp::AllGather].bytes_sent - ag.bytes_sent == (W - 1) * mine.count * 2, "bf16 all_gather bytes_sent");
      expect(s[CommOp::AllGather].bytes_recv - ag.bytes_recv == (n - mine.count) * 2, "bf16 all_gather bytes_recv");
      c.reset_stats();
      c.all_gather(TensorView::of(shard.data(), {mine.count}), TensorView::of(full.data(), {n}));
      c.reduce_scatter(TensorView::of(full.data(), {n}), TensorView::of(shard.data(), {mine.count}));
      c.all_reduce(TensorView::of(full.data(), {n}));
    }
    {  // bf16 reductions count 2-byte elements: half the f32 bytes
      const CommOpStats rs = s[CommOp::ReduceScatter], ar = s[CommOp::AllReduce];
      std::vector<uint16_t> hfull(n), hshard(mine.count);
      c.reduce_scatter(TensorView(hfull.data(), DType::BF16, {n}), TensorView(hshard.data(), DType::BF16, {mine.count}));
      c.all_reduce(TensorView(hfull.data(), DType::BF16, {n}));
      expect(2 * (s[CommOp::ReduceScatter].bytes_sent - rs.bytes_sent) == rs.bytes_sent, "bf16 reduce_scatter bytes_sent");
      expect(2 * (s[CommOp::ReduceScatter].bytes_recv - rs.bytes_recv) == rs.bytes_recv, "bf16 reduce_scatter bytes_recv");
      expect(2 * (s[CommOp::AllReduce].bytes_sent - ar.bytes_sent) == ar.bytes_sent, "bf16 all_reduce bytes_sent");
      expect(2 * (s[CommOp::AllReduce].bytes_recv - ar.bytes_recv) == ar.bytes_recv, "bf16 all_reduce bytes_recv");
      expect(W == 1 || ar.bytes_sent > 0, "the f32 all_reduce moved bytes");
      c.reset_stats();
      c.all_gather(TensorView::of(shard.data(), {mine.count}), TensorView::of(full.data(), {n}));
      c.reduce_scatter(TensorView::of(full.data(), {n}), TensorView::of(shard.data(), {mine.count}));
      c.all_reduce(TensorView::of(full.data(), {n}));
    }
    expect(s.bytes_sent() == s[CommOp::AllGather].bytes_sent + s[CommOp::ReduceScatter].bytes_sent +
                                 s[CommOp::AllReduce].bytes_sent,
           "total bytes_sent is the sum over ops");
  }
  return fails;
}

}  // namespace cgrpo::testing
