"""The code map's table (docs/code-map.md, "Where the code lives") names every module of the two
packages, and only modules that exist, so a newcomer's map never goes stale."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
MAP = REPO / "docs" / "code-map.md"


def modules_on_disk() -> set[str]:
    """``steps/build.py``, ``invoke_tasks.py``, ``errors.py``: as the table writes them."""
    found = set()
    for path in SRC.rglob("*.py"):
        if path.name == "__init__.py":
            continue
        package, *rest = path.relative_to(SRC).parts
        found.add("/".join(rest))
    return found


def modules_in_map(page: str) -> set[str]:
    """The modules the page's table names: a row's first cell, ``| `steps/build.py` |``."""
    return set(re.findall(r"^\| `([\w/]+\.py)` \|", page, re.M))


def test_the_code_map_names_every_module_and_nothing_else() -> None:
    on_disk = modules_on_disk()
    listed = modules_in_map(MAP.read_text())
    assert on_disk - listed == set(), "modules missing from docs/code-map.md"
    assert listed - on_disk == set(), "docs/code-map.md names modules that are gone"


def test_the_map_check_notices_a_missing_row() -> None:
    page = MAP.read_text()
    cut = page.replace("| `planning/plan.py` |", "| plan |", 1)
    assert "planning/plan.py" in modules_on_disk() - modules_in_map(cut)
