"""Invoke entry point: `invoke --list` in this repository.

The tasks live in the installed package (vllm_dev_frontends) so that the `vllm-dev` console script
runs the very same namespace from inside any vLLM checkout; it carries every setting's default
under the `vllm_dev` config key (invoke.yaml / INVOKE_VLLM_DEV_*). From a fresh clone, before
`pip install -e .`, the package is taken from src/ (see src/vllm_dev_frontends/bootstrap.py).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))  # a fresh clone: no install yet
from vllm_dev_frontends.bootstrap import namespace  # noqa: E402

ns = namespace()
