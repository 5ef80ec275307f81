"""Kernel tests of the ops registered in csrc/module_C.cpp (run by `vllm-dev test`)."""

import vllm._custom_ops as ops


def test_add() -> None:
    assert ops.add(2, 3) == 5
    assert ops.add(-4, 4) == 0


def test_scale() -> None:
    assert ops.scale(4, 3) == 12
