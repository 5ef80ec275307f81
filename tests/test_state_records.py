"""vllm-dev's records (state/records.py): what an earlier vllm-dev wrote still reads, a newer
vllm-dev's record is kept and never used, a damaged one is set aside.

The upgrade cases read ``tests/data/records-main/``: files written by the vllm-dev before
``state/`` (see its README), byte for byte but for the machine's paths. The flow case makes a
build's records look like that vllm-dev's (the literal format: no version where it wrote none, the
deps and setup records as bare objects) and checks that the next ``setup`` and ``build`` skip what
they skipped before: no configure, no install, no check, no header scan, no setup.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from test_affected import checkout_at_w, edit
from test_layering import module_files
from vllm_dev.checkout import affected, header_scan, precompiled
from vllm_dev.config import store
from vllm_dev.installs.install_record import InstallRecord
from vllm_dev.reporting import build_report, history
from vllm_dev.state import layout, records
from vllm_dev.state.build_record import BuildRecord, is_marked_build_dir
from vllm_dev.steps.setup import SETUP_FORMAT
from vllm_dev.toolchain.fact_cache import FactCache

DATA = Path(__file__).resolve().parent / "data" / "records-main"


def all_formats() -> list[records.Format]:
    """Every record format the package declares (at module level), each once."""
    found: dict[int, records.Format] = {}
    for name in module_files():
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, records.Format):
                found[id(value)] = value
    return sorted(found.values(), key=lambda f: f.name)


def materialize(tmp: Path) -> tuple[Path, Path, Path]:
    """The fixture records in a checkout at ``tmp/vllm``: (root, state dir, build dir)."""
    root = tmp / "vllm"
    places = {"state": root / layout.STATE_DIR, "build-dir": root / "cmake-build-release"}
    for source in DATA.rglob("*.json"):
        part, *rest = source.relative_to(DATA).parts
        target = places[part].joinpath(*rest)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = source.read_text().replace("@ROOT@", str(root)).replace(
            "@TOOL@", str(tmp / "tool")).replace("@CCACHE@", str(tmp / "ccache"))
        target.write_text(text)
    return root, places["state"], places["build-dir"]


# --- the envelope --------------------------------------------------------------------------------

FMT = records.Format("test record", "vllm-dev test", 3,
                     upgrades={1: lambda b: {**b, "two": True}, 2: lambda b: {**b, "three": 3}})


@pytest.mark.unit
def test_a_record_round_trips_and_older_versions_are_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    assert records.load(FMT, path, dict).value is None  # none there
    assert records.save(FMT, path, {"x": [1, 2]})
    data = json.loads(path.read_text())
    assert data == {"kind": "vllm-dev test", "version": 3, "x": [1, 2]}
    assert records.load(FMT, path, dict).value == {"x": [1, 2]}
    path.write_text(json.dumps({"kind": "vllm-dev test", "x": 1}))  # no version: version 1
    loaded = records.load(FMT, path, dict)
    assert loaded.value == {"x": 1, "two": True, "three": 3} and loaded.version == 1


@pytest.mark.unit
def test_another_programs_file_is_ignored_not_renamed(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"kind": "something else", "version": 99}')
    loaded = records.load(FMT, path, dict)
    assert loaded.value is None and loaded.writable
    assert path.read_text() == '{"kind": "something else", "version": 99}'
    assert capsys.readouterr().err == ""


@pytest.mark.unit
@pytest.mark.parametrize(("text", "said"), [
    ("{not json", "not JSON"), ("[1]", "not a JSON object"),
    ('{"kind": "vllm-dev test", "version": "3"}', "version: must be a number"),
    ('{"kind": "vllm-dev test", "version": 0}', "version: version 0 is not one vllm-dev wrote"),
])
def test_a_damaged_record_is_set_aside_in_one_line(tmp_path: Path, text: str, said: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.json"
    path.write_text(text)
    loaded = records.load(FMT, path, dict)
    err = capsys.readouterr().err
    aside = list(tmp_path.glob("r.json.corrupt-*"))
    assert loaded.value is None and loaded.writable and not path.exists()
    assert len(aside) == 1 and aside[0].read_text() == text
    assert err.count("\n") == 1 and said in err and "rebuilding it" in err


@pytest.mark.unit
def test_a_body_its_reader_refuses_is_set_aside_naming_the_key(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]
                                                                ) -> None:
    build = tmp_path / "build"
    build.mkdir()
    path = build / layout.INSTALL_RECORD
    bad = {"kind": "vllm-dev install record", "version": 1, "prefix": "/x", "components": {
        "_C": {"files": [{"path": "vllm/_C.so", "sha256": "0", "identity": "new"}]}}}
    path.write_text(json.dumps(bad))
    assert InstallRecord.load(build).components == {}  # everything installs again
    err = capsys.readouterr().err
    assert "components._C.files[0].identity: must be a list" in err and err.count("\n") == 1
    assert list(build.glob(layout.INSTALL_RECORD + ".corrupt-*"))


@pytest.mark.unit
def test_dataclasses_to_and_from_json(tmp_path: Path) -> None:
    record = InstallRecord(tmp_path, prefix=tmp_path / "root")
    data = records.to_json(record)
    assert "build_dir" not in data and data["prefix"] == str(tmp_path / "root")
    again = records.from_json(InstallRecord, data, build_dir=tmp_path)
    assert again == record
    with pytest.raises(records.Corrupt, match="prefix: must be a string"):
        records.from_json(InstallRecord, {"prefix": 3}, build_dir=tmp_path)
    with pytest.raises(records.Corrupt, match="preset: must be a string, got True"):
        records.from_json(BuildRecord, {"preset": True}, build_dir=tmp_path)


# --- a newer vllm-dev's record -------------------------------------------------------------------

@pytest.mark.unit
def test_every_format_is_found() -> None:
    names = {f.name for f in all_formats()}
    assert {"build record", "install record", "targets record", "header scans", "fact cache",
            "timing history", "remembered settings", "setup record", "build report"} <= names


@pytest.mark.unit
@pytest.mark.parametrize("fmt", all_formats(), ids=lambda f: f.name.replace(" ", "-"))
def test_a_newer_record_is_said_once_kept_and_never_written(
        tmp_path: Path, fmt: records.Format, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "record.json"
    newer = {"kind": fmt.kind} if fmt.kind else {}
    newer |= {fmt.version_key: fmt.version + 1, "what": "a newer vllm-dev's"}
    text = json.dumps(newer)
    path.write_text(text)
    if fmt.if_newer == records.STOP:
        with pytest.raises(records.NewerRecord) as stopped:
            records.load(fmt, path, dict)
        line = str(stopped.value)
        assert "\n" not in line and "upgrade vllm-dev" in line
    else:
        for _ in range(2):
            loaded = records.load(fmt, path, dict)
            assert loaded.value is None and not loaded.writable
        line = capsys.readouterr().err
        assert line.count("\n") == 1 and "left as it is" in line  # once, not per read
    assert f"is format {fmt.version + 1}, newer than this vllm-dev knows ({fmt.version})" in line
    if fmt.if_newer == records.STOP:  # the write is refused too
        with pytest.raises(records.NewerRecord):
            records.save(fmt, path, {"what": "this vllm-dev's"})
    else:
        assert not records.save(fmt, path, {"what": "this vllm-dev's"})
    assert path.read_text() == text and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.unit
def test_the_readers_run_without_a_newer_record_and_keep_it(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    def newer(path: Path, kind: str, **more: Any) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text := json.dumps({"kind": kind, "version": 99, **more}))
        return text

    watched = tmp_path / "watched"
    watched.write_text("x")
    facts = tmp_path / "state" / layout.FACT_CACHE
    kept = newer(facts, "vllm-dev fact cache", entries={})
    cache = FactCache(facts)
    assert cache.get("k") is None
    cache.put("k", 1, [watched])
    assert cache.get("k") == 1 and facts.read_text() == kept  # used in memory, never written
    timing = tmp_path / "state" / layout.HISTORY_DIR / "release-cpu-default.json"
    kept_history = newer(timing, "vllm-dev timing history", steps={"a.o": [1, 2, "", "", []]})
    loaded = history.History.load(timing)
    assert loaded.steps == {} and not loaded.writable
    loaded.save()
    assert timing.read_text() == kept_history
    build = tmp_path / "build"
    targets = newer(build / layout.TARGETS, "vllm-dev targets", built=["x"])
    assert affected.built_before(build) == []  # as for a dir that built nothing here yet
    affected.remember_built(build, ["_C"])
    assert (build / layout.TARGETS).read_text() == targets
    report = newer(build / layout.REPORT, "vllm-dev build report")
    assert build_report.read_report(build / layout.REPORT) is None
    build_report.save_report(build / layout.REPORT, build_report.BuildReport("r", "b", "now"))
    assert (build / layout.REPORT).read_text() == report
    newer(build / layout.BUILD_RECORD, "vllm-dev build dir")
    with pytest.raises(records.NewerRecord, match="vllm-dev clean"):
        BuildRecord.load(build)
    assert is_marked_build_dir(build)  # still ours: `clean` may remove it when asked
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and all("newer than this vllm-dev knows (1)" in line for line in err)


# --- upgrades: what the vllm-dev before state/ wrote ---------------------------------------------

@pytest.mark.unit
def test_the_records_of_the_vllm_dev_before_state_read(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    root, state, build = materialize(tmp_path)
    # the build dir: its configure, installs, checks, targets, scans and report
    record = BuildRecord.load(build)
    assert record is not None and record.preset == "release" and record.checkout == str(root)
    assert record.fingerprint["python"] == str(root / ".venv" / "bin" / "python")
    assert {"arch", "cmake", "nvcc", "preset", "python", "torch"} <= set(record.fingerprint)
    assert is_marked_build_dir(build)
    installed = InstallRecord.load(build)
    assert installed.prefix == root and sorted(installed.components) == ["_C", "_fast_C"]
    c = installed.components["_C"]
    assert c.verified and c.script_identity and len(c.script_identity) == 3
    assert [(f.path, len(f.sha256), f.source) for f in c.files] == [
        ("vllm/_C.abi3.so", 64, str(build / "_C.abi3.so"))]
    assert affected.built_before(build) is None  # "all"
    scans = records.load(header_scan.SCANS_FORMAT, build / layout.SCANS, header_scan._scans).value
    obj = str(build / "CMakeFiles/_C.dir/csrc/module_C.cpp.o")
    assert scans is not None and list(scans) == [obj]
    assert str(root / "csrc/ops/ops.h") in scans[obj]["files"] and scans[obj]["argv"]
    report = build_report.load_last(build)
    assert report.preset == "release" and report.ok and report.configure == "ran"
    # the checkout's state dir
    memory = store.read(state, say=print)
    assert memory.checkout["test_selection"].value == ["tests/kernels"]
    assert memory.preset("release")["cache_max_size"].value == "3G"
    assert memory.defines("release")["VLLM_DEV_PROBE"].value == "VLLM_DEV_PROBE=1"
    setups = records.load(SETUP_FORMAT, state / layout.SETUP, lambda b: b["interpreters"]).value
    interpreter = str(root / ".venv" / "bin" / "python")
    assert setups is not None and setups[interpreter]["interpreter"] == interpreter
    assert precompiled.recorded(state) == {"commit": None}
    shutil.copy(state / "precompiled-known-w.json", state / layout.PRECOMPILED)
    known = precompiled.recorded(state)
    assert known is not None and known["origin"] == "VLLM_PRECOMPILED_WHEEL_COMMIT e5c74ed19bdc"
    facts = FactCache(state / layout.FACT_CACHE)
    assert len(facts._load()) == 4 and facts.writable
    timing = history.History.load(history.history_path(state, preset="release", device="cpu",
                                                       arch=None))
    assert timing.writable and len(timing.builds) >= 1
    assert timing.steps["CMakeFiles/_C.dir/csrc/module_C.cpp.o"].miss is not None
    # the split plan's own file of before: read where the history has no time
    legacy = json.loads((state / "unit-times-release.json").read_text())["objects"]
    empty = history.History(state / layout.HISTORY_DIR / "release-cpu-8.0.json")
    assert empty.compile_times(build, preset="release") == legacy
    assert capsys.readouterr().err == ""  # nothing was damaged, newer or set aside


@pytest.mark.unit
def test_what_this_vllm_dev_writes_the_one_before_still_reads(tmp_path: Path) -> None:
    """The records whose shape did not change gain a version key only: the vllm-dev before read
    them by kind and by their keys, so a downgrade keeps them too (the deps and setup records,
    which had no kind, are version 2: the earlier one scans and sets up again)."""
    root, state, build = materialize(tmp_path)
    before = {p: json.loads(p.read_text()) for p in (build / layout.BUILD_RECORD,
                                                       build / layout.TARGETS)}
    record = BuildRecord.load(build)
    assert record is not None
    record.save()
    affected.remember_built(build, None)
    for path, old in before.items():
        assert json.loads(path.read_text()) == {**old, "version": 1}


# --- end to end: an upgrade in a real checkout ---------------------------------------------------

def as_the_vllm_dev_before_wrote(root: Path) -> list[Path]:
    """Turn this vllm-dev's records in ``root`` into the literal format of the one before."""
    changed = []
    state = root / layout.STATE_DIR
    build_dirs = [p for p in root.iterdir() if (p / layout.BUILD_RECORD).is_file()]
    for path in [*(d / n for d in build_dirs for n in (layout.BUILD_RECORD, layout.TARGETS)),
                 state / layout.FACT_CACHE, state / layout.PRECOMPILED]:
        data = json.loads(path.read_text())
        del data["version"]  # it wrote none
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        changed.append(path)
    for path, key in [*((d / layout.SCANS, "objects") for d in build_dirs),
                      (state / layout.SETUP, "interpreters")]:
        if path.is_file():  # bare objects, no kind
            path.write_text(json.dumps(json.loads(path.read_text())[key], indent=2,
                                       sort_keys=True) + "\n")
            changed.append(path)
    return changed


