#!/usr/bin/env bash
# Issue 21 on the GPU machine: one CUDA unit's compile spread over the idle cores (-split-compile),
# on the real vLLM 0.33.0 tree (CUDA, the GPU's arch). Run from the repository root on the lent
# GPU machine, prepared as bench/gpu_prepare.sh says (.testbeds/ and .whl/ carried):
#     bench/gpu_split.sh cache    # ~7 min: cold build, split edit, clean rebuild (cache hits), memory
#     bench/gpu_split.sh edit     # ~5 min on a warm machine after `cache` (~9 min on a fresh one):
#                                 # the one-file edit against raw cmake, 3 alternations
#     bench/gpu_split.sh cold     # ~9 min: the cold build through the per-object launcher
#                                 # (host/split_launcher.py), without and with past times
# Stage `cache`, in one build dir of _moe_C_stable_libtorch + cumem_allocator, ccache on:
#   1. prime, then the cold build (memory summed over every process of the build, sampled every
#      0.1 s by bench/memory_sampler.py); the report's split line (none: more units than jobs);
#   2. moe_sum and topk_softmax against torch (bench/check_moe_ops.py);
#   3. `ninja -n` on the built tree, 5 times: what the split's count of pending units costs;
#   4. a new kernel in csrc/moe/topk_softmax_kernels.cu built with --no-split ("before"), then
#      another new kernel built with the split ("after"): wall time, report, memory summed;
#   5. `vllm-dev clean` and the same build again: every object must come from ccache (the split
#      object too: the split is not in the key), then the op check on what the cache gave.
# Stage `edit`: bench/bench.py --target _moe_C_stable_libtorch --touch csrc/moe/topk_softmax_kernels.cu
#   --cases noop,onefile --repeat 3: vllm-dev (split, install, post-build check) against raw
#   `cmake --build --preset release --target _moe_C_stable_libtorch` + `cmake --install
#   --component` (raw `--target install` would first build every other target of the tree).
# Stage `cold`, --cache none, the launcher configured in front of nvcc (--define
#   CMAKE_CUDA_COMPILER_LAUNCHER): a cold build with no past compile times (every object 1
#   thread: the build without the split), `vllm-dev clean`, then the same cold build with the
#   first one's times: the objects longer than the build's work per thread get threads.
# Output: $OUT/split_summary.txt, $OUT/split.log, $OUT/split_data.tgz (reports, .ninja_log
# copies, ccache's per-compile log, memory JSON, bench JSON).
STAGE=${1:-cache}
case $STAGE in cache|edit|cold) ;; *) echo "usage: bench/gpu_split.sh cache|edit|cold" >&2; exit 2;; esac
WORK=${WORK:-/tmp/gpusplit}
source "$(dirname "$0")/gpu_prepare.sh"
set +e
LOG=$OUT/split.log
SUMMARY=$OUT/split_summary.txt
DATA=$WORK/data
mkdir -p "$DATA"
say() { echo "$*" | tee -a "$SUMMARY" "$LOG"; }
step() { echo "=== $* ($(date +%T))" | tee -a "$LOG"; }
run() { echo "\$ $*" | tee -a "$LOG"; local t0=$(date +%s.%N); "$@" 2>&1 | tee -a "$LOG";
        local rc=${PIPESTATUS[0]}; echo "--> exit $rc in $(python3 -c "import time; print(round(time.time() - $t0, 2))") s" | tee -a "$LOG"; return $rc; }
pack() { tar -czf "$OUT/split_data.tgz" -C "$WORK" data 2>/dev/null; }
trap pack EXIT
cd "$TREE" || exit 1
BD=$TREE/cmake-build-release
# VD_TARGETS, VD_EDIT, VD_BENCH_TARGET, VD_NO_OPS: only for trying this script on another tree
# (the CUDA test project on a machine without a GPU).
read -r -a TARGET_NAMES <<< "${VD_TARGETS:-_moe_C_stable_libtorch cumem_allocator}"
TARGETS=(); for t in "${TARGET_NAMES[@]}"; do TARGETS+=(--target "$t"); done
EDIT=${VD_EDIT:-csrc/moe/topk_softmax_kernels.cu}
BENCH_TARGET=${VD_BENCH_TARGET:-_moe_C_stable_libtorch}
ops_check() {
  if [[ -n ${VD_NO_OPS:-} ]]; then return 0; fi
  run "$PY" "$REPO/bench/check_moe_ops.py" vllm/_moe_C_stable_libtorch*.so
}
PY=$VENV/bin/python
# One summary line of a report: wall, phases, compiles, cache, split, slowest.
summarize() {  # name report.json memory.json
  "$PY" - "$@" <<'PYEOF' | tee -a "$SUMMARY" "$LOG"
import json, sys
name, report, memory = sys.argv[1:4]
r = json.load(open(report))
m = json.load(open(memory)) if memory != "-" else {}
cache = r.get("cache") or {}
split = r.get("split") or {}
slow = ", ".join(f"{u['source']} {u['seconds']:.1f} s" for u in r.get("slowest", [])[:3])
print(f"{name}: rc={r['exit_code']} total {r['total_seconds']:.1f} s, phases "
      + ", ".join(f"{k} {v:.2f}" for k, v in r["phases"].items())
      + f"; {r['compile_steps']} compiles; ccache {cache.get('hits')} hits {cache.get('misses')} misses"
      + f"; split {split.get('threads')} x {split.get('cuda_units')} ({split.get('why')})"
      + (f"; memory peak sum {m['peak_sum_mib']:.0f} MiB, single {m['peak_single_mib']:.0f} MiB"
         f" ({m['samples']} samples)" if m else "")
      + f"; slowest: {slow}")
PYEOF
}
edit_kernel() {  # a new __global__ in $EDIT, new content every time (the cache must miss)
  printf '\n__global__ void vllm_dev_split_probe_%s(int* out) { if (out) *out = %s; }\n' "$1" "$RANDOM" >> "$EDIT"
}
build() {  # name [vllm-dev build options...]: a measured build into $BD
  local name=$1; shift
  run "$PY" "$REPO/bench/memory_sampler.py" --json "$DATA/mem_$name.json" -- \
    vllm-dev build --plain "${TARGETS[@]}" --json "$DATA/report_$name.json" "$@"
  cp "$BD/.ninja_log" "$DATA/ninja_log_$name.txt" 2>/dev/null
  cp "$BD/vllm-dev-ccache.log" "$DATA/ccache_log_$name.txt" 2>/dev/null
  summarize "$name" "$DATA/report_$name.json" "$DATA/mem_$name.json"
  pack  # what is measured comes back even if the call's time limit kills the rest
}

