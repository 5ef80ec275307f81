"""Invoke entry point: `invoke --list` in this repository.

The tasks live in the installed package (vllm_dev_frontends) so that the `vllm-dev` console script
runs the very same namespace from inside any vLLM checkout; it carries every setting's default
under the `vllm_dev` config key (invoke.yaml / INVOKE_VLLM_DEV_*).
"""

from vllm_dev_frontends.invoke_tasks import namespace

ns = namespace()
