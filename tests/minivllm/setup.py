"""setup.py of minivllm: mimics the precompiled-kernels path of vLLM's setup.py.

The compiled extensions of this project are only ever built with CMake (the
way vllm-dev builds vLLM: configure, build, install into the source tree).
setup.py therefore never compiles anything. It only supports vLLM's
"precompiled" mode, where the kernels come from a prebuilt wheel:

* precompiled mode is on when VLLM_USE_PRECOMPILED is 1/true (any case), or
  when VLLM_PRECOMPILED_WHEEL_LOCATION is non-empty;
* if VLLM_PRECOMPILED_WHEEL_LOCATION names a local wheel, every vllm/*.so in
  it is copied into this source tree's vllm/ directory. That happens whenever
  setup.py runs, editable installs included, as in vLLM;
* VLLM_PRECOMPILED_WHEEL_COMMIT / VLLM_PRECOMPILED_WHEEL_VARIANT are only
  reported (vLLM uses them to pick a wheel to download).
"""

import os
import shutil
import sys
import zipfile
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent


def log(message: str) -> None:
    print(f"minivllm setup.py: {message}", file=sys.stderr, flush=True)


def use_precompiled() -> bool:
    flag = os.environ.get("VLLM_USE_PRECOMPILED", "").strip().lower()
    return flag in ("1", "true") or bool(os.environ.get("VLLM_PRECOMPILED_WHEEL_LOCATION", ""))


def copy_precompiled_kernels(location: str) -> list[str]:
    """Copy every vllm/*.so member of the wheel at `location` into ROOT/vllm."""
    if "://" in location:
        raise RuntimeError(
            f"VLLM_PRECOMPILED_WHEEL_LOCATION={location!r}: minivllm only supports "
            "a local wheel file, not a URL"
        )
    wheel = Path(location).expanduser()
    if not wheel.is_file() or not zipfile.is_zipfile(wheel):
        raise RuntimeError(
            f"VLLM_PRECOMPILED_WHEEL_LOCATION={location!r} is not an existing wheel (zip) file"
        )
    copied = []
    with zipfile.ZipFile(wheel) as zf:
        for member in zf.namelist():
            parts = member.split("/")
            if len(parts) == 2 and parts[0] == "vllm" and parts[1].endswith(".so"):
                target = ROOT / "vllm" / parts[1]
                with zf.open(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                copied.append(member)
    for member in copied:
        log(f"copied {member} from {wheel} to {ROOT / member}")
    if not copied:
        log(f"no vllm/*.so found in {wheel}; nothing copied")
    return copied


def read_requirements(name: str) -> list[str]:
    lines = (ROOT / "requirements" / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


if not use_precompiled():
    raise RuntimeError(
        "minivllm's extensions are only built with CMake (presets); setup.py cannot "
        "compile them. Set VLLM_USE_PRECOMPILED=1 to install the Python package "
        "(optionally with VLLM_PRECOMPILED_WHEEL_LOCATION=/path/to/wheel to copy "
        "prebuilt kernels)."
    )

for var in ("VLLM_PRECOMPILED_WHEEL_COMMIT", "VLLM_PRECOMPILED_WHEEL_VARIANT"):
    if os.environ.get(var):
        log(f"{var}={os.environ[var]} (reported only; minivllm downloads nothing)")

wheel_location = os.environ.get("VLLM_PRECOMPILED_WHEEL_LOCATION", "")
if wheel_location:
    copy_precompiled_kernels(wheel_location)
else:
    log(
        "precompiled mode without VLLM_PRECOMPILED_WHEEL_LOCATION: no prebuilt "
        "kernels were copied; using whatever is in vllm/ already"
    )

setup(
    packages=["vllm"],
    package_data={"vllm": ["*.so"]},
    install_requires=read_requirements("common.txt"),
)