step "machine ($STAGE)"
say "== $(date -u +%FT%TZ) stage $STAGE: $(nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader | head -1), nproc $(nproc), $(grep MemTotal /proc/meminfo | tr -s ' '), nvcc $(nvcc --version | tail -1), $(cmake --version | head -1), ninja $(ninja --version), $(ccache --version | head -1)"

if [[ $STAGE == cache ]]; then
  step "1. prime and the cold build"
  run vllm-dev prime
  build cold
  step "2. op check"
  ops_check
  say "op check after the cold build: exit $?"
  step "3. ninja -n on the built tree (the split's count of pending units)"
  for i in 1 2 3 4 5; do
    t0=$(date +%s.%N); ninja -C "$BD" -n "${TARGET_NAMES[@]}" >/dev/null
    echo "$(python3 -c "import time; print(round(time.time() - $t0, 3))")"
  done | tee "$DATA/ninja_n.txt" >> "$LOG"
  say "ninja -n, no work, 5 runs (s): $(tr '\n' ' ' < "$DATA/ninja_n.txt")"
  step "4. one-unit edit: without the split, then with it"
  edit_kernel a; build edit_nosplit --no-split
  edit_kernel b; build edit_split
  step "5. clean rebuild: every object from the cache"
  run vllm-dev clean
  build rebuild
  ops_check
  say "op check after the clean rebuild (objects from the cache, the split one included): exit $?"
  git checkout -q "$EDIT"
  run vllm-dev build --plain "${TARGETS[@]}"   # back to the tree as unpacked, for `edit`
fi

if [[ $STAGE == cold ]]; then
  LAUNCH=(--cache none --define "CMAKE_CUDA_COMPILER_LAUNCHER=$PY;-m;vllm_dev.host.split_launcher")
  rm -f "$TREE"/.vllm-dev/unit-times-*.json
  step "1. prime with the launcher"
  run vllm-dev prime "${LAUNCH[@]}"
  step "2. cold build, no past times (no split)"
  build cold_nohistory "${LAUNCH[@]}"
  cp "$BD/vllm-dev-threads.json" "$DATA/threads_nohistory.json" 2>/dev/null
  step "3. clean, then the same cold build with the first one's times"
  run vllm-dev clean
  build cold_history "${LAUNCH[@]}"
  cp "$BD/vllm-dev-threads.json" "$DATA/threads_history.json" 2>/dev/null
  cp "$TREE"/.vllm-dev/unit-times-*.json "$DATA/" 2>/dev/null
  say "threads planned: $(cat "$DATA/threads_history.json" 2>/dev/null | tr -d '\n ')"
  ops_check
  say "op check after the per-object split build: exit $?"
fi

if [[ $STAGE == edit ]]; then
  if [[ ! -f $BD/build.ninja ]]; then
    step "fresh machine: prime and build first"
    run vllm-dev prime
    run vllm-dev build --plain "${TARGETS[@]}"
  fi
  step "bench: one-file edit of $EDIT against raw cmake, 3 alternations"
  run "$PY" "$REPO/bench/bench.py" --source "$TREE" --python "$PY" --vllm-dev "$VENV/bin/vllm-dev" \
    --target "$BENCH_TARGET" --touch "$EDIT" --cases noop,onefile --repeat "${REPEAT:-3}" \
    --json "$DATA/bench_onefile.json"
  grep -E "^(noop|onefile|target) " "$LOG" | tail -6 >> "$SUMMARY"
  cp "$BD/.ninja_log" "$DATA/ninja_log_bench.txt" 2>/dev/null
fi
exit 0
