// CGRPO_HD: a function compiled for both host and device (__host__ __device__ inline under nvcc, plain inline
// elsewhere), for the pure logic the CUDA kernels share with the CPU code and its unit tests.
#pragma once

#ifndef CGRPO_HD
#ifdef __CUDACC__
#define CGRPO_HD __host__ __device__ inline
#else
#define CGRPO_HD inline
#endif
#endif
