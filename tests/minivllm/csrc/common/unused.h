// A header no translation unit includes: an edit here must rebuild nothing.
#pragma once

namespace minivllm {

inline long unused_value() { return 0; }

}  // namespace minivllm
