"""Every path vllm-dev writes in a checkout and in a build dir: its one spelling, who writes it
and who reads it.

Code elsewhere takes these names from here (tests/test_state_layout.py checks that no other module
spells them, and that a real build, test, settings, verify and clean leave no file that
:data:`PLACES` does not name). Three places:

* the checkout's root (:data:`ROOT`): the presets file CMake reads, clangd's two files, and the
  extensions an install puts into ``vllm/``; their names also go into git's exclude file;
* the checkout's state dir (:data:`STATE`), ``<checkout>/.vllm-dev/``: what vllm-dev remembers
  for the checkout whatever the build dir (``clean`` leaves it; git ignores it through its own
  ``.gitignore``);
* a build dir (:data:`BUILD`): what belongs to one configured tree and goes away with it.

Written without imports (not even :mod:`dataclasses`): the per-object split launcher
(host/split_launcher.py) runs once per CUDA compile and takes its plan's name from here.
"""

# --- where ---------------------------------------------------------------------------------------

ROOT = "checkout root"
STATE = "state dir"
BUILD = "build dir"
GIT = "git"

#: The checkout's state dir, relative to its root.
STATE_DIR = ".vllm-dev"

# --- the checkout root ---------------------------------------------------------------------------

USER_PRESETS = "CMakeUserPresets.json"
COMPILE_DB = "compile_commands.json"  # also CMake's own name for it in the build dir
CLANGD = ".clangd"
#: The files vllm-dev writes at the root, which go into git's exclude file.
ROOT_FILES = (USER_PRESETS, COMPILE_DB, CLANGD)
#: The exclude file, as ``git rev-parse --git-path`` takes it.
GIT_EXCLUDE = "info/exclude"

# --- the state dir (names relative to it) --------------------------------------------------------

GITIGNORE = ".gitignore"
SETTINGS = "settings.json"
SETTINGS_LOCK = SETTINGS + ".lock"
FACT_CACHE = "fact-cache.json"
PRECOMPILED = "precompiled.json"
SETUP = "setup.json"
HISTORY_DIR = "history"
#: Before one history served both: the split plan's own times per preset (read, never written).
LEGACY_UNIT_TIMES = "unit-times-{preset}.json"
LAUNCHER = "compiler-launcher"
BACKUPS = "backups"
STALE = "stale"
TEMPLATES = "presets"  # the user's own preset templates: read, never written
DIST = "dist"
DIST_CONFIG = DIST + "/sccache.toml"
DIST_LOCK = DIST + "/client.lock"
DIST_TOOLCHAINS = DIST + "/toolchains"
DEPS_REMOVING = "deps-removing-{pid}"
#: The build lock of a Nox session's checkout-wide steps (setup, doctor...): process/locking.py.
STATE_LOCK = ".vllm-dev.lock"

# --- a build dir ---------------------------------------------------------------------------------

BUILD_RECORD = "vllm-dev-build.json"
INSTALL_RECORD = "vllm-dev-install.json"
TARGETS = "vllm-dev-targets.json"
SCANS = "vllm-dev-deps.json"
REPORT = "vllm-dev-report.json"
THREAD_PLAN = "vllm-dev-threads.json"
CCACHE_LOG = "vllm-dev-ccache.log"
JUNIT = "vllm-dev-pytest.xml"
STAGE = "vllm-dev-stage"
LOCK = ".vllm-dev.lock"
LOCK_HOLDER = LOCK + ".json"

# --- beside any record ---------------------------------------------------------------------------

#: A record that could not be read, renamed aside (never deleted): state/records.py.
CORRUPT = "{name}.corrupt-{stamp}"


class Place:
    """One path (a glob relative to ``where``) and the modules that write and read it."""

    __slots__ = ("where", "pattern", "writer", "reader")

    def __init__(self, where: str, pattern: str, writer: str, reader: str) -> None:
        self.where = where
        self.pattern = pattern
        self.writer = writer
        self.reader = reader

    def __repr__(self) -> str:
        return f"Place({self.where!r}, {self.pattern!r})"


