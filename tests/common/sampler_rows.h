// Rows of logits that stress the token sampler (spec §2.3): random, peaked, heavy ties, all equal, one huge logit,
// +-0 mixtures, -inf entries, tails that underflow, nearly flat (a huge nucleus), two big tie groups. Shared by the
// host tests of the device algorithm (tests/unit/test_select_math.cpp) and the GPU tests (tests/gpu).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cgrpo/core/philox.h"

namespace cgrpo::test {

struct NamedRow {
  std::string name;
  std::vector<float> z;
};

inline std::vector<NamedRow> sampler_rows(int64_t V, uint32_t seed) {
  const size_t n = size_t(V);
  const RngStream rng(seed, RngPurpose::Test, 0, uint32_t(V));
  std::vector<float> g(n), u(n);
  rng.fill_normal(g.data(), V, 0.0f, 1.0f, 0);
  rng.fill_uniform(u.data(), V, uint64_t(4 * V));
  const auto pick = [&](size_t i, std::initializer_list<float> vals) {
    return *(vals.begin() + std::min(vals.size() - 1, size_t(u[i] * float(vals.size()))));
  };
  std::vector<NamedRow> rows;
  const auto add = [&](const char* name, auto f) {
    NamedRow r{name, std::vector<float>(n)};
    for (size_t i = 0; i < n; ++i) r.z[i] = f(i);
    rows.push_back(std::move(r));
  };
  add("normal", [&](size_t i) { return 3.0f * g[i]; });
  add("peaked", [&](size_t i) { return i == n / 3 ? 15.0f : g[i]; });
  add("ties", [&](size_t i) { return pick(i, {-2.0f, -1.0f, 0.0f, 0.5f, 1.0f, 2.0f, 2.0f}); });
  add("all equal", [&](size_t) { return 0.25f; });
  add("one huge", [&](size_t i) { return i == n / 2 ? 1000.0f : g[i]; });
  add("signed zeros", [&](size_t i) { return pick(i, {0.0f, -0.0f, -1.0f, -3.0f}); });
  add("minus inf", [&](size_t i) { return u[i] < 0.3f ? -INFINITY : 2.0f * g[i]; });
  add("underflow tail", [&](size_t i) { return -110.0f * u[i] + 10.0f; });
  add("nearly flat", [&](size_t i) { return 0.01f * g[i]; });
  add("two groups", [&](size_t i) { return u[i] < 0.5f ? 0.0f : -0.75f; });
  return rows;
}

}  // namespace cgrpo::test
