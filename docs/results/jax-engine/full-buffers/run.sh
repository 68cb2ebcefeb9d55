#!/bin/bash
# DDPG packs with their full-size (1e6-transition) buffers, before (dccbfe5, /work/paper-w's worktree) and after
# _update_pack (main's working tree), alternated; each child pinned to core 0 by throughput.py
cd /work/main
for r in 1 2; do
  /work/paper-w/.venv/bin/python /work/paper-w/benchmarks/throughput.py --engine jax --algo ddpg --env Walker2d-v5 \
    --steps 3000 --repeats 1 --pack-sizes 1,3,5 --full-buffers --json /tmp/fb/old_$r.json 2>&1 | grep -v Warn
  .venv/bin/python benchmarks/throughput.py --engine jax --algo ddpg --env Walker2d-v5 \
    --steps 3000 --repeats 1 --pack-sizes 1,3,5 --full-buffers --json /tmp/fb/new_$r.json 2>&1 | grep -v Warn
done
