"""Knowledge of the tools: cmake, ninja, nvcc, compilers, the target interpreter, GPU archs."""