PLACES = (
    # the checkout root
    Place(ROOT, USER_PRESETS, "presets/user_presets.py (steps/prime.py: every configure)",
          "cmake --preset; presets/user_presets.py (whose it is)"),
    Place(ROOT, COMPILE_DB, "checkout/compile_db.py (a link into the build dir, after configure)",
          "clangd and other editors"),
    Place(ROOT, CLANGD, "checkout/compile_db.py (CUDA builds)", "clangd"),
    Place(ROOT, "vllm/**", "installs/staged_install.py (the install components' files)",
          "Python's import; steps/verify.py; installs/install_state.py"),
    Place(GIT, GIT_EXCLUDE, "checkout/compile_db.py (the root files above, one line each)",
          "git status"),
    # the state dir
    Place(STATE, GITIGNORE, "state/records.ensure_state_dir (``*``)", "git"),
    Place(STATE, SETTINGS, "config/store.py (config/remember.py, testloop/remembered.py, "
          "steps/settings.py)", "config/remember.py; testloop/remembered.py; steps/settings.py"),
    Place(STATE, SETTINGS_LOCK, "config/store.py (filelock)", "config/store.py"),
    Place(STATE, FACT_CACHE, "toolchain/fact_cache.py", "toolchain/fact_cache.py"),
    Place(STATE, PRECOMPILED, "checkout/precompiled.remember_setup (steps/setup.py)",
          "checkout/precompiled.find_base (build, verify, test); steps/setup.py"),
    Place(STATE, SETUP, "steps/setup.py", "steps/setup.py (an unchanged setup is skipped)"),
    Place(STATE, HISTORY_DIR + "/*.json", "reporting/history.py (steps/cost.remember_timings, "
          "after every build that ran steps)", "steps/cost.py (the estimate); steps/build.py "
          "(the per-object split plan)"),
    Place(STATE, LEGACY_UNIT_TIMES.format(preset="*"), "no longer written (vllm-dev before "
          "issue 23)", "reporting/history.compile_times (the split plan, where the history "
          "knows no time)"),
    Place(STATE, LAUNCHER, "caching/launcher.py (every configure)",
          "cmake/ninja: every compile, through the presets"),
    Place(STATE, BACKUPS + "/*", "presets/user_presets.py (before --merge or --force)",
          "the user"),
    Place(STATE, STALE + "/**", "steps/verify.py (--remove-stale)", "the user"),
    Place(STATE, DIST_CONFIG, "caching/dist.py (--dist)", "sccache, through the presets"),
    Place(STATE, DIST_LOCK, "caching/dist.py (filelock)", "caching/dist.py"),
    Place(STATE, DIST_TOOLCHAINS + "/**", "sccache (its toolchain archives); "
          "caching/farm_toolchains.py (wrapped/)", "sccache; caching/farm_toolchains.py"),
    Place(STATE, DEPS_REMOVING.format(pid="*"), "steps/clean.py (--deps: .deps moved aside, "
          "then removed)", "steps/clean.py"),
    Place(STATE, STATE_LOCK, "process/locking.py (the Nox front end's checkout-wide lock)",
          "process/locking.py"),
    Place(STATE, STATE_LOCK + ".json", "process/locking.py (who holds it)",
          "process/locking.py"),
    # a build dir
    Place(BUILD, BUILD_RECORD, "steps/prime.py (state/build_record.py)", "steps/prime.py "
          "(reconfigure or not); steps/clean.py, steps/setup.py, checkout/compile_db.py (is it "
          "ours); checkout/affected.py, testloop/watchset.py (a tool dir)"),
    Place(BUILD, INSTALL_RECORD, "installs/staged_install.py, installs/install_state.py; "
          "steps/setup.py (installs replaced by new prebuilt kernels)",
          "installs/install_state.py (install or not); steps/verify.py; steps/clean.py"),
    Place(BUILD, TARGETS, "checkout/affected.remember_built (steps/build.py; steps/setup.py)",
          "checkout/affected.built_before (the next selection)"),
    Place(BUILD, SCANS, "checkout/affected.py (header scans)", "checkout/affected.py"),
    Place(BUILD, REPORT, "reporting/recorder.py (every build, failed ones too)",
          "steps/report.py; testloop/cycle.py"),
    Place(BUILD, THREAD_PLAN, "steps/build.per_object_split", "host/split_launcher.py (every "
          "CUDA compile)"),
    Place(BUILD, CCACHE_LOG, "ccache (CCACHE_STATSLOG; emptied by steps/build.py)",
          "reporting/trace.py"),
    Place(BUILD, JUNIT, "pytest --junitxml (testloop/cycle.py)", "testloop/pytest_run.py"),
    Place(BUILD, STAGE + "/**", "cmake --install --prefix (installs/staged_install.py)",
          "installs/staged_install.py"),
    Place(BUILD, LOCK, "process/locking.py (filelock: build, install, clean)",
          "process/locking.py"),
    Place(BUILD, LOCK_HOLDER, "process/locking.py (who holds it)", "process/locking.py"),
    # beside any record (both dirs)
    Place(STATE, CORRUPT.format(name="*", stamp="*"), "state/records.py (set aside)", "the user"),
    Place(BUILD, CORRUPT.format(name="*", stamp="*"), "state/records.py (set aside)", "the user"),
)

#: The names no module outside state/ spells (tests/test_state_layout.py): every file name above
#: that could not be mistaken for an ordinary word.
SPELLED_HERE_ONLY = (
    STATE_DIR, USER_PRESETS, CLANGD, SETTINGS, FACT_CACHE, PRECOMPILED, SETUP, LAUNCHER,
    "sccache.toml", "client.lock", "unit-times-", "deps-removing-", BUILD_RECORD,
    INSTALL_RECORD, TARGETS, SCANS, REPORT, THREAD_PLAN, CCACHE_LOG, JUNIT, STAGE,
)


def history_name(preset: str, device: str, arch: str | None) -> str:
    """The history file of one preset, device and arch list, in :data:`HISTORY_DIR`: one per
    arch list, since the same object takes minutes for seven CUDA arches and seconds for one."""
    key = f"{preset}-{device}-{arch or 'default'}"
    return "".join(c if c.isalnum() and c.isascii() or c in "_.+-" else "_" for c in key) + ".json"
