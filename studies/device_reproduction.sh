#!/bin/bash
# The PPO part of docs/reproduction.md on a many-core machine without internet, as ONE call. It expects the
# wheels of dpd's dependencies in ./.whl (pip download them beforehand) and installs them offline:
#   PPO zoo, dpd vs vanilla, Humanoid / HalfCheetah / Walker2d / Swimmer, 5 seeds, TOTAL_STEPS per run,
#   cut at DEADLINE seconds by SIGTERM (running trials checkpoint; `dpd sweep` with the same arguments resumes them).
# Then dpd analyze (Figure 3) on HalfCheetah and Walker2d, and the results packed into $OUT (<= 15 MiB pieces).
set -u
TOTAL_STEPS=${TOTAL_STEPS:-150000}
DEADLINE=${DEADLINE:-470}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:src MUJOCO_GL=disable PYTHONUNBUFFERED=1
S=/tmp/ppo-main
mkdir -p $S; nproc; date
# setsid + timeout: SIGTERM reaches the pool's workers (timeout signals its whole process group)
timeout -s TERM $DEADLINE python3 studies/device_sweep.py $S Humanoid-v5,HalfCheetah-v5,Walker2d-v5,Swimmer-v5 \
  $TOTAL_STEPS 5 16 eval_episodes=5 checkpoint_freq=40000 > $OUT/sweep.log 2>&1
tail -n 5 $OUT/sweep.log
for i in $(seq 40); do pgrep -f "multiprocessing" >/dev/null || break; sleep 1; done  # let checkpoints finish
date
python3 - <<'PY'
from dpd.experiments.analyze import analyze
for env in ("HalfCheetah-v5", "Walker2d-v5"):
    r = "/tmp/ppo-main/runs/" + env + "__ppo__"
    try:
        res = analyze(r + "dpd-a1__s0", (r + "vanilla__s0", r + "vanilla__s1"), out="/tmp/ppo-main/analysis/" + env)
        print(env, [(s["total_env_steps"], round(s["mean_action_distance_dpd"], 3),
                     round(s["mean_action_distance_vanilla"], 3)) for s in res["stages"]])
    except Exception as exc:
        print(env, "analyze failed:", type(exc).__name__, exc)
PY
cd /tmp && tar czf /tmp/ppo-main.tgz --exclude='*.zip' --exclude='vecnormalize.pkl' --exclude='checkpoint.pt' ppo-main
tar czf /tmp/ppo-ckpt.tgz $(cd /tmp && find ppo-main -name checkpoint.pt -newer ppo-main/sweep.yaml | while read c; do d=$(dirname $c); [ -f $d/summary.json ] || echo $c; done) 2>/dev/null
ls -la /tmp/*.tgz
cp /tmp/ppo-main.tgz $OUT/
split -b 15M /tmp/ppo-ckpt.tgz $OUT/ppo-ckpt.tgz.part-
ls -la $OUT
