"""A kernel test for the GPU watch-loop figure (bench/test_loop.py --device cuda): it loads the
checkout's built ``_moe_C_stable_libtorch`` and checks ``moe_sum`` (defined in
``csrc/moe/moe_align_sum_kernels.cu``, the file the figure edits) against plain torch.

Not a test of vllm-dev: bench/test_loop.py copies it into a vLLM checkout as
``tests/kernels/test_moe_sum_bench.py`` and runs it there (paths below are relative to that place),
by hand and under ``vllm-dev test --watch``. Modelled on bench/check_moe_ops.py.
"""

import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]  # <checkout>/tests/kernels/this file


def moe_ops():  # type: ignore[no-untyped-def]
    path = next((ROOT / "vllm").glob("_moe_C_stable_libtorch*.so"))
    spec = importlib.util.spec_from_file_location("vllm._moe_C_stable_libtorch", path)
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # registers torch.ops._moe_C
    return torch.ops._moe_C


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_moe_sum_matches_torch() -> None:
    ops = moe_ops()
    torch.manual_seed(0)
    for dtype, atol, rtol in ((torch.float32, 1e-4, 1e-5), (torch.bfloat16, 1e-2, 1e-2)):
        x = torch.randn(257, 4, 1024, device="cuda", dtype=dtype)
        out = torch.empty(257, 1024, device="cuda", dtype=dtype)
        ops.moe_sum(x, out)
        want = x.float().sum(dim=1).to(dtype).float()  # rounded as the output is
        torch.testing.assert_close(out.float(), want, atol=atol, rtol=rtol)
