// numerics_check: the model's whole forward and backward on one backend against the CPU oracle, at the precision
// training would use, in well under a second: what `cgrpo selfcheck --gpu` runs on each rank's GPU, so a node with
// a broken kernel, driver or library fails before a job starts rather than after it trained on wrong numbers.
//
// A 2-layer model of head_dim 64 (so bf16 attention takes the tensor-core path on CUDA) with GQA, a left-pad key
// mask, explicit positions and a vocabulary chunk that does not divide V; one micro-step: log-probs of every
// non-pad row, the gradients of their weighted sum, and the logits of three rows. Tolerances, relative to each
// quantity's largest magnitude, are those of the model tests: fp32 1e-3 (log-probs, logits) / 2e-3 (gradients),
// bf16 parameters and activations 3e-2 / 8e-2 (tests/unit/test_model_bf16.cpp measured 1.6e-2 / 3.8e-2 on the
// CPU against fp32). A wrong kernel is O(1).
#pragma once

#include <string>

#include "cgrpo/backend/backend.h"
#include "cgrpo/core/dtype.h"

namespace cgrpo {

// "" when `dev` agrees with a CpuBackend on the check above with parameters and activations in `dtype` (f32 or
// bf16), else which quantity differed and by how much.
std::string model_numerics_check(Backend& dev, DType dtype);

}  // namespace cgrpo
