#!/bin/bash
# per_learner (lax.map) against jax.vmap, side by side: the two checkouts interleaved, two rounds, every child on core 0.
# VMAP_SRC: the src/ of a checkout before the change (git worktree add --detach /tmp/vmapwt 18a692b); run from the repo root.
export MUJOCO_GL=disable
VMAP_SRC=${VMAP_SRC:-/tmp/vmapwt/src}
OUT=docs/results/jax-engine/per-learner
for r in 1 2; do
  for algo in ddpg ppo; do
    steps=$([ $algo = ddpg ] && echo 3000 || echo 4096)
    for v in vmap map; do
      if [ $v = vmap ]; then export PYTHONPATH=$VMAP_SRC; else unset PYTHONPATH; fi
      python benchmarks/throughput.py --engine jax --algo $algo --env HalfCheetah-v5 --steps $steps --repeats 1 \
          --pack-sizes 1,8,16 --json $OUT/${algo}_${v}_$r.json
    done
  done
done
