"""Knowledge of the vLLM checkout: its tree, records, changes, targets."""
