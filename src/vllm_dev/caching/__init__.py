"""Compiler caches (ccache, sccache) and the sccache-dist build farm."""
