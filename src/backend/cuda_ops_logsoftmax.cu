// CudaBackend fused, vocabulary-chunked log-softmax gather (spec/coupled_grpo.md §3.6 selective_log_softmax;
// ARCHITECTURE.md §3.4), the same chunking as CpuBackend (cpu_ops_logsoftmax.cpp): only [R, chunk] logits
// exist at a time, in the backend's workspace.
//   forward, per chunk:  Z [R, cn] = h W_c^T (this backend's gemm, cuBLASLt fp32), then one block per row
//     merges the chunk into the row's running (max, sum) (kmath::lse_merge; max fp32, sum double) and picks the
//     target logit; the last chunk writes lse = max + log(sum) and logp = z_t - lse.
//   backward, per chunk: Z recomputed, turned in place into dz = dlogp (onehot(t) - exp(z - lse)), then
//     dh += dz W_c and dW_c += dz^T h (two gemms with beta = 1).
// Determinism: the row reductions use a fixed ownership and block tree (cuda_kernels.cuh) and the gemms are
// cuBLASLt with a cached algorithm, so the bits are the same on every run. Against the CPU: the logits differ
// by the gemms' fp32 summation order, exp is the precise expf (CPU: a ~1 ulp polynomial), the running sum is
// kept in double (CPU: fp32 between chunks): agreement within fp32 gemm rounding.
// Targets are checked on the device (first chunk): a bad one gives logp = NaN and a device error.
// bf16 h and W (backend.h): the chunk gemms are cuBLASLt bf16 x bf16 -> fp32 (tensor cores), and the backward
// rounds each chunk's dz (Backend::cast, RNE) into a bf16 copy for the two gradient gemms, as the CPU does.
#include <algorithm>
#include <cstdint>

#include "cgrpo/backend/cuda_backend.h"
#include "cgrpo/backend/kernel_math.h"
#include "cuda_kernels.cuh"

