#!/usr/bin/env bash
# Issues 21 and 22 on the GPU machine, second session (2026-12-03): stages that each fit the
# device tool's 600 s per call, run back to back on one warm machine (state under $WORK stays
# while the machine is held; a fresh machine makes `edit` and `loop` prime and build first).
# Run from the repository root, prepared as bench/gpu_prepare.sh says (.testbeds/, .whl/ carried;
# .whl must hold watchfiles for `loop`).
#     bench/gpu_s2.sh prep    # prime, cold build of _moe_C_stable_libtorch + cumem_allocator,
#                             # op check, then nvcc's phase times (-time) for the edited unit's
#                             # command from compile_commands.json, alone, in the variants of
#                             # NVCC_APPEND_FLAGS in $NVCC_VARIANTS (bench/nvcc_phases.py)
#     REPEAT=4 CASES=noop,onefile bench/gpu_s2.sh edit    # bench/bench.py: the one-file edit of
#                             # $EDIT (vllm-dev build, split) against raw cmake --build + install
#     REPEAT=1 FIRST=4 CASES=onefile bench/gpu_s2.sh edit # more rounds of the same series
#     bench/gpu_s2.sh loop    # bench/test_loop.py --device cuda: save-to-test-result of
#                             # `vllm-dev test --watch` against build + install + pytest by hand
# Output under $OUT: s2_<stage>.log, s2_summary.txt, and the stage's JSON/CSV files.
STAGE=${1:-prep}
case $STAGE in prep|edit|loop) ;; *) echo "usage: bench/gpu_s2.sh prep|edit|loop" >&2; exit 2;; esac
WORK=${WORK:-/tmp/gpusplit}
source "$(dirname "$0")/gpu_prepare.sh"
set +e
LOG=$OUT/s2_$STAGE.log
SUMMARY=$OUT/s2_summary.txt
say() { echo "$*" | tee -a "$SUMMARY" "$LOG"; }
step() { echo "=== $* ($(date +%T))" | tee -a "$LOG"; }
run() { echo "\$ $*" | tee -a "$LOG"; local t0=$(date +%s.%N); "$@" 2>&1 | tee -a "$LOG";
        local rc=${PIPESTATUS[0]}; echo "--> exit $rc in $(python3 -c "import time; print(round(time.time() - $t0, 2))") s" | tee -a "$LOG"; return $rc; }
cd "$TREE" || exit 1
BD=$TREE/cmake-build-release
PY=$VENV/bin/python
read -r -a TARGET_NAMES <<< "${VD_TARGETS:-_moe_C_stable_libtorch cumem_allocator}"
TARGETS=(); for t in "${TARGET_NAMES[@]}"; do TARGETS+=(--target "$t"); done
EDIT=${VD_EDIT:-csrc/moe/topk_softmax_kernels.cu}
BENCH_TARGET=${VD_BENCH_TARGET:-_moe_C_stable_libtorch}

step "machine ($STAGE)"
say "== $(date -u +%FT%TZ) stage $STAGE: $(nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader 2>/dev/null | head -1), nproc $(nproc), $(grep MemTotal /proc/meminfo | tr -s ' '), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), load $(cut -d' ' -f1-3 /proc/loadavg), nvcc $(nvcc --version | tail -1), $(cmake --version | head -1), ninja $(ninja --version), $(ccache --version | head -1)"

ensure_built() {
  if [[ ! -f $BD/build.ninja ]]; then
    step "fresh machine: prime and build first"
    run vllm-dev prime
    run vllm-dev build --plain "${TARGETS[@]}" --json "$OUT/report_cold.json"
  fi
}

if [[ $STAGE == prep ]]; then
  step "1. prime and the cold build"
  run vllm-dev prime
  run vllm-dev build --plain "${TARGETS[@]}" --json "$OUT/report_cold.json"
  say "cold build: exit $? ($(python3 -c "import json; r=json.load(open('$OUT/report_cold.json')); print(f\"total {r['total_seconds']:.1f} s, {r['compile_steps']} compiles, split {r.get('split')}\")" 2>&1))"
  step "2. op check"
  if [[ -z ${VD_NO_OPS:-} ]]; then
    run "$PY" "$REPO/bench/check_moe_ops.py" vllm/_moe_C_stable_libtorch*.so
    say "op check after the cold build: exit $?"
  fi
  step "3. nvcc phase times of $EDIT alone"
  read -r -a VARIANTS <<< "${NVCC_VARIANTS:-none= split16=-split-compile=16 split32=-split-compile=32 split16t2=-split-compile=16,-t,2}"
  VARGS=(); for v in "${VARIANTS[@]}"; do VARGS+=(--variant "${v//,/ }"); done
  DB=$BD/compile_commands.json; [[ -f $DB ]] || DB=$TREE/compile_commands.json
  run "$PY" "$REPO/bench/nvcc_phases.py" --db "$DB" --source "$EDIT" \
    --out "$OUT" "${VARGS[@]}"
  grep -E "^[a-z0-9]+ \[" "$LOG" >> "$SUMMARY"
fi

if [[ $STAGE == edit ]]; then
  ensure_built
  step "bench: one-file edit of $EDIT against raw cmake, rounds ${FIRST:-0}..+${REPEAT:-4}"
  FIRSTARG=(); [[ -n ${FIRST:-} ]] && FIRSTARG=(--first-round "$FIRST")
  run "$PY" "$REPO/bench/bench.py" --source "$TREE" --python "$PY" --vllm-dev "$VENV/bin/vllm-dev" \
    --target "$BENCH_TARGET" --touch "$EDIT" --cases "${CASES:-noop,onefile}" --repeat "${REPEAT:-4}" \
    "${FIRSTARG[@]}" --json "$OUT/bench_onefile_from${FIRST:-0}.json"
  grep -E "^(noop|onefile|target) |run [0-9]+:" "$LOG" >> "$SUMMARY"
fi

if [[ $STAGE == loop ]]; then
  ensure_built
  step "watch loop: save to test result, vllm-dev test --watch against by hand"
  rm -rf "$WORK/loop"
  # One compiler cache for both clones, seeded from the tree's (the clones' first builds are
  # then cache hits: base_dir is each checkout); every timed edit is new text, so it misses.
  mkdir -p "$WORK/loop" && cp -a "$CCACHE_DIR" "$WORK/loop/ccache" 2>/dev/null
  run "$PY" "$REPO/bench/test_loop.py" --tree "$TREE" --python "$PY" --device cuda \
    --target "$BENCH_TARGET" --touch "${LOOP_TOUCH:-csrc/moe/moe_align_sum_kernels.cu}" \
    --test-file "$REPO/bench/cuda_moe_test.py" --shared-cache --work "$WORK/loop" \
    --repeat "${REPEAT:-5}" --idle "${IDLE:-60}" --timeout 400 --json "$OUT/test_loop_cuda.json"
  grep -E "^(round|save to|median of|watch,|watcher|watch clone|hand clone)" "$LOG" >> "$SUMMARY"
fi
exit 0
