"""The README's "Where the code lives" table names every module of the two packages, and only
modules that exist, so a newcomer's map never goes stale."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"


def modules_on_disk() -> set[str]:
    """``steps/build.py``, ``invoke_tasks.py``, ``errors.py``: as the table writes them."""
    found = set()
    for path in SRC.rglob("*.py"):
        if path.name == "__init__.py":
            continue
        package, *rest = path.relative_to(SRC).parts
        found.add("/".join(rest))
    return found


def modules_in_readme(readme: str) -> set[str]:
    section = readme.split("## Where the code lives", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([\w/]+\.py)` \|", section, re.M))


def test_the_readme_map_names_every_module_and_nothing_else() -> None:
    on_disk = modules_on_disk()
    listed = modules_in_readme((REPO / "README.md").read_text())
    assert on_disk - listed == set(), "modules missing from README's 'Where the code lives'"
    assert listed - on_disk == set(), "README's 'Where the code lives' names modules that are gone"


def test_the_map_check_notices_a_missing_row() -> None:
    readme = (REPO / "README.md").read_text()
    cut = readme.replace("| `planning/plan.py` |", "| plan |", 1)
    assert "planning/plan.py" in modules_on_disk() - modules_in_readme(cut)
