#include "cgrpo/reward/advantages.h"

#include <cmath>

#include "cgrpo/core/error.h"

namespace cgrpo {
namespace {

void check_groups(size_t n, int g) {
  CGRPO_CHECK(g >= 2 && n % static_cast<size_t>(g) == 0, "advantages: ", n, " rewards in groups of ", g,
              hint("num_generations must be >= 2 and divide the number of completions"));
}

double unbiased_std(const float* r, int g, double mean) {
  double ss = 0;
  for (int j = 0; j < g; ++j) ss += (r[j] - mean) * (r[j] - mean);
  return std::sqrt(ss / (g - 1));
}

}  // namespace

std::vector<float> group_advantages(const std::vector<float>& rewards, int group_size, bool scale_by_std) {
  check_groups(rewards.size(), group_size);
  const int g = group_size;
  std::vector<float> adv(rewards.size());
  for (size_t b = 0; b < rewards.size(); b += static_cast<size_t>(g)) {
    const float* r = rewards.data() + b;
    double sum = 0;
    for (int j = 0; j < g; ++j) sum += r[j];
    // spec §3.5: A_i = r_i - (sum_{j != i} r_j) / (G - 1)
    const double sd = scale_by_std ? unbiased_std(r, g, sum / g) : 0.0;
    for (int i = 0; i < g; ++i) {
      double a = r[i] - (sum - r[i]) / (g - 1);
      if (scale_by_std) a /= sd + 1e-4;  // spec §3.5: / (std_unbiased(group) + 1e-4)
      adv[b + static_cast<size_t>(i)] = static_cast<float>(a);
    }
  }
  return adv;
}

float zero_std_ratio(const std::vector<float>& rewards, int group_size) {
  check_groups(rewards.size(), group_size);
  const size_t g = static_cast<size_t>(group_size);
  size_t zero = 0;
  for (size_t b = 0; b < rewards.size(); b += g) {
    double sum = 0;
    for (size_t j = 0; j < g; ++j) sum += rewards[b + j];
    if (unbiased_std(rewards.data() + b, group_size, sum / group_size) < 1e-6) ++zero;
  }
  return static_cast<float>(zero) / static_cast<float>(rewards.size() / g);
}

}  // namespace cgrpo
