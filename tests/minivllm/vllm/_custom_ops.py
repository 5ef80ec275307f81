"""The compiled ops as Python functions, as vLLM's vllm/_custom_ops.py wraps torch.ops._C."""

from vllm import _C


def add(a: int, b: int) -> int:
    return _C.add(a, b)


def scale(value: int, factor: int) -> int:
    return _C.scale(value, factor)
