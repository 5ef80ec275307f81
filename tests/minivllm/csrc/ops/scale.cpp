#include "ops/ops.h"

namespace minivllm {

long scale(long value, long factor) { return value * factor; }

}  // namespace minivllm
