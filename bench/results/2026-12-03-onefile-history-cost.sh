#!/bin/bash
# one-file edit builds of fs_io_C on the real tree, alternating main's vllm-dev (c2) and this branch's (c3)
export VLLM_TARGET_DEVICE=cpu FETCHCONTENT_SOURCE_DIR_ONEDNN=/root/.cache/vllm-dev-tests/unpacked-onednn-v3.13-min-39ae796082091274/oneDNN-v3.13
for side in main:c2:toolbin3 branch:c3:toolbin4; do IFS=: read name dir bin <<< "$side"
  cd /tmp/sur/$dir/vllm; VLLM_DEV_PYTHON=/tmp/sur/c1/venv/bin/python CCACHE_DIR=/tmp/sur/$dir/ccache /tmp/sur/$bin/vllm-dev build --target fs_io_C >/dev/null 2>&1 || echo "setup $name failed"; done
for i in $(seq 1 $1); do
  for side in main:c2:toolbin3 branch:c3:toolbin4; do IFS=: read name dir bin <<< "$side"
    cd /tmp/sur/$dir/vllm; echo "// edit $i $RANDOM" >> csrc/fs_io.cpp
    s=$(date +%s.%N); VLLM_DEV_PYTHON=/tmp/sur/c1/venv/bin/python CCACHE_DIR=/tmp/sur/$dir/ccache /tmp/sur/$bin/vllm-dev build --target fs_io_C --json /tmp/sur/$dir.json >/dev/null 2>&1; e=$(date +%s.%N)
    python3 -c "import json; d=json.load(open('/tmp/sur/$dir.json')); print('$name', round($e-$s,3), d['total_seconds'], round(d['phases']['compile'],3), round(d['phases']['other'],3))"
  done
done
