// A header shared by two extensions (_C and _fast_C): an edit here must rebuild both, and only
// them (vllm-dev's affected-targets build finds this through the compiler, not the path).
#pragma once

namespace minivllm {

inline long shared_value() { return 5; }

}  // namespace minivllm
