// Group-relative advantages (spec §3.5).
#pragma once

#include <vector>

namespace cgrpo {

// Groups are consecutive blocks of group_size rewards. Leave-one-out baseline (spec §3.5, hard-coded
// leave_one_out = True in the reference):
//   A_i = r_i - (sum_{j in group, j != i} r_j) / (G - 1)          (= G/(G-1) * (r_i - mean_group))
//   scale_by_std: A_i /= (std_unbiased(group rewards) + 1e-4)     (recipe: scale_rewards = false)
std::vector<float> group_advantages(const std::vector<float>& rewards, int group_size, bool scale_by_std);

// Fraction of groups whose unbiased std is < 1e-6 (logged as zero_std_ratio, spec §3.5).
float zero_std_ratio(const std::vector<float>& rewards, int group_size);

}  // namespace cgrpo
