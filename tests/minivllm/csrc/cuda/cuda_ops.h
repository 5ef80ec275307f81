// Host-side entry points of the .cu files in _cuda_C, callable from plain C++
// (module_cuda.cpp needs neither nvcc nor CUDA headers).
#pragma once

namespace minivllm {

// From host_value.cu: a constant compiled in host-only code.
int host_value();

// From saxpy.cu. device_count() returns 0 when there is no GPU or driver.
int device_count();

// y[i] = a * x[i] + y[i] on the GPU. Returns nullptr on success, else the CUDA
// error string.
const char* saxpy(float a, const float* x, float* y, int n);

}  // namespace minivllm
