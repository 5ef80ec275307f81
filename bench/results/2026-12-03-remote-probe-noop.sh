#!/bin/bash
# no-op builds, alternating: p5 with a reachable remote cache (redis on 127.0.0.1:6399), p4 without
export VLLM_TARGET_DEVICE=cpu
V=/work/wt/surprises/.venv/bin/vllm-dev
for i in $(seq 1 $1); do
  cd /tmp/sur/p5/vllm; CCACHE_DIR=/tmp/sur/p5/cc VLLM_DEV_CACHE_REMOTE=redis://127.0.0.1:6399 $V build --plain --json /tmp/sur/r5.json >/dev/null 2>&1
  python3 -c "import json; d=json.load(open('/tmp/sur/r5.json')); print('remote', d['total_seconds'], d['phases']['checks'])"
  cd /tmp/sur/p4/vllm; CCACHE_DIR=/tmp/sur/p4/cc $V build --plain --json /tmp/sur/r4.json >/dev/null 2>&1
  python3 -c "import json; d=json.load(open('/tmp/sur/r4.json')); print('none', d['total_seconds'], d['phases']['checks'])"
done
