"""The core flow end to end on the test project, with the real tools."""

from __future__ import annotations

from conftest import Project


def test_setup_build_import(project: Project) -> None:
    project.run("build")
    assert project.value("_C") == 42
    assert project.value("_fast_C") == 7