def identities(paths: list[Path]) -> dict[Path, tuple[int, int]]:
    return {p: (os.stat(p).st_ino, os.stat(p).st_mtime_ns) for p in paths}


@pytest.mark.flow
def test_an_upgrade_keeps_the_configure_the_installs_their_checks_and_the_scans(
        tmp_path: Path) -> None:
    project, wheel, _w = checkout_at_w(tmp_path)
    root = project.root
    wheel_env = {"VLLM_PRECOMPILED_WHEEL_LOCATION": str(wheel)}
    project.run("setup", env=wheel_env)
    edit(root / "csrc/ops/ops.h", "#pragma once", "#pragma once\n// an edit")
    first = project.run("build")
    assert "; header scan of " in first.stderr, first.stderr  # _fast_C's unit is remembered
    changed = as_the_vllm_dev_before_wrote(root)
    assert {p.name for p in changed} == {layout.BUILD_RECORD, layout.TARGETS, layout.SCANS,
                                         layout.FACT_CACHE, layout.PRECOMPILED, layout.SETUP}
    installed = identities(sorted((root / "vllm").glob("*.so")))
    again = project.run("setup", env=wheel_env)
    assert "nothing changed since the last setup" in again.stderr, again.stderr
    done = project.run("build")
    assert "(no configure needed)" in done.stderr, done.stderr
    assert "install skipped: nothing was rebuilt and the installed files are unchanged" \
        in done.stderr
    assert "verify skipped: the installed extensions did not change" in done.stderr
    selection = build_report.load_last(project.build_dir).selection
    assert selection[0].startswith("1 of 2 target(s) affected"), selection
    assert "header scan" not in selection[0]  # the scans of before were read
    assert "corrupt" not in done.stderr and "newer" not in done.stderr
    assert identities(sorted((root / "vllm").glob("*.so"))) == installed
    assert project.value("_C") == 42
    # a newer vllm-dev's build record stops the build in one line and is kept
    path = project.build_dir / layout.BUILD_RECORD
    newer = json.dumps({**json.loads(path.read_text()), "version": 2})
    path.write_text(newer)
    stopped = project.run("build", check=False)
    assert stopped.returncode == 1 and "Traceback" not in stopped.stderr
    assert "is format 2, newer than this vllm-dev knows (1)" in stopped.stderr.splitlines()[-1]
    assert path.read_text() == newer
    assert not list(project.build_dir.glob("*.corrupt-*"))
