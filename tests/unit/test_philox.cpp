#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "cgrpo/core/philox.h"

using namespace cgrpo;

// Random123 tests/kat_vectors, philox4x32 with 10 rounds: counter words, key words, expected output.
TEST_CASE("philox4x32-10 matches the Random123 known-answer vectors", "[unit][rng]") {
  CHECK(philox4x32_10({0, 0, 0, 0}, {0, 0}) == PhiloxCounter{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  CHECK(philox4x32_10({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}) ==
        PhiloxCounter{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
  CHECK(philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}) ==
        PhiloxCounter{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
}

TEST_CASE("rng streams are pure functions of their keys and disjoint across purposes", "[unit][rng]") {
  RngStream a(42, RngPurpose::Sampler, 3, 17), b(42, RngPurpose::Sampler, 3, 17);
  RngStream c(42, RngPurpose::Mask, 3, 17), d(42, RngPurpose::Sampler, 3, 18), e(43, RngPurpose::Sampler, 3, 17);
  int same_c = 0, same_d = 0, same_e = 0;
  for (uint64_t i = 0; i < 1000; ++i) {
    REQUIRE(a.u32(i) == b.u32(i));
    same_c += a.u32(i) == c.u32(i);
    same_d += a.u32(i) == d.u32(i);
    same_e += a.u32(i) == e.u32(i);
  }
  CHECK(same_c < 3);
  CHECK(same_d < 3);
  CHECK(same_e < 3);
  // random access equals sequential fill
  std::vector<float> f(37);
  a.fill_uniform(f.data(), 37, 5);
  for (int j = 0; j < 37; ++j) CHECK(f[j] == a.uniform(5 + j));
}

TEST_CASE("uniform and normal have the right moments", "[unit][rng]") {
  RngStream r(1234, RngPurpose::Test, 0, 0);
  const int n = 200000;
  double su = 0, su2 = 0, sn = 0, sn2 = 0, sn4 = 0;
  float umin = 1, umax = 0;
  for (int i = 0; i < n; ++i) {
    const double u = r.uniform(i), z = r.normal(i);
    su += u; su2 += u * u; sn += z; sn2 += z * z; sn4 += z * z * z * z;
    umin = std::min(umin, float(u)); umax = std::max(umax, float(u));
  }
  // 5-sigma bounds for the sample means
  CHECK(std::fabs(su / n - 0.5) < 5 * std::sqrt(1.0 / 12 / n));
  CHECK(std::fabs(su2 / n - 1.0 / 3) < 5 * std::sqrt(4.0 / 45 / n));
  CHECK(std::fabs(sn / n) < 5 * std::sqrt(1.0 / n));
  CHECK(std::fabs(sn2 / n - 1.0) < 5 * std::sqrt(2.0 / n));
  CHECK(std::fabs(sn4 / n - 3.0) < 5 * std::sqrt(96.0 / n));
  CHECK(umin >= 0.0f);
  CHECK(umax < 1.0f);
}

TEST_CASE("categorical follows the given weights (chi-square)", "[unit][rng]") {
  const std::vector<float> p = {0.1f, 0.0f, 0.4f, 0.2f, 0.3f};
  RngStream r(99, RngPurpose::Test, 1, 2);
  const int n = 100000;
  std::vector<int> count(p.size(), 0);
  for (int i = 0; i < n; ++i) ++count[r.categorical(p.data(), 5, i)];
  CHECK(count[1] == 0);  // zero weight is never drawn
  double chi2 = 0;
  for (size_t k = 0; k < p.size(); ++k)
    if (p[k] > 0) chi2 += std::pow(count[k] - n * p[k], 2) / (n * p[k]);
  CHECK(chi2 < 18.47);  // chi-square, 3 dof, p = 0.0004
  // unnormalised weights give the same draws as normalised ones
  const std::vector<float> q = {1.0f, 0.0f, 4.0f, 2.0f, 3.0f};
  for (int i = 0; i < 1000; ++i) CHECK(r.categorical(q.data(), 5, i) == r.categorical(p.data(), 5, i));
}