namespace cgrpo {

namespace {

constexpr int kRowThreads = 256;  // fixed: the tree shape is part of the bits

// The shared shape checks, and h, W in device memory.
LsgShape check_lsg(const TensorView& h, const TensorView& W, int64_t chunk) {
  cuda::check_device_tensor(h, "logsoftmax_gather h");
  cuda::check_device_tensor(W, "logsoftmax_gather W");
  return logsoftmax_gather_shape(h, W, chunk);
}

// Workspace pieces, in this order: Z [R, C] logits, then forward the running sum [R] (double) and running max [R]
// (fp32), backward with bf16 operands dz's bf16 copy Zb [R, C]. Each piece is 256-byte aligned (for cuBLASLt).
struct LsgWorkspace {
  float* Z;
  double* sum;
  float* max;
  uint16_t* Zb;
};
LsgWorkspace carve_lsg(void* base, int64_t R, int64_t C, bool forward, DType operands, size_t* bytes) {
  cuda::Carver c(base);
  LsgWorkspace w{};
  w.Z = c.take<float>(static_cast<size_t>(R * C));
  if (forward) {
    w.sum = c.take<double>(static_cast<size_t>(R));
    w.max = c.take<float>(static_cast<size_t>(R));
  } else if (operands == DType::BF16) {
    w.Zb = c.take<uint16_t>(static_cast<size_t>(R * C));
  }
  if (bytes) *bytes = c.bytes();
  return w;
}

// One chunk of the forward for every row r: (max, sum) <- (max, sum) (+) (m', sum_j exp(z_j - m')), with
// m' = max(max, max_j z_j); the target logit is stored into logp[r] when it falls in this chunk.
template <bool kVec4>
__global__ void lsg_fwd_chunk_kernel(const float* Z, int64_t cn, int64_t c0, int64_t V, const int32_t* targets,
                                     int64_t R, float* run_max, double* run_sum, float* logp, float* lse, bool first,
                                     bool last, cuda::DeviceError* err) {
  __shared__ double dsm[kRowThreads / 32];
  __shared__ float fsm[kRowThreads / 32];
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    const float* z = Z + r * cn;
    float cmax = -INFINITY;
    cuda::for_groups(cn, [&](int64_t j, int cnt) {
      if (kVec4 && cnt == 4) {
        const cuda::F4 v = cuda::ld4(z + j);
        cmax = fmaxf(fmaxf(cmax, v.x), fmaxf(fmaxf(v.y, v.z), v.w));
      } else {
        for (int k = 0; k < cnt; ++k) cmax = fmaxf(cmax, z[j + k]);
      }
    });
    cmax = cuda::block_reduce<kRowThreads>(cmax, cuda::MaxOp{}, -INFINITY, fsm);
    const kmath::LseState old = first ? kmath::lse_empty() : kmath::LseState{run_max[r], run_sum[r]};
    const float m = fmaxf(old.m, cmax);
    double acc = 0.0;
    cuda::for_groups(cn, [&](int64_t j, int cnt) {
      if (kVec4 && cnt == 4) {
        const cuda::F4 v = cuda::ld4(z + j);
        acc += double(kmath::exp_shifted(v.x, m));
        acc += double(kmath::exp_shifted(v.y, m));
        acc += double(kmath::exp_shifted(v.z, m));
        acc += double(kmath::exp_shifted(v.w, m));
      } else {
        for (int k = 0; k < cnt; ++k) acc += double(kmath::exp_shifted(z[j + k], m));
      }
    });
    acc = cuda::block_reduce<kRowThreads>(acc, cuda::SumOp{}, 0.0, dsm);
    if (threadIdx.x == 0) {
      const kmath::LseState st = kmath::lse_merge(old, kmath::LseState{m, acc});
      const int32_t t = targets[r];
      if (first && (t < 0 || t >= V)) {
        cuda::report_error(err, cuda::kErrTarget, r, t, V);
        logp[r] = NAN;
      }
      if (t >= c0 && t < c0 + cn) logp[r] = z[t - c0];
      if (last) {
        const float l = kmath::lse_value(st);
        lse[r] = l;
        logp[r] = logp[r] - l;
      } else {
        run_max[r] = st.m;
        run_sum[r] = st.s;
      }
    }
  }
}

// z <- dlogp[r] * (onehot(t_r) - exp(z - lse[r])) in place, one block per row.
__global__ void lsg_bwd_chunk_kernel(float* Z, int64_t cn, int64_t c0, int64_t V, const int32_t* targets,
                                     const float* lse, const float* dlogp, int64_t R, bool first,
                                     cuda::DeviceError* err) {
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    float* z = Z + r * cn;
    const int32_t t = targets[r];
    const float l = lse[r], d = dlogp[r];
    if (first && threadIdx.x == 0 && (t < 0 || t >= V)) cuda::report_error(err, cuda::kErrTarget, r, t, V);
    const int64_t tl = int64_t(t) - c0;  // target column inside this chunk, if 0 <= tl < cn
    for (int64_t j = threadIdx.x; j < cn; j += blockDim.x) z[j] = kmath::lsg_dz(z[j], l, d, j == tl);
  }
}

}  // namespace

size_t CudaBackend::logsoftmax_gather_workspace_bytes(int64_t R, int64_t V, int64_t chunk, DType operands) const {
  size_t fwd = 0, bwd = 0;
  const int64_t r = std::max<int64_t>(R, 0), c = std::max<int64_t>(std::min(chunk, V), 0);
  carve_lsg(nullptr, r, c, true, operands, &fwd);
  carve_lsg(nullptr, r, c, false, operands, &bwd);
  return std::max(fwd, bwd);
}

