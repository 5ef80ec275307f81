// Plain C++ "ops" behind the _C module. Kept separate from the Python glue so
// that editing one op recompiles one translation unit, as in vLLM's csrc/.
#pragma once

namespace minivllm {

long add(long a, long b);
long scale(long value, long factor);

}  // namespace minivllm
