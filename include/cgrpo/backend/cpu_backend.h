// CpuBackend: fp32 everywhere, GEMM on OpenBLAS. The reference every other backend is tested against.
#pragma once

#include "cgrpo/backend/backend.h"

namespace cgrpo {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads = 0);  // 0 = OpenBLAS default (OPENBLAS_NUM_THREADS or all cores)
  const char* name() const override { return "cpu"; }
  Device device() const override { return Device::CPU; }
  int threads() const;

  void gemm(const TensorView& A, bool trans_a, const TensorView& B, bool trans_b, const TensorView& C,
            float alpha = 1.0f, float beta = 0.0f) override;
};

}  // namespace cgrpo
