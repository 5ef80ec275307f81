"""vllm-dev: vLLM's incremental C++/CUDA build as a few dependable commands.

The package holds the whole workflow and knows nothing of Invoke or Nox: every step takes a
:class:`~vllm_dev.process.runner.Runner` and returns a result object, so the two front ends
stay thin.
"""

__version__ = "0.1.0"
