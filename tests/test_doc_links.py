"""Every relative link and anchor in the user's pages (README.md, CONTRIBUTING.md, docs/*.md)
points at something that exists, checked offline: the file is there, and a ``#anchor`` is the
GitHub slug of a heading on the target page. A page moved or a heading renamed breaks a link
silently on GitHub; here it fails the unit tier instead.

Hand-written rather than a link checker from PyPI: the ones kept there check URLs online or
render the Markdown first; this needs only the few rules of GitHub's heading slugs and of
Markdown's inline links, read outside fenced code blocks and code spans.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# [text](target) and ![alt](target); the text may hold code spans, not nested brackets.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(`+).+?\1", re.S)


def pages(root: Path = REPO) -> list[Path]:
    """The pages a user reads: the README, CONTRIBUTING.md and every page under docs/."""
    found = [root / "README.md", root / "CONTRIBUTING.md", *sorted((root / "docs").glob("*.md"))]
    return [page for page in found if page.is_file()]


def prose_lines(text: str) -> list[str]:
    """The page's lines outside fenced code blocks (a ``#`` there is a shell comment)."""
    kept, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            kept.append(line)
    return kept


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text lower-cased, every character that is
    not a letter, digit, ``_``, ``-`` or space dropped, spaces made ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor on ``page``; a repeated heading gets ``-1``, ``-2``... as on
    GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose_lines(page.read_text()):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[str]:
    """The link targets of ``page``'s prose (not those in code blocks or code spans)."""
    prose = "\n".join(prose_lines(page.read_text()))  # a link's text may wrap
    return LINK.findall(CODE_SPAN.sub("", prose))


def broken(page: Path, root: Path = REPO) -> list[str]:
    """Each relative link of ``page`` whose file or anchor does not exist, with why."""
    found = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:: not offline
            continue
        path, _, anchor = target.partition("#")
        where = (page.parent / unquote(path)).resolve() if path else page.resolve()
        if not where.exists():
            found.append(f"{page.relative_to(root)}: {target}: no such file")
        elif root.resolve() not in where.parents and where != root.resolve():
            found.append(f"{page.relative_to(root)}: {target}: outside the repository")
        elif anchor and (where.suffix != ".md" or anchor not in anchors(where)):
            found.append(f"{page.relative_to(root)}: {target}: no heading with anchor "
                         f"#{anchor} in {where.relative_to(root.resolve())}")
    return found


def test_the_pages_are_there() -> None:
    names = {page.relative_to(REPO).as_posix() for page in pages()}
    assert {"README.md", "CONTRIBUTING.md"} <= names
    assert len([n for n in names if n.startswith("docs/")]) >= 8, names


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    assert broken(page) == []


def test_every_docs_page_is_linked_from_the_readme_or_another_page() -> None:
    reached = {(page.parent / t.partition("#")[0]).resolve()
               for page in pages() for t in links(page) if t.partition("#")[0]}
    orphans = [p.name for p in pages()
               if p.relative_to(REPO).parts[0] == "docs" and p.resolve() not in reached]
    assert orphans == []


def test_the_slugs_are_githubs() -> None:
    assert slug("Offline / mirror") == "offline--mirror"
    assert slug("Know the machine: doctor, parallelism, arches") == (
        "know-the-machine-doctor-parallelism-arches")
    assert slug("The `--watch` loop, 2026-12-03") == "the---watch-loop-2026-12-03"
    assert slug("Idle cores to the files being compiled") == (
        "idle-cores-to-the-files-being-compiled")


def test_the_check_fails_on_a_broken_file_or_anchor(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        "# Top\n\n## Same\n\n## Same\n\n```bash\n# not a heading\n```\n\n"
        "[ok](docs/a.md#a-page) [ok](#same-1) [ok](#top) `[code](gone.md)` [wrapped\n"
        "text](#same) ``a `[span](gone.md)` too``\n"
        "[gone](docs/gone.md) [bad anchor](docs/a.md#not-there) [shell](#not-a-heading) [a\n"
        "wrapped one](#gone)\n"
        "[web](https://example.com/x.md#y) ![pic](docs/pic.svg)\n")
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n[back](../README.md#same)\n")
    (tmp_path / "docs" / "pic.svg").write_text("<svg/>")
    problems = [p for page in pages(tmp_path) for p in broken(page, tmp_path)]
    assert problems == [
        "README.md: docs/gone.md: no such file",
        "README.md: docs/a.md#not-there: no heading with anchor #not-there in docs/a.md",
        "README.md: #not-a-heading: no heading with anchor #not-a-heading in README.md",
        "README.md: #gone: no heading with anchor #gone in README.md",
    ]
