"""The edit-build-test loop: ``vllm-dev test`` and ``vllm-dev test --watch`` (see cycle.py)."""
