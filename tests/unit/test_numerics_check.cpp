// model_numerics_check (what `cgrpo selfcheck --gpu` runs per GPU): it passes for a correct backend in fp32 and in
// bf16, and it fails, naming the quantity, for backends with one subtly wrong op.
#include <catch2/catch.hpp>
#include <algorithm>
#include <vector>

#include "cgrpo/backend/cpu_backend.h"
#include "cgrpo/model/numerics_check.h"

using namespace cgrpo;

namespace {

// one 8-column fragment of one query row's attention output never written (left 0): what a wrong fragment map,
// tail mask or missed store in a tiled kernel does
class SkewedAttention final : public CpuBackend {
 public:
  void attention_fwd(const AttnShape& s, const TensorView& q, const TensorView& k, const TensorView& v,
                     const uint8_t* key_mask, const TensorView& o, float* lse) override {
    CpuBackend::attention_fwd(s, q, k, v, key_mask, o, lse);
    char* row = static_cast<char*>(o.data) + size_t(3 * o.stride(0)) * dtype_size(o.dtype);  // query row 3
    std::fill_n(row, 8 * dtype_size(o.dtype), char(0));
  }
};

// the RMSNorm weight gradient dropped: only the gradient check can see it
class NoNormGrad final : public CpuBackend {
 public:
  void rmsnorm_bwd(const TensorView& dy, const TensorView& x, const TensorView& w, const float* rstd,
                   const TensorView& dx, const TensorView& dw) override {
    std::vector<float> keep(size_t(dw.numel()));
    std::copy_n(static_cast<const float*>(dw.data), keep.size(), keep.begin());
    CpuBackend::rmsnorm_bwd(dy, x, w, rstd, dx, dw);
    std::copy(keep.begin(), keep.end(), static_cast<float*>(dw.data));
  }
};

}  // namespace

TEST_CASE("numerics check: a correct backend passes, in f32 and bf16", "[unit][model]") {
  CpuBackend dev(1);
  CHECK(model_numerics_check(dev, DType::F32) == "");
  CHECK(model_numerics_check(dev, DType::BF16) == "");
}

TEST_CASE("numerics check: a skewed attention or a dropped gradient is caught and named", "[unit][model]") {
  SkewedAttention skew;
  CHECK_THAT(model_numerics_check(skew, DType::F32), Catch::Contains("f32 model: log-probs off by"));
  CHECK_THAT(model_numerics_check(skew, DType::BF16), Catch::Contains("bf16 model: log-probs off by"));
  NoNormGrad nograd;
  CHECK_THAT(model_numerics_check(nograd, DType::F32), Catch::Contains("gradient of") && Catch::Contains("layernorm"));
}
