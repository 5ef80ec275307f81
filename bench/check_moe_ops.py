#!/usr/bin/env python3
"""Check two ops of a built ``_moe_C_stable_libtorch`` on the GPU against plain torch.

* ``moe_sum(input [tokens, topk, hidden], output)``: the sum over topk;
* ``topk_softmax(topk_weights, topk_indices, token_expert_indices, gating_output, renormalize,
  bias, is_padding)`` (vLLM 0.33.0's signature, csrc/moe/torch_bindings.cpp): the k experts of
  the largest softmax score (plus ``bias`` when given: the bias picks, the weights stay the
  unbiased softmax), renormalized to sum 1 when asked.

Exits non-zero when any case mismatches. Usage (in the target venv, from the checkout):
    python bench/check_moe_ops.py vllm/_moe_C_stable_libtorch.abi3.so
    python bench/check_moe_ops.py --self-test    # the references against themselves, on CPU
"""

from __future__ import annotations

import importlib.util
import sys


def load(path: str) -> object:
    import torch

    spec = importlib.util.spec_from_file_location("vllm._moe_C_stable_libtorch", path)
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    return torch.ops._moe_C


def reference_topk(logits, k, renormalize, bias):  # type: ignore[no-untyped-def]
    import torch

    scores = torch.softmax(logits.float(), dim=-1)
    choice = scores + bias if bias is not None else scores
    ids = choice.topk(k, dim=-1).indices
    weights = scores.gather(1, ids)
    if renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights, ids


def by_expert(weights, ids):  # type: ignore[no-untyped-def]
    """Rows ordered by expert id, so two top-k answers in different orders compare equal."""
    order = ids.long().argsort(dim=-1)
    return weights.float().gather(1, order), ids.long().gather(1, order)


class ReferenceOps:
    """The two ops written in torch (``--self-test``: the script's own check, on any device)."""

    @staticmethod
    def moe_sum(x, out):  # type: ignore[no-untyped-def]
        out.copy_(x.float().sum(dim=1).to(out.dtype))

    @staticmethod
    def topk_softmax(weights, ids, token_expert, logits, renormalize, bias, is_padding):  # type: ignore[no-untyped-def]  # noqa: E501
        w, i = reference_topk(logits, weights.shape[1], renormalize, bias)
        weights.copy_(w.flip(-1))  # another order than the reference's: compared by expert
        ids.copy_(i.flip(-1).int())


def main(path: str, device: str = "cuda") -> int:
    import torch

    ops = ReferenceOps() if path == "--self-test" else load(path)
    torch.manual_seed(0)
    failures = 0
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(257, 4, 1024, device=device, dtype=dtype)
        out = torch.empty(257, 1024, device=device, dtype=dtype)
        ops.moe_sum(x, out)
        ref = x.float().sum(dim=1).to(dtype).float()  # rounded as the output is
        err = (out.float() - ref).abs().max().item()
        ok = torch.allclose(out.float(), ref, atol=1e-2 if dtype == torch.bfloat16 else 1e-4,
                            rtol=1e-2 if dtype == torch.bfloat16 else 1e-5)
        failures += not ok
        print(f"moe_sum {dtype}: max abs error {err:.3g} {'ok' if ok else 'MISMATCH'}")
    tokens, experts, k = 333, 64, 6
    for dtype in (torch.float32, torch.bfloat16):
        for renormalize in (False, True):
            for with_bias in (False, True):
                logits = torch.randn(tokens, experts, device=device).to(dtype)
                bias = (torch.randn(experts, device=device) * 0.05) if with_bias else None
                weights = torch.empty(tokens, k, device=device, dtype=torch.float32)
                ids = torch.empty(tokens, k, device=device, dtype=torch.int32)
                token_expert = torch.empty(tokens, k, device=device, dtype=torch.int32)
                ops.topk_softmax(weights, ids, token_expert, logits, renormalize, bias, None)
                ref_w, ref_ids = reference_topk(logits, k, renormalize, bias)
                got_w, got_ids = by_expert(weights, ids)
                want_w, want_ids = by_expert(ref_w, ref_ids)
                rows = (got_ids == want_ids).all(dim=-1)  # a tie at the k-th place may differ
                same_ids = rows.float().mean().item()
                err = (got_w - want_w)[rows].abs().max().item()
                ok = same_ids >= 0.99 and err <= 2e-3
                failures += not ok
                print(f"topk_softmax {dtype} renormalize={renormalize} bias={with_bias}: "
                      f"rows with equal ids {same_ids:.4f}, max weight error {err:.3g} "
                      f"{'ok' if ok else 'MISMATCH'}")
    print("ops in torch.ops._moe_C:", len([n for n in dir(ops) if not n.startswith("_")]))
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    raise SystemExit(main(sys.argv[1], "cpu" if sys.argv[1] == "--self-test" else "cuda"))
