// The bf16 tensor-core flash attention (cuda_ops_attention_tc.cu) as CudaBackend::attention_fwd/bwd call it
// (cuda_ops_attention.cu). Included only by .cu files.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "cgrpo/backend/backend.h"

namespace cgrpo::cuda::tc {

// q, k, v, o are bf16 bits. Rows r = b*L + i; head h of q uses kv head h / (n_heads / n_kv).
struct FwdArgs {
  const uint16_t *q, *k, *v;  // [B*L, heads*hd] / [B*L, kv_heads*hd], row strides ldq, ldk, ldv
  const uint8_t* mask;        // [B, L] or nullptr
  uint16_t* o;                // [B*L, heads*hd]
  float* lse;                 // [B, heads, L]
  int64_t ldq, ldk, ldv, ldo, L, n_heads, n_kv;
  float scale;  // 1 / sqrt(hd)
};

struct BwdArgs {
  const uint16_t *q, *k, *v, *o;  // forward inputs and output (bf16)
  const float* dout;              // [B*L, heads*hd] fp32, row stride lddo
  const float* lse;               // [B, heads, L]
  const uint8_t* mask;            // [B, L] or nullptr
  float* D;                       // [B, heads, L] workspace: rowsum(bf16(dO) o O)
  uint16_t* dob;                  // [B*L, heads*hd] workspace: bf16(dO), row stride heads*hd
  float *dq, *dk, *dv;            // like q, k, v (fp32)
  int64_t ldq, ldk, ldv, ldo, lddo, lddq, lddk, lddv, L, n_heads, n_kv;
  float scale;
  bool vec_dq, vec_dk, vec_dv;  // 8-byte aligned base and even row stride: float2 stores
};

// A bf16 view the kernels can read or write with 16-byte accesses: base 16-byte aligned, row stride a multiple of
// 8 elements (every head offset is a multiple of 32 elements).
inline bool aligned16(const TensorView& t, int64_t ld) {
  return reinterpret_cast<uintptr_t>(t.data) % 16 == 0 && ld % 8 == 0;
}
inline uint16_t* bwd_dob(float* ws, const AttnShape& s) {
  return reinterpret_cast<uint16_t*>(ws + (static_cast<size_t>(s.B * s.n_heads * s.L) + 3) / 4 * 4);
}

// Launch the kernels of one direction for head_dim hd (flash::tc_supported_head_dim) on stream; every launch is checked.
void launch_fwd(const FwdArgs& a, int64_t B, int64_t hd, cudaStream_t stream);
void launch_bwd(const BwdArgs& a, int64_t B, int64_t hd, cudaStream_t stream);

}  // namespace cgrpo::cuda::tc
