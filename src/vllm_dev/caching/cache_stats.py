"""ccache's statistics: the counters a build report subtracts to tell what one build hit.

``ccache --print-stats`` is read, never ``--zero-stats``: the counters are the user's, and
another tool (or the user) may be watching them too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vllm_dev.errors import VllmDevError

if TYPE_CHECKING:
    from vllm_dev.process.runner import Runner

STATS_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class CacheStats:
    """ccache's counters (``ccache --print-stats``), read without ever zeroing them."""

    counters: dict[str, int] = field(default_factory=dict)

    def get(self, name: str) -> int:
        return self.counters.get(name, 0)

    @property
    def hits(self) -> int:
        return self.get("direct_cache_hit") + self.get("preprocessed_cache_hit")

    @property
    def misses(self) -> int:
        return self.get("cache_miss")

    @property
    def cacheable(self) -> int:
        return self.hits + self.misses

    @property
    def remote_hits(self) -> int:
        return self.get("remote_storage_hit")

    @property
    def remote_errors(self) -> int:
        return self.get("remote_storage_error") + self.get("remote_storage_timeout")

    def __sub__(self, before: CacheStats) -> CacheStats:
        """Counters accumulated since ``before``: what one build did."""
        names = set(self.counters) | set(before.counters)
        return CacheStats({n: self.get(n) - before.get(n) for n in sorted(names)})

    def summary(self) -> str:
        text = f"{self.hits}/{self.cacheable} hits"
        if self.remote_hits or self.remote_errors:
            text += f" ({self.remote_hits} remote, {self.remote_errors} remote errors)"
        return text


def parse_stats(text: str) -> CacheStats:
    """Parse ``ccache --print-stats`` (one ``name<TAB>number`` per line)."""
    counters: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition("\t")
        if value.strip().lstrip("-").isdigit():
            counters[name.strip()] = int(value)
    return CacheStats(counters)


def read_stats(ccache: Path | str, *, runner: Runner,
               env: Mapping[str, str] | None = None) -> CacheStats:
    """The counters of the cache ``env`` selects (``CCACHE_DIR``); reading changes nothing."""
    done = runner.query([str(ccache), "--print-stats"], env=env, timeout=STATS_TIMEOUT_S)
    if not done.ok:
        raise VllmDevError(f"`{ccache} --print-stats` failed: {done.stderr.strip()[:200]}")
    return parse_stats(done.stdout)
