"""Getting built files into vllm/: the staged install, its record, and what is installed now."""
