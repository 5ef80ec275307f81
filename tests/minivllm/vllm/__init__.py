"""A stand-in for the vllm package; the compiled extensions live next to this file."""

__version__ = "0.0.1"
