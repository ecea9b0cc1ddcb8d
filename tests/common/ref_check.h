// Helpers for op tests: random inputs, float64 central finite differences, and tolerance checks.
#pragma once

#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "cgrpo/core/philox.h"

namespace cgrpo::test {

inline std::vector<float> randn(size_t n, uint32_t sample, float std = 1.0f) {
  std::vector<float> v(n);
  RngStream(11, RngPurpose::Test, 0, sample).fill_normal(v.data(), static_cast<int64_t>(n), 0.0f, std);
  return v;
}
inline std::vector<double> to_f64(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// d F / d x by central differences in float64.
inline std::vector<double> fd_grad(const std::function<double(const std::vector<double>&)>& F, std::vector<double> x,
                                   double eps = 1e-6) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + eps;
    const double fp = F(x);
    x[i] = x0 - eps;
    const double fm = F(x);
    x[i] = x0;
    g[i] = (fp - fm) / (2 * eps);
  }
  return g;
}

// max_i |got_i - want_i| <= atol + rtol * max_i |want_i|; reports the worst element.
inline void require_close(const float* got, const std::vector<double>& want, double rtol, double atol,
                          const std::string& what) {
  double scale = 0, worst = 0;
  size_t wi = 0;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  for (size_t i = 0; i < want.size(); ++i) {
    const double e = std::fabs(double(got[i]) - want[i]);
    if (!(e <= worst)) worst = e, wi = i;  // NaN propagates as worst
  }
  INFO(what << ": worst |err| " << worst << " at " << wi << " (got " << (want.empty() ? 0.0 : got[wi]) << ", want "
            << (want.empty() ? 0.0 : want[wi]) << "), max |want| " << scale);
  REQUIRE(worst <= atol + rtol * scale);
}
inline void require_close(const std::vector<float>& got, const std::vector<double>& want, double rtol, double atol,
                          const std::string& what) {
  REQUIRE(got.size() == want.size());
  require_close(got.data(), want, rtol, atol, what);
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

}  // namespace cgrpo::test
