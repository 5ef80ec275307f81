// Shared template for the generated _heavy_C translation units. The point is
// compile time, not speed: fully unrolled loops over a register tile give
// ptxas a lot of straight-line code (several seconds per TU and arch).
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <vector>

namespace {

// SEED is the index of the translation unit, so every TU compiles distinct
// code (no ccache hits between TUs, no shared symbols).
template <typename T, int TILE, int ROUNDS, int SEED>
__global__ void heavy_kernel(const T* __restrict__ in, T* __restrict__ out, int n) {
  const int tid = blockIdx.x * blockDim.x + threadIdx.x;
  T acc[TILE];
#pragma unroll
  for (int i = 0; i < TILE; ++i) acc[i] = in[(tid * TILE + i) % n] + T(i + SEED);
#pragma unroll
  for (int r = 0; r < ROUNDS; ++r) {
#pragma unroll
    for (int i = 0; i < TILE; ++i) {
      const T other = acc[(i * 7 + r + 1) % TILE];
      acc[i] = acc[i] * other + T((r * 3 + i + SEED) % 11) -
               (other > acc[i] ? other : acc[i]) / T(r + 2);
    }
  }
  T s = T(0);
#pragma unroll
  for (int i = 0; i < TILE; ++i) s += acc[i] * T(i + 1);
  if (tid < n) out[tid] = s;
}

// Run one instantiation on a small buffer and add its output to *checksum.
template <typename T, int TILE, int ROUNDS, int SEED>
cudaError_t run_heavy_kernel(double* checksum) {
  constexpr int n = 1024;
  constexpr int block = 128;
  std::vector<T> host(n);
  for (int i = 0; i < n; ++i) host[i] = T(i % 13);
  T* d_in = nullptr;
  T* d_out = nullptr;
  cudaError_t err = cudaMalloc(&d_in, sizeof(T) * n);
  if (err == cudaSuccess) err = cudaMalloc(&d_out, sizeof(T) * n);
  if (err == cudaSuccess) err = cudaMemcpy(d_in, host.data(), sizeof(T) * n, cudaMemcpyHostToDevice);
  if (err == cudaSuccess) {
    heavy_kernel<T, TILE, ROUNDS, SEED><<<n / block, block>>>(d_in, d_out, n);
    err = cudaGetLastError();
  }
  if (err == cudaSuccess) err = cudaMemcpy(host.data(), d_out, sizeof(T) * n, cudaMemcpyDeviceToHost);
  if (d_in) cudaFree(d_in);
  if (d_out) cudaFree(d_out);
  if (err != cudaSuccess) return err;
  for (int i = 0; i < n; ++i) {
    const double v = static_cast<double>(host[i]);
    // Floats overflow quickly; keep the checksum finite and deterministic.
    *checksum += std::isfinite(v) ? std::fmod(v, 1.0e6) : 0.0;
  }
  return cudaSuccess;
}

}  // namespace