void CudaBackend::logsoftmax_gather_fwd(const TensorView& h, const TensorView& W, const int32_t* targets,
                                        int64_t chunk, float* logp, float* lse) {
  const LsgShape s = check_lsg(h, W, chunk);
  if (s.R == 0) return;
  size_t bytes = 0;
  carve_lsg(nullptr, s.R, s.C, true, s.dtype, &bytes);
  const LsgWorkspace ws = carve_lsg(workspace(bytes / sizeof(float) + 1), s.R, s.C, true, s.dtype, nullptr);
  const cudaStream_t st = cuda::as_stream(ctx_.stream());
  const TensorView Hv = rows_view(h.data, s.dtype, 0, s.R, s.H, s.ldh, Device::CUDA);
  auto* err = static_cast<cuda::DeviceError*>(device_error());
  for (int64_t c0 = 0; c0 < s.V; c0 += s.C) {
    const int64_t cn = std::min(s.C, s.V - c0);
    gemm(Hv, false, rows_view(W.data, s.dtype, c0, cn, s.H, s.ldw, Device::CUDA), true,
         rows_view(ws.Z, s.R, cn, cn, Device::CUDA));  // Z = h W[c0:c0+cn]^T
    const bool first = c0 == 0, last = c0 + cn >= s.V;
    if (cn % 4 == 0 && kmath::vec4_ok(ws.Z))  // then every row of Z [R, cn] is 16-byte aligned
      lsg_fwd_chunk_kernel<true><<<cuda::row_grid(s.R), kRowThreads, 0, st>>>(
          ws.Z, cn, c0, s.V, targets, s.R, ws.max, ws.sum, logp, lse, first, last, err);
    else
      lsg_fwd_chunk_kernel<false><<<cuda::row_grid(s.R), kRowThreads, 0, st>>>(
          ws.Z, cn, c0, s.V, targets, s.R, ws.max, ws.sum, logp, lse, first, last, err);
    cuda::check_launch("lsg_fwd_chunk_kernel");
  }
}

void CudaBackend::logsoftmax_gather_bwd(const TensorView& h, const TensorView& W, const int32_t* targets,
                                        int64_t chunk, const float* lse, const float* dlogp, const TensorView& dh,
                                        const TensorView& dW) {
  const LsgShape s = check_lsg(h, W, chunk);
  const int64_t lddh = cuda::dev_row_stride(dh, s.R, s.H, "logsoftmax_gather dh");  // [R, H]
  const int64_t lddw = cuda::dev_row_stride(dW, s.V, s.H, "logsoftmax_gather dW");  // [V, H]
  if (s.R == 0) return;
  size_t bytes = 0;
  carve_lsg(nullptr, s.R, s.C, false, s.dtype, &bytes);
  // [R, C] logits -> dz, and with bf16 operands dz rounded into Zb [R, C]
  const LsgWorkspace ws = carve_lsg(workspace(bytes / sizeof(float) + 1), s.R, s.C, false, s.dtype, nullptr);
  float* Z = ws.Z;
  const cudaStream_t st = cuda::as_stream(ctx_.stream());
  auto* err = static_cast<cuda::DeviceError*>(device_error());
  const TensorView Hv = rows_view(h.data, s.dtype, 0, s.R, s.H, s.ldh, Device::CUDA);
  const TensorView dHv = rows_view(static_cast<float*>(dh.data), s.R, s.H, lddh, Device::CUDA);
  for (int64_t c0 = 0; c0 < s.V; c0 += s.C) {
    const int64_t cn = std::min(s.C, s.V - c0);
    const TensorView Zv = rows_view(Z, s.R, cn, cn, Device::CUDA);
    const TensorView Wc = rows_view(W.data, s.dtype, c0, cn, s.H, s.ldw, Device::CUDA);
    gemm(Hv, false, Wc, true, Zv);
    lsg_bwd_chunk_kernel<<<cuda::row_grid(s.R), cuda::row_threads(cn), 0, st>>>(Z, cn, c0, s.V, targets, lse, dlogp,
                                                                               s.R, c0 == 0, err);
    cuda::check_launch("lsg_bwd_chunk_kernel");
    const TensorView dZ = s.dtype == DType::F32 ? Zv : rows_view(ws.Zb, DType::BF16, 0, s.R, cn, cn, Device::CUDA);
    if (s.dtype != DType::F32) cast(Zv, dZ);
    gemm(dZ, false, Wc, false, dHv, 1.0f, 1.0f);  // dh += dz W[c0:c0+cn]
    gemm(dZ, true, Hv, false, rows_view(static_cast<float*>(dW.data) + c0 * lddw, cn, s.H, lddw, Device::CUDA), 1.0f,
         1.0f);  // dW[c0:c0+cn] += dz^T h
  }
}

}  // namespace cgrpo
