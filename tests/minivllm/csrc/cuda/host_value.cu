// Only host code lives here, guarded so the device compilation pass sees an
// empty file. Tests edit the literal below (e.g. with sed) to check that a
// one-file change rebuilds and reinstalls _cuda_C.
#include "cuda_ops.h"

#define MINIVLLM_HOST_VALUE 1234

#ifndef __CUDA_ARCH__
namespace minivllm {

int host_value() { return MINIVLLM_HOST_VALUE; }

}  // namespace minivllm
#endif
