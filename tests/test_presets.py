"""The rendered CMakeUserPresets.json: valid for the cmake that runs it, stable, and never at the
expense of a user's own presets file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from vllm_dev.errors import VllmDevError
from vllm_dev.presets.render import PresetInputs, load_templates, render

from conftest import Project

REPO = Path(__file__).parents[1]


def schema_of_target_cmake(project: Project) -> dict:
    """The presets schema shipped with the very cmake that the target venv runs."""
    data = subprocess.run([str(project.python), "-c", "import cmake; print(cmake.CMAKE_DATA)"],
                          capture_output=True, text=True, check=True).stdout.strip()
    schemas = sorted(Path(data).glob("share/cmake-*/Help/manual/presets/schema.json"))
    assert schemas, f"no presets schema under {data}"
    return json.loads(schemas[-1].read_text())


def test_rendered_presets_validate_and_cmake_lists_them(project: Project) -> None:
    project.run("prime")
    document = json.loads((project.root / "CMakeUserPresets.json").read_text())
    # the schema names draft 2020-12 with a trailing "#", which jsonschema does not look up
    jsonschema.Draft202012Validator(schema_of_target_cmake(project)).validate(document)
    listed = subprocess.run([str(project.python.parent / "cmake"), "--list-presets=all"],
                            cwd=project.root, capture_output=True, text=True, check=True).stdout
    assert '"release"' in listed and '"debug"' in listed
    base = document["configurePresets"][0]
    cache = base["cacheVariables"]
    assert base["generator"] == "Ninja"
    assert base["binaryDir"] == "${sourceDir}/cmake-build-${presetName}"
    assert cache["VLLM_PYTHON_EXECUTABLE"] == str(project.python)
    assert cache["CMAKE_INSTALL_PREFIX"] == "${sourceDir}"
    # per build dir (CMake's default <binaryDir>/_deps), and jobs never in the configure preset
    assert "FETCHCONTENT_BASE_DIR" not in cache and "CMAKE_JOB_POOLS" not in cache
    assert "NVCC_THREADS" not in cache  # CPU: vLLM's CUDA part alone reads it
    assert cache["CMAKE_EXPORT_COMPILE_COMMANDS"] == "ON"
    # One spelling for every install of vllm-dev; the cache it runs is the build preset's
    assert cache["CMAKE_CXX_COMPILER_LAUNCHER"] == "${sourceDir}/.vllm-dev/compiler-launcher"
    assert os.access(project.root / ".vllm-dev" / "compiler-launcher", os.X_OK)
    builds = {b["name"]: b for b in document["buildPresets"]}
    assert builds["release"]["jobs"] >= 1
    assert Path(builds["release"]["environment"]["VLLM_DEV_COMPILER_CACHE"]).is_absolute()
    assert "vllm-dev" in document["vendor"]


@pytest.mark.unit
def test_cuda_presets_name_nvcc_and_clear_flags() -> None:
    templates = load_templates(REPO / "presets")
    document = render(templates, PresetInputs(python="/venv/bin/python", device="cuda", jobs=3,
                                              nvcc_threads=2, nvcc="/cuda/bin/nvcc",
                                              launcher="/bin/ccache"))
    cache = document["configurePresets"][0]["cacheVariables"]
    assert cache["CMAKE_CUDA_COMPILER"] == "/cuda/bin/nvcc"
    assert cache["CMAKE_CUDA_FLAGS"] == ""
    assert cache["CMAKE_CUDA_COMPILER_LAUNCHER"] == "/bin/ccache"
    assert cache["NVCC_THREADS"] == "2"
    assert document["buildPresets"][0]["jobs"] == 3


def test_reprime_with_nothing_changed_rewrites_nothing(project: Project) -> None:
    project.run("prime")
    presets = project.root / "CMakeUserPresets.json"
    cache = project.build_dir / "CMakeCache.txt"
    stamp = (presets.read_bytes(), presets.stat().st_mtime_ns, cache.stat().st_mtime_ns)
    done = project.run("prime")
    assert (presets.read_bytes(), presets.stat().st_mtime_ns, cache.stat().st_mtime_ns) == stamp
    assert "cmake --preset" not in done.stderr


def test_merge_keeps_user_presets_and_a_backup(project: Project) -> None:
    user = project.root / "CMakeUserPresets.json"
    mine = {"name": "mine", "generator": "Ninja", "binaryDir": "${sourceDir}/build-mine"}
    original = json.dumps({"version": 6, "configurePresets": [mine]}, indent=4).encode()
    user.write_bytes(original)
    done = project.run("build", "--merge")
    merged = json.loads(user.read_text())
    names = [p["name"] for p in merged["configurePresets"]]
    assert mine in merged["configurePresets"]
    assert "release" in names and "debug" in names
    backups = list((project.root / ".vllm-dev" / "backups").glob("CMakeUserPresets.json.*"))
    assert len(backups) == 1 and backups[0].read_bytes() == original
    assert "merged vllm-dev's presets" in done.stderr
    # a later build keeps the user's preset and needs no --merge
    project.run("build", "--preset", "debug")
    assert mine in json.loads(user.read_text())["configurePresets"]
    assert project.value("_C") == 42


def test_merge_stops_on_a_name_clash(project: Project) -> None:
    user = project.root / "CMakeUserPresets.json"
    original = b'{"version": 6, "configurePresets": [{"name": "release", "generator": "Ninja"}]}'
    user.write_bytes(original)
    done = project.run("prime", "--merge", check=False)
    assert done.returncode != 0 and "already defines preset 'release'" in done.stderr
    assert user.read_bytes() == original


@pytest.mark.parametrize("content", [b'{"version": 6, "configurePresets": []}',
                                     b"// a comment\n{not json"])
def test_force_replaces_with_a_byte_identical_backup(project: Project, content: bytes) -> None:
    user = project.root / "CMakeUserPresets.json"
    user.write_bytes(content)
    if content.startswith(b"//"):
        done = project.run("prime", check=False)
        assert done.returncode != 0 and "not a valid presets file (line 1" in done.stderr
        assert user.read_bytes() == content
    project.run("prime", "--force")
    backups = list((project.root / ".vllm-dev" / "backups").glob("CMakeUserPresets.json.*"))
    assert len(backups) == 1 and backups[0].read_bytes() == content
    assert "vllm-dev" in json.loads(user.read_text())["vendor"]


@pytest.mark.unit
@pytest.mark.parametrize(("text", "where"), [
    ('{\n  "buildType": "Debug",\n  "cacheVariables": {\n    "A": "x",\n    "B": 3\n  }\n}\n',
     ":5:5: cacheVariables.B must be a string, true/false, or"),
    ('{\n "environment": {"X": 1}}', ":2:18: environment.X must be a string"),
    ('{"buildType": "Debug", "cacheVars": {}}', ":1:24: unknown key 'cacheVars'; allowed:"),
    ("[1]", ":1:1: a preset template must be a JSON object"),
])
def test_template_errors_point_at_file_line_column(tmp_path: Path, text: str,
                                                   where: str) -> None:
    (tmp_path / "mine.json").write_text(text)
    with pytest.raises(VllmDevError) as caught:
        load_templates(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'mine.json'}{where}"), message
    assert "\n" not in message


@pytest.mark.unit
def test_valid_templates_are_remembered_without_importing_jsonschema(tmp_path: Path) -> None:
    """The schema check imports jsonschema (~150 ms): a no-op build must not pay it again while
    the template files are unchanged; an edited template is checked again."""
    templates = tmp_path / "presets"
    templates.mkdir()
    (templates / "mine.json").write_text('{"buildType": "Debug"}')
    code = ("import sys, pathlib\n"
            "from vllm_dev.presets.render import load_template_set\n"
            "from vllm_dev.toolchain.fact_cache import FactCache\n"
            "cache = FactCache(pathlib.Path(sys.argv[1]) / 'facts.json')\n"
            "found = load_template_set([pathlib.Path(sys.argv[1]) / 'presets'], cache=cache)\n"
            "print(sorted(found.templates), sorted(found.broken), 'jsonschema' in sys.modules)\n")

    def load() -> str:
        return subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                              text=True, check=True).stdout.strip()

    assert load() == "['mine'] [] True"
    assert load() == "['mine'] [] False"
    (templates / "mine.json").write_text('{"buildType": 1}')
    assert load() == "[] ['mine'] True"
