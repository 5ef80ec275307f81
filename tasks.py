"""Invoke entry point: `invoke --list` in this repository.

The tasks live in the installed package (vllm_dev_frontends) so that the `vllm-dev` console script
runs the very same namespace from inside any vLLM checkout.
"""

from vllm_dev_frontends import DEFAULTS, namespace

ns = namespace()
ns.configure({"vllm_dev": dict(DEFAULTS)})  # every tunable: invoke.yaml / INVOKE_VLLM_DEV_*
